"""Hooks of the ``watch`` plugin (thin: watchfiles and the watch loop import lazily)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    from pydantic import BaseModel

    from vx import CommandRegistry, Config, Parser


@vx.hookimpl
def vx_add_commands(registry: CommandRegistry) -> None:
    registry.add(
        "watch",
        help="run tasks, then re-run those that changes affect (takes vx run's options)",
        handler=watch_command,
        options_of="run",
    )


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    parser.add_option(
        "--interrupt",
        action="store_true",
        command="watch",
        help="stop the run in progress when changes arrive (default: finish it, then run "
        "once more for everything that changed meanwhile)",
    )
    parser.add_option(
        "--debounce",
        metavar="DURATION",
        command="watch",
        help="quiet time that ends a burst of changes, e.g. 300ms or 1s "
        "(default: [tool.vx.watch] debounce, else 200ms)",
    )


@vx.hookimpl
def vx_settings_models() -> dict[str, type[BaseModel]]:
    from vx_watch.settings import WatchSettings

    return {"watch": WatchSettings}


def watch_command(config: Config) -> int:
    import asyncio

    try:
        import watchfiles  # noqa: F401
    except ImportError:
        raise vx.PluginError(
            "vx watch needs the watchfiles package; fix: pip install 'vx-build[watch]'"
        ) from None
    from vx_watch.session import WatchSession
    from vx_watch.settings import parse_seconds

    if config.option.dry:
        raise vx.UsageError("vx watch does not take --dry; use vx run --dry")
    debounce = config.section("watch").debounce
    if config.option.debounce is not None:
        try:
            debounce = parse_seconds(config.option.debounce)
        except ValueError as exc:
            raise vx.UsageError(f"--debounce: {exc}") from None
    session = WatchSession(
        config,
        vx.run_options(config.option),
        debounce=debounce,
        interrupt=config.option.interrupt,
    )
    return asyncio.run(session.main())
