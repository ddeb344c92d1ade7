"""Hooks of the ``sandbox`` plugin (thin: everything heavy is imported when used)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    from pydantic import BaseModel

    from vx import Config, Task
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

    return {"sandbox": TaskSandbox}


def sandbox_mode(config: Config) -> str:
    """``--sandbox`` beats ``[tool.vx.sandbox] mode``; the table's presence means best-effort."""
    mode = config.stash.get("sandbox.mode")
    if mode is None:
        option = getattr(config.option, "sandbox", None)
        configured = config.section("sandbox").mode
        if option is not None:
            mode = str(option)
        elif configured is not None:
            mode = str(configured)
        else:
            mode = "best-effort" if "sandbox" in config.raw_settings else "off"
        config.stash["sandbox.mode"] = mode
    return str(mode)


@vx.hookimpl
def vx_task_hash_components(task: Task, config: Config) -> dict[str, str] | None:
    """The policy (not the backend) is part of every sandboxed task's key, for every command
    that computes keys (``vx run``, ``vx why`` ...)."""
    mode = sandbox_mode(config)
    if mode == "off":
        return None
    from vx_sandbox.session import policy_component, task_sandboxed

    if not task_sandboxed(task):
        return None
    return {"sandbox.policy": policy_component(config.section("sandbox"), task, mode == "audit")}


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
