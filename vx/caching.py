"""The cache-layer protocol that local and remote caches implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Artifact", "CacheLayer", "CorruptArtifactError"]


@dataclass(frozen=True, slots=True)
class Artifact:
    """One cache entry as it travels between layers: a zstd-compressed tar archive holding the
    task's outputs, its log and its metadata (see ``docs/caching.md``)."""

    key: str
    data: bytes
    duration_ms: float = 0.0
    """How long the task took when it ran (Turborepo's ``x-artifact-duration``)."""
    task_id: str = ""
    """The task it was produced by, when known (for layers that index entries)."""


class CorruptArtifactError(Exception):
    """Raised by ``CacheLayer.get`` for an entry that failed its integrity check and was
    evicted; the kernel prints one warning and re-runs the task."""


@runtime_checkable
class CacheLayer(Protocol):
    """A place artifacts are read from and written to (like httpx's ``BaseTransport``).

    Methods are called from worker threads. ``get`` returns None on a miss;
    any other exception is treated as a miss with one warning per layer per run
    and never fails the run. A layer may also implement ``delete(key)``: the
    kernel calls it for an entry whose archive turned out to be corrupt or
    hostile.
    """

    name: str
    readable: bool
    writable: bool

    def get(self, key: str) -> Artifact | None: ...

    def put(self, key: str, artifact: Artifact) -> None: ...

    def has(self, key: str) -> bool: ...
