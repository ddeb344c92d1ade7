"""Hooks of the ``records`` plugin (thin: the event log, replay and report import lazily)."""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING

import vx

if TYPE_CHECKING:
    import argparse

    from pydantic import BaseModel

    from vx import CommandRegistry, Config, Parser

#: The open ``--events`` file (closed at unconfigure).
_STREAM: vx.StashKey[IO[str]] = vx.StashKey()


@vx.hookimpl
def vx_settings_models() -> dict[str, type[BaseModel]]:
    from vx_records.settings import RecordsSettings

    return {"records": RecordsSettings}


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    parser.add_option(
        "--events",
        metavar="PATH|-",
        command="run",
        help="write the run's events as NDJSON to PATH while it runs (-: stdout, with "
        "-p no:terminal); schema in docs/events.md",
    )
    parser.add_option(
        "--events-output",
        choices=["inline", "none"],
        default="inline",
        command="run",
        help="task output in the --events stream: inline (default, task_output events) or "
        "none (only byte counts; the stored record keeps it for vx replay / vx report)",
    )


@vx.hookimpl(trylast=True)
def vx_configure(config: Config) -> None:
    """For ``vx run`` (and each run of ``vx watch``): register the event log when the run
    store or ``--events`` wants it (trylast: the terminal reporter is registered by now)."""
    option = config.option
    if getattr(option, "command", None) not in ("run", "watch") or getattr(option, "dry", None):
        return
    target: str | None = getattr(option, "events", None)
    settings = config.section("records")
    history = config.pluginmanager.has_plugin("history") and config.section("history").enabled
    store = settings.store and history
    if target is None and not store:
        return
    from vx_records.events import EventLog

    stream = None
    if target == "-":
        if config.pluginmanager.get_plugin("terminalreporter") is not None:
            raise vx.UsageError(
                "vx run --events=-: stdout already carries the terminal output; "
                "add -p no:terminal, or write the events to a file (--events=PATH)"
            )
        stream = sys.stdout
    elif target is not None:
        path = config.invocation_dir / target
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            stream = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed at unconfigure)
        except OSError as exc:
            raise vx.UsageError(f"vx run --events={target}: cannot write {path}: {exc}") from None
        config.stash[_STREAM] = stream
    config.pluginmanager.register(
        EventLog(
            config,
            stream=stream,
            stream_output=getattr(option, "events_output", "inline") == "inline",
            store=store,
            max_task_output=settings.max_task_output,
        ),
        "records.eventlog",
    )


@vx.hookimpl
def vx_unconfigure(config: Config) -> None:
    stream = config.stash.pop(_STREAM)
    if stream is not None:
        stream.close()


@vx.hookimpl
def vx_add_commands(registry: CommandRegistry) -> None:
    registry.add(
        "replay",
        help="feed a stored run's events to the observers (terminal, summary, OTel ...) "
        "without running anything",
        handler=_replay_command,
        configure=_configure_replay,
    )
    registry.add(
        "report",
        help="write a stored run as one self-contained HTML page (timeline, graph, details)",
        handler=_report_command,
        configure=_configure_report,
    )


def _configure_replay(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", metavar="RUN_ID", help="the run (an id, or its unique prefix)")
    parser.add_argument(
        "--to",
        nargs="+",
        metavar="PLUGIN",
        help="only these plugins receive the events (names as in vx plugins: terminal, "
        "summary, otel ...); default: every observer",
    )


def _configure_report(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run_id",
        nargs="?",
        metavar="RUN_ID",
        help="the run (an id, or its unique prefix; default: the newest)",
    )
    parser.add_argument(
        "-o",
        "--output",
        default="report.html",
        metavar="PATH",
        help="where to write the page (default: report.html)",
    )


def _replay_command(config: Config) -> int:
    from vx_records.replay import run_replay_command

    return run_replay_command(config)


def _report_command(config: Config) -> int:
    from vx_records.report import run_report_command

    return run_report_command(config)
