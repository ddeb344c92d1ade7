"""Hooks of the ``history`` plugin (thin: the store, scheduler and command import lazily)."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    import argparse

    from pydantic import BaseModel

    from vx import CommandRegistry, Config, RunInfo, TaskGraph
    from vx_history.store import StoredEvents


@vx.hookimpl
def vx_settings_models() -> dict[str, type[BaseModel]]:
    from vx_history.settings import HistorySettings

    return {"history": HistorySettings}


@vx.hookimpl
def vx_task_priorities(graph: TaskGraph, config: Config) -> Mapping[str, float] | None:
    """The expected remaining critical path of every task (see :mod:`vx_history.scheduling`);
    None without history, so the kernel's default applies."""
    settings = config.section("history")
    if not (settings.enabled and settings.scheduling):
        return None
    from vx_history.scheduling import critical_path_priorities, expected_costs
    from vx_history.store import HistoryError, HistoryStore, history_path

    root = config.require_root()
    if not history_path(root).is_file():
        return None
    import sqlite3

    try:
        with HistoryStore.open(root) as store:
            force = bool(getattr(config.option, "force", False))
            costs = expected_costs(graph, store, window=settings.window, force=force)
    except (HistoryError, sqlite3.Error):
        # The default priorities apply; recording the run names the problem (one warning).
        return None
    return None if costs is None else critical_path_priorities(graph, costs)


#: The slow and flaky lines of this run, printed after the terminal summary.
_LINES: vx.StashKey[list[tuple[str, str]]] = vx.StashKey()

#: A plugin that wants the run's event record stored with it puts a
#: :class:`vx_history.store.StoredEvents` under this ``config.stash`` key in a ``tryfirst``
#: ``vx_run_finish`` (the ``records`` plugin does).
EVENTS_KEY: vx.StashKey[StoredEvents] = vx.StashKey()


@vx.hookimpl
def vx_run_finish(run: RunInfo, config: Config) -> None:
    """Record the run (not a replay of a stored one); keep the lines about slow and flaky
    tasks for the end."""
    settings = config.section("history")
    if not settings.enabled or run.replay:
        return
    from vx_history.recorder import record_run

    config.stash[_LINES] = record_run(run, config, settings, config.stash.pop(EVENTS_KEY))


@vx.hookimpl
def vx_unconfigure(config: Config) -> None:
    """Print the slow and flaky lines under the terminal's run summary."""
    lines = config.stash.pop(_LINES, [])
    if lines and config.pluginmanager.get_plugin("terminalreporter") is not None:
        for label, line in lines:
            sys.stdout.write(f" {label + ':':<9} {line}\n")
        sys.stdout.flush()


@vx.hookimpl
def vx_add_commands(registry: CommandRegistry) -> None:
    registry.add(
        "history",
        help="recent runs, and per-task durations, success and cache hit rates, flakiness",
        handler=_history_command,
        configure=_configure_parser,
    )


def _configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "task_glob",
        nargs="?",
        metavar="TASK_GLOB",
        help="show per-task statistics for task ids matching this glob (core#test, *#test)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument(
        "--since",
        metavar="AGE|DATE",
        help="only runs since: an age (12h, 7d) or a date (2026-11-01)",
    )
    parser.add_argument("--limit", type=int, metavar="N", help="only the newest N runs")
    parser.add_argument("--branch", metavar="NAME", help="only runs on this git branch")


def _history_command(config: Config) -> int:
    from vx_history.commands import run_history_command

    return run_history_command(config)
