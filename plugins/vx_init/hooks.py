"""Hooks of the ``init`` plugin (thin: the command imports its modules when it runs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    import argparse

    from vx import CommandRegistry, Config


@vx.hookimpl
def vx_add_commands(registry: CommandRegistry) -> None:
    registry.add(
        "init",
        help="propose a [tool.vx] configuration from what the repository already declares",
        handler=_init_command,
        needs_workspace=False,
        configure=_configure_parser,
    )


def _configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-y", "--yes", action="store_true", help="write the proposal without asking"
    )
    parser.add_argument(
        "--dry", action="store_true", help="only print the proposal as a diff; write nothing"
    )


def _init_command(config: Config) -> int:
    from vx_init.command import run_init

    return run_init(config)
