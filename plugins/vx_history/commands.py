"""``vx history [TASK_GLOB] [--json] [--since AGE|DATE] [--limit N] [--branch NAME]``."""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import asdict
from datetime import datetime
from typing import Any

from vx import Config, UsageError
from vx_history.store import HistoryError, HistoryStore, RunRecord, TaskStats

_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$", re.IGNORECASE)
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_since(value: str, now: float) -> float:
    """``12h`` / ``7d`` (an age) or ``2026-11-01`` / ``2026-11-01T10:00`` (local time)
    -> seconds since the epoch."""
    match = _AGE.match(value)
    if match:
        return now - float(match.group(1)) * _AGE_UNITS[match.group(2).lower()]
    try:
        return datetime.fromisoformat(value.strip()).timestamp()
    except ValueError:
        raise UsageError(
            f"vx history --since: expected an age like 12h or 7d (s, m, h, d, w) or a date "
            f"like 2026-11-01, got {value!r}"
        ) from None


def _time(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def _seconds(ms: float | None) -> str:
    return "-" if ms is None else f"{ms / 1000:.2f}s"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


def run_history_command(config: Config) -> int:
    option = config.option
    if option.limit is not None and option.limit < 1:
        raise UsageError("vx history --limit: expected a positive number of runs")
    since = None if option.since is None else parse_since(option.since, time.time())
    root = config.require_root()
    try:
        store = HistoryStore.open(root)
    except HistoryError as exc:
        if exc.reason != "missing":
            raise UsageError(f"vx history: {exc}") from None
        runs: list[RunRecord] = []
        stats: list[TaskStats] = []
    else:
        with store:
            selection = {"limit": option.limit, "since": since, "branch": option.branch}
            if option.task_glob:
                stats = store.task_stats(option.task_glob, **selection)
                runs = []
            else:
                runs = store.runs(**{**selection, "limit": option.limit or 20})
                stats = []
    if option.task_glob:
        return _print_stats(option.task_glob, stats, as_json=option.json)
    return _print_runs(runs, store_path=str(root / ".vx" / "history.db"), as_json=option.json)


def _run_document(run: RunRecord) -> dict[str, Any]:
    document = asdict(run)
    document["started_at"] = _iso(run.started_at)
    return document


def _stats_document(stats: TaskStats) -> dict[str, Any]:
    document = asdict(stats)
    failure = stats.last_failure
    document["last_failure"] = (
        None
        if failure is None
        else {
            "run_id": failure.run_id,
            "started_at": _iso(failure.started_at),
            "exit_code": failure.exit_code,
            "key": failure.key,
        }
    )
    return document


def _print_runs(runs: list[RunRecord], *, store_path: str, as_json: bool) -> int:
    out = sys.stdout
    if as_json:
        out.write(json.dumps({"runs": [_run_document(run) for run in runs]}, indent=2) + "\n")
        return 0
    if not runs:
        out.write(f"no runs recorded yet ({store_path})\n")
        return 0
    out.write(f"{'RUN':<23} {'STARTED':<19} {'TIME':>8} {'EXIT':>4}  {'BRANCH':<14} COMMAND\n")
    for run in runs:
        code = "int" if run.interrupted else ("-" if run.exit_code is None else run.exit_code)
        branch = (run.git_branch or "-")[:14]
        out.write(
            f"{run.run_id:<23} {_time(run.started_at):<19} {_seconds(run.duration_ms):>8} "
            f"{code!s:>4}  {branch:<14} {' '.join(run.argv)}\n"
        )
    return 0


def _print_stats(glob: str, stats: list[TaskStats], *, as_json: bool) -> int:
    out = sys.stdout
    if as_json:
        document = {"task_glob": glob, "tasks": [_stats_document(s) for s in stats]}
        out.write(json.dumps(document, indent=2) + "\n")
        return 0
    if not stats:
        out.write(f"no recorded task matches {glob!r}\n")
        return 0
    width = max(len("TASK"), *(len(s.task_id) for s in stats))
    out.write(
        f"{'TASK':<{width}} {'RUNS':>5} {'EXEC':>5} {'P50':>8} {'P90':>8} {'P99':>8} "
        f"{'PASS':>5} {'HITS':>5} {'FLAKY':>5}  LAST FAILURE\n"
    )
    for s in stats:
        failure = s.last_failure
        last = "-" if failure is None else f"{failure.run_id} (exit {failure.exit_code})"
        out.write(
            f"{s.task_id:<{width}} {s.runs:>5} {s.executed:>5} {_seconds(s.p50_ms):>8} "
            f"{_seconds(s.p90_ms):>8} {_seconds(s.p99_ms):>8} {_rate(s.success_rate):>5} "
            f"{_rate(s.hit_rate):>5} {s.flaky:>5}  {last}\n"
        )
    return 0
