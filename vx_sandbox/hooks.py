"""Hooks of the ``sandbox`` plugin (thin: everything heavy is imported when used)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    from pydantic import BaseModel

    from vx import Config
    from vx.cli import Parser

MODES = ("off", "best-effort", "required", "audit")


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    parser.add_option(
        "--sandbox",
        choices=MODES,
        metavar="MODE",
        command="run",
        help="confine tasks (off, best-effort, required), or audit: run unconfined under "
        "strace and list every task's undeclared inputs and outputs",
    )


@vx.hookimpl
def vx_settings_models() -> Mapping[str, type[BaseModel]]:
    from vx_sandbox.settings import SandboxSettings

    return {"sandbox": SandboxSettings}


@vx.hookimpl
def vx_task_settings() -> Mapping[str, object]:
    from vx_sandbox.settings import TaskSandbox

    return {"sandbox": TaskSandbox | bool}


def sandbox_mode(config: Config) -> str:
    """``--sandbox`` beats ``[tool.vx.sandbox] mode``; the table's presence means best-effort."""
    option = getattr(config.option, "sandbox", None)
    if option is not None:
        return str(option)
    configured = config.section("sandbox").mode
    if configured is not None:
        return str(configured)
    return "best-effort" if "sandbox" in config.raw_settings else "off"


@vx.hookimpl
def vx_configure(config: Config) -> None:
    if getattr(config.option, "command", None) != "run" or config.root is None:
        return
    mode = sandbox_mode(config)
    if mode == "off":
        return
    if mode == "audit":
        config.option.force = True  # every task must run to be observed
    from vx_sandbox.session import Session

    config.pluginmanager.register(Session(config, mode, config.section("sandbox")), "sandbox-run")
