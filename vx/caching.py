"""The cache-layer base class that local and remote caches implement, and the typed
result of a task's cache lookup."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any, final

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "Artifact",
    "ArtifactInfo",
    "CacheLayer",
    "CacheResult",
    "CacheSource",
    "CacheStatus",
    "CorruptArtifactError",
]


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


class CacheStatus(StrEnum):
    """The outcome of a task's cache lookup."""

    HIT = "hit"
    """Restored from a layer (outputs and log)."""
    MISS = "miss"
    """Not found (or ``--force``): the task runs and its result is saved."""
    DISABLED = "disabled"
    """Not looked up: the task sets ``cache = false`` or has no command."""
    SKIPPED = "skipped"
    """Never reached: a dependency failed or the run stopped first."""


class CacheSource(StrEnum):
    """Where a hit came from: a layer on this machine or a shared one (see
    :attr:`CacheLayer.local`)."""

    LOCAL = "local"
    REMOTE = "remote"


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class CacheResult(Mapping[str, object]):
    """What the cache did for one task: passed to ``vx_task_cache`` as ``details``, kept in
    :attr:`vx.TaskResult.cache`, written to the run summary and ``--dry=json`` (as
    :meth:`as_dict`).

    It also reads like that JSON object (``details["key"]``, ``details.get("layer")``):
    unset fields are absent.
    """

    status: CacheStatus
    source: CacheSource | None = None
    """Hits: local or remote."""
    layer: str | None = None
    """Hits: the name of the layer that had the entry."""
    key: str | None = None
    """The task's key (None when it was never computed)."""
    time_saved_ms: float | None = None
    """Hits: how long the task took when it ran."""
    restored_outputs: bool | None = None
    """Hits: whether outputs were written (False: they were already in place)."""
    reason: str | None = None
    """Misses: what changed since the last cached run, ``; ``-joined."""
    changes: tuple[str, ...] | None = None
    """Misses: the same, one entry per change."""
    uncached: str | None = None
    """Misses: why the result was not stored although the task passed (a tool called
    ``disable_cache``, see ``docs/runner-aware.md``)."""
    persistent: str | None = None
    """Persistent tasks (never cached): how the server ended (``stopped``, ``running``,
    ``failed``, ``cancelled``)."""
    lookup_ms: float | None = None
    """Hits and misses that were looked up: milliseconds until a layer answered, or until
    every layer missed (0 for hits completed before the scheduler starts)."""
    restore_ms: float | None = None
    """Hits: milliseconds spent restoring the entry (outputs and log)."""
    save_ms: float | None = None
    """Tasks that ran and were archived into the local layer: milliseconds that took."""

    def as_dict(self) -> dict[str, object]:
        """The JSON form: set fields only, enums as strings, ``changes`` as a list."""
        document: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value is not None:
                document[name] = list(value) if isinstance(value, tuple) else value
        return document

    def __getitem__(self, name: str) -> object:
        value = getattr(self, name, None) if name in self.__dataclass_fields__ else None
        if value is None:
            raise KeyError(name)
        return list(value) if isinstance(value, tuple) else value

    def __iter__(self) -> Iterator[str]:
        return (name for name in self.__dataclass_fields__ if getattr(self, name) is not None)

    def __len__(self) -> int:
        return sum(1 for _ in self)


class CacheLayer:
    """Base class of the places artifacts are read from and written to (like httpx's
    ``BaseTransport``): the local store, a remote cache, S3 ... Returned by
    ``vx_cache_layers``.

    Subclasses set :attr:`name` and implement :meth:`get`, :meth:`put` and :meth:`has`;
    the other methods have working defaults. Methods are called from worker threads.
    Any exception other than :class:`CorruptArtifactError` is treated as a miss (reads) or
    as "not stored there" (writes), with one warning per layer per run; it never fails the
    run.

    The kernel composes the layers of a run: :attr:`local` layers are read first (then the
    others, in hook call order); a hit from a later layer is written to the earlier
    writable ones; a result is stored in the local layers before the task counts as done,
    and uploaded to the others in the background (awaited, up to the longest
    :attr:`upload_timeout`, before the run ends).
    """

    name: str
    """Unique among a run's layers: ``--cache=NAME:rw`` and warnings use it."""
    readable: bool = True
    """Whether the layer is read at all (configuration may turn reads off)."""
    writable: bool = True
    """Whether results are written to it."""
    local: bool = False
    """Capability: the layer is on this machine (cheap to read and write). Local layers
    are read first and written synchronously, and their hits are reported with source
    :attr:`CacheSource.LOCAL`; the others are remote."""
    upload_timeout: float = 60.0
    """Seconds the end of a run waits for this layer's background uploads."""

    def get(self, key: str) -> Artifact | None:
        """The artifact stored under ``key``, or None. Raise :class:`CorruptArtifactError`
        for an entry that failed its integrity check (after evicting it)."""
        raise NotImplementedError

    def put(self, key: str, artifact: Artifact) -> None:
        """Store ``artifact`` under ``key`` (replacing any entry)."""
        raise NotImplementedError

    def put_file(self, key: str, artifact: Artifact, path: Path, digest: str) -> None:
        """Store the archive held in the file at ``path`` under ``key`` (like :meth:`put`;
        ``artifact.data`` is empty, ``digest`` is the blake3 hex digest of the file). The
        kernel calls this on the first :attr:`local` layer when it saves a result: the
        archive is streamed to that file while it is built instead of being held in memory.
        The file is the kernel's temporary file (on the file system of the workspace's
        ``.vx``); the layer may move it, and the kernel removes it if it is still there
        afterwards. Default: :meth:`put` with the file's bytes."""
        self.put(key, replace(artifact, data=path.read_bytes()))

    def read_head(self, key: str, size: int) -> bytes | None:
        """At least the first ``size`` bytes of the artifact stored under ``key`` (all of it
        when it is shorter), or None when there is none. ``--dry`` and ``vx why`` read an
        entry's metadata, which heads the archive, this way: a remote layer can stop the
        transfer there instead of downloading the whole artifact. Raise like :meth:`get`.
        Default: ``get(key)``'s data."""
        artifact = self.get(key)
        return None if artifact is None else artifact.data

    def delete(self, key: str) -> None:
        """Evict the entry of ``key``; called when its archive turned out to be corrupt or
        hostile. Default: nothing (a layer that cannot evict keeps the entry)."""
        return None

    def info_many(self, keys: Sequence[str]) -> Mapping[str, ArtifactInfo]:
        """:class:`ArtifactInfo` (output listing and log, as stored by :meth:`put` from
        ``artifact.info``) for those of ``keys`` the layer holds; each counts as a hit for
        the layer's bookkeeping. Asked once per run for every cacheable task: a task whose
        outputs on disk already match its entry is restored without :meth:`get`.
        Default: ``{}`` (every hit reads the archive)."""
        return {}
