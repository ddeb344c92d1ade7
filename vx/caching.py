"""The cache-layer protocol that local and remote caches implement."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

__all__ = ["Artifact", "ArtifactInfo", "CacheLayer", "CorruptArtifactError"]


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """What a layer may keep beside an artifact so that a hit whose outputs are already in
    place needs no archive read (see ``CacheLayer.info``)."""

    outputs: Mapping[str, Mapping[str, Any]]
    """Workspace-relative output path -> ``{"type", "size", "mtime_ns", "mode", "digest"}``
    (or ``{"type": "symlink", "target"}``), as recorded in the archive's metadata."""
    log: bytes
    """The task's captured output."""
    duration_ms: float = 0.0


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
    info: ArtifactInfo | None = None
    """The archive's output listing and log, when known (for layers that implement ``info``)."""


class CorruptArtifactError(Exception):
    """Raised by ``CacheLayer.get`` for an entry that failed its integrity check and was
    evicted; the kernel prints one warning and re-runs the task."""


@runtime_checkable
class CacheLayer(Protocol):
    """A place artifacts are read from and written to (like httpx's ``BaseTransport``).

    Methods are called from worker threads. ``get`` returns None on a miss;
    any other exception is treated as a miss with one warning per layer per run
    and never fails the run.

    Optional methods: ``delete(key)``, called for an entry whose archive turned
    out to be corrupt or hostile; and ``info_many(keys) -> Mapping[str,
    ArtifactInfo]``, the output listing and log stored by ``put`` from
    ``artifact.info`` for those of ``keys`` the layer holds (each counts as a hit
    for the layer's bookkeeping). The kernel asks once per run for every
    cacheable task; when a task's outputs on disk already match its entry, the
    task is restored from that information without calling ``get``.
    """

    name: str
    readable: bool
    writable: bool

    def get(self, key: str) -> Artifact | None: ...

    def put(self, key: str, artifact: Artifact) -> None: ...

    def has(self, key: str) -> bool: ...
