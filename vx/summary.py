"""Built-in plugin ``summary``: ``vx run --summarize[=PATH]`` writes the run summary JSON."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import vx
from vx.execution import TaskStatus
from vx.fileio import atomic_write

if TYPE_CHECKING:
    from vx.cli import Parser
    from vx.config import Config
    from vx.execution import RunInfo


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    parser.add_option(
        "--summarize",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        command=("run", "replay"),
        help="write a run summary JSON to PATH "
        "(default: .vx/runs/<run-id>.json in the workspace root)",
    )


def summary_document(run: RunInfo) -> dict[str, Any]:
    """The run summary: run metadata and one entry per task."""
    counts = {status.value: 0 for status in TaskStatus}
    tasks = []
    for id in run.tasks:
        result = run.results.get(id)
        if result is None:
            continue
        counts[result.status.value] += 1
        tasks.append(
            {
                "id": id,
                "project": result.task.project.name,
                "task": result.task.name,
                "status": result.status.value,
                "exit_code": result.exit_code,
                "duration_ms": round(result.duration_ms, 3),
                "start_ms": None if result.start_ms is None else round(result.start_ms, 3),
                "slot": result.slot,
                "attempts": result.attempts,
                "cache": result.cache.as_dict(),
                "hash": result.task.hash,
                "command": result.task.command,
                "dependencies": list(result.task.dependencies),
                **({"plugin_data": result.plugin_data} if result.plugin_data else {}),
            }
        )
        if result.worker is not None:
            tasks[-1]["worker"] = result.worker
    return {
        "run_id": run.run_id,
        "vx_version": vx.__version__,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(run.started_at)),
        "duration_ms": round(run.duration_ms or 0.0, 3),
        "exit_code": run.exit_code,
        "interrupted": run.interrupted,
        "concurrency": run.concurrency,
        "task_names": run.task_names,
        "counts": counts,
        "tasks": tasks,
    }


@vx.hookimpl
def vx_run_finish(run: RunInfo, config: Config) -> None:
    target = getattr(config.option, "summarize", None)
    if target is None:
        return
    root = config.require_root()
    path = (
        root / ".vx" / "runs" / f"{run.run_id}.json"
        if target == ""
        else (config.invocation_dir / target)
    )
    atomic_write(path, json.dumps(summary_document(run), indent=2) + "\n", best_effort=False)
    run.summary_path = Path(path)
