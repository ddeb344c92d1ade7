"""Recording a finished run, and the lines about flaky and slow tasks printed after it."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

import vx
from vx_history.store import (
    HistoryError,
    HistoryStore,
    RunRecord,
    StoredEvents,
    TaskRecord,
    history_path,
    percentile,
)

if TYPE_CHECKING:
    from vx import Config, RunInfo, TaskResult
    from vx_history.settings import HistorySettings

#: The multiplication sign in ``3.1x its p50``.
TIMES = "\u00d7"


def git_head(root: Path) -> tuple[str | None, str | None]:
    """``(revision, branch)`` of the git checkout containing ``root``, read from ``.git``
    without running git (a detached HEAD has no branch)."""
    for directory in (root, *root.parents):
        dot_git = directory / ".git"
        if dot_git.is_dir():
            git_dir = dot_git
        elif dot_git.is_file():
            text = dot_git.read_text(errors="replace").strip()
            if not text.startswith("gitdir:"):
                return None, None
            git_dir = (directory / text.removeprefix("gitdir:").strip()).resolve()
        else:
            continue
        return _read_head(git_dir)
    return None, None


def _read_head(git_dir: Path) -> tuple[str | None, str | None]:
    try:
        head = (git_dir / "HEAD").read_text().strip()
    except OSError:
        return None, None
    if not head.startswith("ref:"):
        return head or None, None
    ref = head.removeprefix("ref:").strip()
    branch = ref.removeprefix("refs/heads/")
    common = git_dir
    with contextlib.suppress(OSError):
        common = (git_dir / (git_dir / "commondir").read_text().strip()).resolve()
    for base in dict.fromkeys((git_dir, common)):
        try:
            return (base / ref).read_text().strip(), branch
        except OSError:
            pass
    try:
        for line in (common / "packed-refs").read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha, branch
    except OSError:
        pass
    return None, branch  # a branch without commits yet


def run_record(run: RunInfo, root: Path, args: list[str]) -> RunRecord:
    revision, branch = git_head(root)
    return RunRecord(
        run_id=run.run_id,
        started_at=run.started_at,
        duration_ms=run.duration_ms,
        exit_code=run.exit_code,
        interrupted=run.interrupted,
        argv=["vx", *args],
        task_names=list(run.task_names),
        git_revision=revision,
        git_branch=branch,
        concurrency=run.concurrency,
        host=os.uname().nodename,
        vx_version=vx.__version__,
    )


def task_record(run: RunInfo, result: TaskResult) -> TaskRecord:
    cache = result.cache
    key = cache.key or result.task.hash
    start = result.start_ms
    return TaskRecord(
        run_id=run.run_id,
        task_id=result.task.id,
        key=str(key) if key else None,
        status=str(result.status),
        cache_status=cache.status.value,
        cache_source=cache.source.value if cache.source is not None else None,
        exit_code=result.exit_code,
        duration_ms=result.duration_ms,
        attempts=result.attempts,
        start_ms=start,
        end_ms=None if start is None else start + result.duration_ms,
        slot=result.slot,
        started_at=run.started_at,
    )


def open_for_writing(root: Path, timeout: float) -> HistoryStore:
    """Open (creating) the store; a corrupt database is moved aside (one warning) and a new
    one started. Raises :class:`HistoryError` when it still cannot be used."""
    try:
        return HistoryStore.open(root, create=True, timeout=timeout)
    except HistoryError as exc:
        if exc.reason != "corrupt":
            raise
        path = history_path(root)
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
        for suffix in ("", "-wal", "-shm"):
            source = path.with_name(path.name + suffix)
            if source.exists():
                os.replace(source, aside.with_name(aside.name + suffix))
        vx.warning(f"run history: {exc}; moved it to {aside.name} and started a new one")
        return HistoryStore.open(root, create=True, timeout=timeout)


def record_run(
    run: RunInfo,
    config: Config,
    settings: HistorySettings,
    events: StoredEvents | None = None,
) -> list[tuple[str, str]]:
    """Write ``run`` (and its event record) to the store (one transaction, then pruning) and
    return the end-of-run
    lines: tasks that ran much slower than their history, and flaky tasks. A store that
    cannot be used is one warning; the run is not affected."""
    root = config.require_root()
    tasks = [task_record(run, result) for result in run.results.values()]
    # A persistent task's duration is how long it served: never "slow", nor flaky.
    persistent = {id for id, r in run.results.items() if r.task.definition.persistent}
    executed = [t for t in tasks if t.executed and t.task_id not in persistent]
    lines: list[tuple[str, str]] = []
    try:
        with open_for_writing(root, settings.lock_timeout) as store:
            if executed:
                past = store.durations(
                    window=settings.window, task_ids=[t.task_id for t in executed]
                )
                lines.extend(("Slow", line) for line in regressions(executed, past, settings))
            store.record(
                run_record(run, root, config.args),
                tasks,
                keep_runs=settings.keep_runs,
                keep_days=settings.keep_days,
                events=events,
            )
            if executed and settings.flaky:
                pairs = [(t.task_id, t.key) for t in executed if t.key]
                lines.extend(("Flaky", line) for line in flaky_lines(store.key_outcomes(pairs)))
    except HistoryError as exc:
        vx.warning(f"run history not recorded: {exc}")
    except sqlite3.Error as exc:
        vx.warning(f"run history not recorded: {history_path(root)}: {exc}")
    return lines


def _seconds(ms: float) -> str:
    return f"{ms / 1000:.1f}s"


def regressions(
    executed: list[TaskRecord], past: dict[str, list[float]], settings: HistorySettings
) -> list[str]:
    """``core#test took 12.3s, 3.1x its p50 of 4.0s (last 20 runs)`` (with a multiplication
    sign) for each task that took more than ``regression_ratio`` times its p50 and longer
    than its p99, at least ``regression_min_seconds`` beyond the p50, with
    ``regression_min_samples`` earlier runs."""
    lines = []
    for task in executed:
        samples = sorted(past.get(task.task_id, ()))
        if len(samples) < settings.regression_min_samples:
            continue
        p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
        took = task.duration_ms
        if (
            took > settings.regression_ratio * p50
            and took > p99
            and took - p50 >= settings.regression_min_seconds * 1000
        ):
            ratio = took / p50 if p50 > 0 else float("inf")
            lines.append(
                f"{task.task_id} took {_seconds(took)}, {ratio:.1f}{TIMES} its p50 of "
                f"{_seconds(p50)} (last {len(samples)} runs)"
            )
    return lines


def flaky_lines(outcomes: dict[tuple[str, str], tuple[int, int, int]]) -> list[str]:
    """One line per task whose key both passed and failed; a pass on a retry (status
    ``flaky``) counts as both."""
    lines = []
    for (task_id, key), (passed, failed, flaky) in sorted(outcomes.items()):
        failed += flaky
        if passed and failed:
            retried = f"; {flaky} only on a retry" if flaky else ""
            lines.append(
                f"{task_id} passed {passed}{TIMES} and failed {failed}{TIMES} with the same "
                f"inputs (key {key[:12]}{retried})"
            )
    return lines
