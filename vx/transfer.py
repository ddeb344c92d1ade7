"""Moving a task's outputs between machines: the two ends of a remote executor.

A remote executor (``vx_executor`` returning :class:`~vx.execution.RemoteExecution`) runs a
command on another machine. There, before the command, the outputs of the task's dependencies
are restored from the shared cache with :func:`restore_outputs`; after it succeeds, the
task's outputs are archived with :func:`pack_outputs` and stored under ``task.hash``. The
archive format is the one every cache layer holds, so the client (and any later run,
anywhere) restores it like any other cache hit.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vx.caching import Artifact, ArtifactInfo

if TYPE_CHECKING:
    from vx.graph import Task

__all__ = ["pack_outputs", "restore_outputs"]


def pack_outputs(task: Task, root: Path, log: bytes, duration_ms: float) -> Artifact:
    """Archive ``task``'s declared outputs found under the workspace ``root`` (paths come from
    ``task.project.path``, which must lie inside ``root``) with its ``log``, keyed by
    ``task.hash``. Raises ``OSError`` when an output cannot be read."""
    from vx.artifacts import pack

    if task.hash is None:
        raise ValueError(f"{task.id} has no cache key")
    meta: dict[str, Any] = {
        "key": task.hash,
        "task": task.id,
        "exit_code": 0,
        "duration_ms": round(duration_ms, 3),
        "created_at": time.time(),
    }
    data, outputs = pack(task, root, log, meta)
    return Artifact(
        key=task.hash,
        data=data,
        duration_ms=duration_ms,
        task_id=task.id,
        info=ArtifactInfo(outputs=outputs, log=log, duration_ms=duration_ms),
    )


def restore_outputs(task: Task, root: Path, data: bytes) -> bytes:
    """Validate the archive ``data`` (a cache artifact of ``task``) and restore its outputs
    under the workspace ``root``; returns the stored log. Raises ``ValueError`` for a corrupt
    or hostile archive (nothing is written then)."""
    from vx.artifacts import ArtifactError, unpack

    try:
        return unpack(data, task, root, root / ".vx" / "tmp").log
    except ArtifactError as exc:
        raise ValueError(f"{task.id}: {exc}") from None
