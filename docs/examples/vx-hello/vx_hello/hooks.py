"""Hooks of the vx-hello plugin; the ``vx`` entry point ``hello`` names this module.

vx imports this module on every invocation (even ``vx --help``), so it stays
thin: nothing heavy at module level, no work at import time. pydantic is
imported inside :func:`vx_settings_models`, only when settings are validated.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    from collections.abc import Mapping

    from pydantic import BaseModel

    from vx import CommandSpec, Config, Parser, RunInfo, Task, TaskResult

#: The plugin's one name: entry point, ``-p no:hello``, ``[tool.vx.hello]``, ``VX_HELLO__*``.
NAME = "hello"
#: The effective greeting of this run, in ``config.stash``.
GREETING = vx.StashKey[str]()
#: Name of the greeting's cache-key component (prefixed with the plugin's name).
COMPONENT = f"{NAME}.greeting"
#: Where the observer writes its report, relative to the workspace root.
REPORT = ".vx/hello.json"


# -- bootstrap and configuration -------------------------------------------------------


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    """``vx run --hello-greeting TEXT`` (shown by ``vx run --help``)."""
    parser.add_option(
        "--hello-greeting",
        metavar="TEXT",
        default=None,
        command="run",
        help="vx-hello: the greeting printed after the run (default: [tool.vx.hello] greeting)",
    )


@vx.hookimpl
def vx_settings_models() -> Mapping[str, type[BaseModel]]:
    """Own the ``[tool.vx.hello]`` section."""
    from vx_hello.settings import HelloSettings

    return {NAME: HelloSettings}


@vx.hookimpl
def vx_configure(config: Config) -> None:
    """Register the stateful :class:`Greeter` only for ``vx run``, and only when enabled."""
    if config.option.command != "run":
        return
    settings = config.section(NAME)
    if not settings.enabled:
        return
    greeting: str = config.option.hello_greeting or settings.greeting
    config.stash[GREETING] = greeting
    config.pluginmanager.register(Greeter(config, greeting), name=f"{NAME}-greeter")


# -- hashing and execution ---------------------------------------------------------------


@vx.hookimpl
def vx_task_hash_components(task: Task, config: Config) -> Mapping[str, str] | None:
    """Tasks can read the greeting (``HELLO_GREETING``), so it is part of every cache key."""
    greeting = config.stash.get(GREETING)
    return {COMPONENT: greeting} if greeting is not None else None


@vx.hookimpl
def vx_wrap_command(task: Task, spec: CommandSpec, config: Config) -> CommandSpec | None:
    """Export the greeting to every task as ``HELLO_GREETING``."""
    greeting = config.stash.get(GREETING)
    if greeting is None:
        return None
    return dataclasses.replace(spec, env={**spec.env, "HELLO_GREETING": greeting})


# -- the observer ------------------------------------------------------------------------


class Greeter:
    """Collects each task's outcome; at the end of the run, writes a report and greets.

    An observer that raises is disabled for the rest of the run with one
    warning; it can never fail the run.
    """

    def __init__(self, config: Config, greeting: str) -> None:
        self.greeting = greeting
        self.quiet = config.option.quiet > 0
        self.report = config.require_root() / REPORT
        self.statuses: dict[str, str] = {}

    @vx.hookimpl
    def vx_task_finish(self, result: TaskResult, run: RunInfo) -> None:
        self.statuses[result.task.id] = result.status.value

    @vx.hookimpl
    def vx_run_finish(self, run: RunInfo, config: Config) -> None:
        document = {
            "run_id": run.run_id,
            "greeting": self.greeting,
            "exit_code": run.exit_code,
            "tasks": self.statuses,
        }
        self.report.parent.mkdir(parents=True, exist_ok=True)
        self.report.write_text(json.dumps(document, indent=2) + "\n")
        if not self.quiet:
            counts = Counter(self.statuses.values())
            parts = ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))
            sys.stdout.write(
                f"{self.greeting} from vx-hello: {len(self.statuses)} task(s) finished"
                + (f" ({parts})" if parts else "")
                + "\n"
            )
