"""Hooks of the ``sandbox`` plugin (thin: everything heavy is imported when used)."""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from typing import TYPE_CHECKING, Any

import vx

if TYPE_CHECKING:
    from pydantic import BaseModel

    from vx import Config, Executor, Parser, Task, TaskGraph

MODES = ("off", "best-effort", "required", "audit")
#: The effective mode of this invocation, resolved once.
MODE = vx.StashKey[str]()
#: Name under which the per-invocation :class:`~vx_sandbox.session.Session` is registered.
SESSION = "sandbox-session"


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
    mode = config.stash.get(MODE)
    if mode is None:
        option = getattr(config.option, "sandbox", None)
        configured = config.section("sandbox").mode
        if option is not None:
            mode = str(option)
        elif configured is not None:
            mode = str(configured)
        else:
            mode = "best-effort" if "sandbox" in config.raw_settings else "off"
        config.stash[MODE] = mode
    return mode


def task_sandboxed(task: Task) -> bool:
    table = task.definition.plugin_settings.get("sandbox")
    return table is None or bool(table.enabled)


def policy_component(settings: Any, task: Task, audit: bool) -> str:
    """The policy part of the cache key: what the task may access beyond its declarations
    (which are in the key already) and whether it was confined at all. Not the backend."""
    own = task.definition.plugin_settings.get("sandbox")
    network = settings.network if own is None or own.network is None else own.network
    document = {
        "audit": audit,
        "network": network,
        "read": [*settings.read, *(own.read if own else [])],
        "write": [*settings.write, *(own.write if own else [])],
    }
    return json.dumps(document, sort_keys=True, separators=(",", ":"))


@vx.hookimpl
def vx_graph_hash_components(graph: TaskGraph, config: Config) -> dict[str, dict[str, str]] | None:
    """The policy (not the backend) is part of every sandboxed task's key, for every command
    that computes keys (``vx run``, ``vx why`` ...): one call per key computation."""
    mode = sandbox_mode(config)
    if mode == "off":
        return None
    settings, audit = config.section("sandbox"), mode == "audit"
    return {
        task.id: {"sandbox.policy": policy_component(settings, task, audit)}
        for task in graph
        if task_sandboxed(task)
    }


@vx.hookimpl
def vx_configure(config: Config) -> None:
    if getattr(config.option, "sandbox", None) == "audit":
        config.option.force = True  # every task must run to be observed


@vx.hookimpl(wrapper=True)
def vx_executor(config: Config) -> Generator[None, Executor, Executor]:
    """Whatever runs tasks (``vx run``, ``vx watch`` ...) runs them through the sandbox:
    the session is registered the first time an executor is needed."""
    executor = yield
    mode = sandbox_mode(config)
    if mode == "off":
        return executor
    from vx_sandbox.session import Session

    session = config.pluginmanager.get_plugin(SESSION)
    if not isinstance(session, Session):
        session = Session(config, mode, config.section("sandbox"))
        config.pluginmanager.register(session, SESSION)
    return session.wrap_executor(executor)
