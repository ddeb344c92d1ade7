"""The cache-layer protocol that local and remote caches implement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Artifact", "CacheLayer"]


@dataclass(frozen=True, slots=True)
class Artifact:
    """One cache entry as it travels between layers: a zstd-compressed tar archive holding the
    task's outputs, its log and its metadata (see ``docs/caching.md``)."""

    key: str
    data: bytes
    duration_ms: float = 0.0
    """How long the task took when it ran (Turborepo's ``x-artifact-duration``)."""


@runtime_checkable
class CacheLayer(Protocol):
    """A place artifacts are read from and written to (like httpx's ``BaseTransport``).

    Methods are called from worker threads. ``get`` returns None on a miss;
    an exception from a layer other than ``local`` is treated as a miss with
    one warning and never fails the run.
    """

    name: str
    readable: bool
    writable: bool

    def get(self, key: str) -> Artifact | None: ...

    def put(self, key: str, artifact: Artifact) -> None: ...

    def has(self, key: str) -> bool: ...
