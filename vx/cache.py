"""The kernel side of caching: task keys, the composition of cache layers, restore and save.

Layers are read in order (:attr:`~vx.caching.CacheLayer.local` layers first); a hit from a
later layer is written to the earlier writable ones; a save goes to the local layers first,
then to the others in the background (awaited before the run ends). Any layer error is a miss
plus one warning per layer per run.
"""

from __future__ import annotations

import contextlib
import io
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, cast

from vx import _log
from vx.caching import (
    Artifact,
    ArtifactInfo,
    CacheLayer,
    CacheResult,
    CacheSource,
    CacheStatus,
    CorruptArtifactError,
)
from vx.errors import UsageError
from vx.execution import OutputCallback, TaskResult, TaskStatus
from vx.explain import ManifestStore, explain
from vx.filehash import FileHasher
from vx.fingerprint import changes as fingerprint_changes
from vx.fingerprint import fingerprint
from vx.keys import KeyBuilder
from vx.outputs import Restored, outputs_current
from vx.runoptions import LayerAccess, RunOptions
from vx.statedir import make_dirs

if TYPE_CHECKING:
    import asyncio

    from vx.artifacts import ArtifactError
    from vx.config import Config
    from vx.graph import Task, TaskGraph
    from vx.ipc import Reported
    from vx.prefetch import Prefetcher

__all__ = ["TaskCache", "create_cache"]


_OFF = LayerAccess(read=False, write=False)
#: Bytes of an archive's head first read to find its metadata (``--dry``, ``vx why``) ...
_HEAD = 64 << 10
#: ... and the most read that way before the entry counts as unusable.
_META_HEAD_LIMIT = 128 << 20


class _LayerReadError(Exception):
    """A cache layer raised while reading (the cause is chained)."""


class _Stale(Exception):
    """The entry's tool-reported fingerprint no longer matches (one change per arg)."""

    def __init__(self, changes: list[str]) -> None:
        super().__init__("; ".join(changes))
        self.changes = changes


class _LayerWriteError(Exception):
    """A local layer raised while storing (the cause is chained)."""

    def __init__(self, layer: CacheLayer) -> None:
        super().__init__(layer.name)
        self.layer = layer


class _HashingSink(io.RawIOBase):
    """Writes through to ``handle``, hashing what passes (the archive's digest, taken while
    it is written)."""

    def __init__(self, handle: IO[bytes], hasher: Any) -> None:
        self.handle = handle
        self.hasher = hasher

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.hasher.update(data)
        written: int = self.handle.write(data)
        return written


def _source(layer: CacheLayer) -> CacheSource:
    return CacheSource.LOCAL if layer.local else CacheSource.REMOTE


class TaskCache:
    """Computes every task's key up front and serves the runner's restore/save calls."""

    def __init__(
        self, config: Config, graph: TaskGraph, layers: list[CacheLayer], options: RunOptions
    ) -> None:
        self.config = config
        self.graph = graph
        self.root = graph.workspace.root
        self.vx_dir = self.root / ".vx"
        self.force = options.force
        overrides = options.cache
        ordered = sorted(layers, key=lambda layer: not layer.local)
        self.layers = ordered
        self.readable: list[CacheLayer] = []
        self.writable: list[CacheLayer] = []
        for layer in ordered:
            read, write = layer.readable, layer.writable
            if overrides is not None:
                access = overrides.get(layer.name, _OFF)
                read, write = read and access.read, write and access.write
            if read:
                self.readable.append(layer)
            if write:
                self.writable.append(layer)
        self.manifests = ManifestStore(self.vx_dir / "manifests")
        self._warned: set[str] = set()
        self._uploads: set[asyncio.Task[None]] = set()
        self._probed: dict[str, CacheLayer | None] = {}
        self._ready: dict[str, tuple[CacheLayer, Restored]] = {}
        self._layer_infos: dict[str, Mapping[str, ArtifactInfo]] = {}
        self._prefetch: Prefetcher | None = None
        self._prefetch_started = False
        self._lane_times: dict[str, tuple[float, float]] = {}
        """Prefetched hits unpacked by prepare_prefetched: when it started, when the
        artifact was in hand (lookup and restore times of the hit)."""
        components = config.hook.hash_components(graph, config)
        self._stale: dict[str, list[str]] = {}
        """Tasks whose entry was found but its tool-reported fingerprint no longer matches."""
        self.hasher = FileHasher(self.vx_dir / "stat-cache")
        self.keys = KeyBuilder(graph, self.hasher, components)
        self.keys.compute()

    # -- helpers ---------------------------------------------------------------

    def _layer_failed(self, layer: CacheLayer, action: str, exc: BaseException) -> None:
        if layer.name in self._warned:
            return
        self._warned.add(layer.name)
        cause = str(exc) or type(exc).__name__
        consequences = {
            "read": "treated as a miss",
            "answer": "treated as a miss",
            "use": "treated as a miss",
            "store": "result not stored there",
        }
        consequence = "" if "disabled" in cause else f" ({consequences[action]})"
        _log.warning(f"{layer.name} cache: {cause}{consequence}", once=False)

    def reason(self, task: Task) -> list[str]:
        stale = self._stale.get(task.id)
        if stale:
            return stale
        previous = self.manifests.load(task.id)
        reported = previous.get("reported") if previous else None
        if previous is not None and previous.get("key") == task.hash and reported:
            if isinstance(reported, dict) and "disabled" in reported:
                return [f"the last run was not cached: {reported['disabled']}"]
            found = self._fingerprint_changes(reported)
            if found:
                return found
        return explain(previous, self.keys.manifests[task.id])

    def _fingerprint_changes(self, reported: object) -> list[str]:
        return fingerprint_changes(self.root, self.hasher, reported, self.keys.environ)

    def _accept(self, meta: dict[str, Any]) -> None:
        """Check an archive's tool-reported fingerprint (if any) as soon as its metadata is
        read; raises :class:`_Stale` when it no longer matches."""
        if "reported" in meta:
            found = self._fingerprint_changes(meta["reported"])
            if found:
                raise _Stale(found)

    def details(self, task: Task) -> CacheResult:
        """Cache details of a task that is about to run (a miss, or caching disabled)."""
        if not task.definition.cache:
            return CacheResult(status=CacheStatus.DISABLED, key=task.hash)
        changes = ("--force",) if self.force else tuple(self.reason(task))
        return CacheResult(
            status=CacheStatus.MISS, key=task.hash, reason="; ".join(changes), changes=changes
        )

    # -- dry run -----------------------------------------------------------------

    def probe(self, task: Task) -> CacheLayer | None:
        """The first readable layer that has the task's key (bumps its access time)."""
        if task.id in self._probed:
            return self._probed[task.id]
        found = None
        if task.definition.cache and not self.force and task.hash:
            for layer in self.readable:
                if task.hash in self._infos(layer):  # one batched query per layer
                    found = layer
                    break
                try:
                    if self._still_valid(layer, task, task.hash):
                        found = layer
                        break
                except Exception as exc:
                    self._layer_failed(layer, "answer", exc)
        self._probed[task.id] = found
        return found

    def _still_valid(self, layer: CacheLayer, task: Task, key: str) -> bool:
        """Whether ``layer`` has an entry for ``key`` that a run would use. An entry found
        without its listing may carry a tool-reported fingerprint: its metadata is checked
        (``--dry`` and ``vx why`` predict what a run would do). Entries with a fingerprint
        never have a listing (see :meth:`save`). The metadata heads the archive, so only
        the head is read (:meth:`~vx.caching.CacheLayer.read_head`): a dry run does not
        download whole artifacts."""
        from vx.artifacts import ArtifactError, read_meta

        size = _HEAD
        while True:
            data = layer.read_head(key, size)
            if data is None:
                return False
            whole = len(data) < size
            try:
                # The zip-bomb ratio needs the whole size: nothing is extracted here.
                meta = read_meta(data, compressed=len(data) if whole else None)
            except ArtifactError:
                if whole or size > _META_HEAD_LIMIT:
                    return False
                size *= 8  # the metadata goes on past the head read: read more
                continue
            break
        if "reported" in meta:
            found = self._fingerprint_changes(meta["reported"])
            if found:
                self._stale[task.id] = found
                return False
        return True

    def lookup(self, task: Task) -> CacheResult:
        """What a run would find for ``task``, without restoring anything."""
        layer = self.probe(task)
        if layer is None:
            return self.details(task)
        return CacheResult(
            status=CacheStatus.HIT, source=_source(layer), layer=layer.name, key=task.hash
        )

    def dry_run_entry(self, task: Task) -> dict[str, Any]:
        manifest = self.keys.manifests[task.id]
        cache = self.lookup(task).as_dict()
        return {"hash": task.hash, "cache": cache, "inputs": manifest["inputs"]}

    # -- run -----------------------------------------------------------------------

    def can_restore_now(self, task: Task) -> bool:
        """Whether ``task`` is a hit whose outputs are already in place (no archive read).
        A task found so earlier in this run (the warm server's admission check) is not
        looked up again."""
        if task.hash is None or not task.definition.cache or self.force:
            return False
        found = self._ready.get(task.id) or self._current_in_index(task, task.hash)
        if found is not None:
            self._ready[task.id] = found
        return found is not None

    def restore_now(self, task: Task, on_output: OutputCallback) -> TaskResult | None:
        """Complete a hit found by :meth:`can_restore_now`."""
        found = self._ready.pop(task.id, None)
        if found is None or task.hash is None:
            return None
        layer, restored = found
        now = time.monotonic()
        start, found_at = self._lane_times.pop(task.id, (now, now))
        return self._hit(task, layer, task.hash, restored, start, found_at, on_output)

    def prefetched(self, task: Task) -> bool:
        """Whether ``task``'s artifact already arrived from the remote (see
        :mod:`vx.prefetch`): its restore needs no round trip, only unpacking."""
        self._start_prefetch()
        return bool(
            self._prefetch is not None
            and task.hash
            and not self.force
            and task.definition.cache
            and self._prefetch.arrived(task.hash)
        )

    async def prepare_prefetched(self, task: Task) -> bool:
        """Unpack the prefetched artifact of ``task`` (see :meth:`prefetched`) and store it
        in the local layers, without emitting any event; True when :meth:`restore_now`
        can then complete the hit. False (a refused or vanished artifact, warned about
        and evicted like in :meth:`restore`): the task goes through :meth:`restore`."""
        import asyncio

        from vx.artifacts import ArtifactError

        prefetch = self._prefetch
        if prefetch is None or task.hash is None:
            return False
        layer, key = prefetch.layer, task.hash
        start = time.monotonic()
        try:
            fetched = await asyncio.to_thread(self._fetch, layer, task, key, True)
        except CorruptArtifactError as exc:
            _log.warning(f"{task.id}: {exc}; evicted, running the task", once=False)
            return False
        except ArtifactError as exc:
            await self._unusable(layer, task, key, exc)
            return False
        except _LayerReadError as exc:
            self._layer_failed(layer, "read", exc.__cause__ or exc)
            return False
        except _Stale as stale:
            self._stale[task.id] = stale.changes
            return False
        if fetched is None:
            return False
        self._ready[task.id] = (layer, fetched[1])
        self._lane_times[task.id] = (start, fetched[2])
        return True

    def _current_in_index(self, task: Task, key: str) -> tuple[CacheLayer, Restored] | None:
        for layer in self.readable:
            restored = self._restore_from_info(layer, task, key)
            if restored is not None:
                return layer, restored
        return None

    async def restore(self, task: Task, on_output: OutputCallback) -> TaskResult | None:
        import asyncio

        from vx.artifacts import ArtifactError

        hook = self.config.hook
        key = task.hash
        if key is None or not task.definition.cache or self.force:
            details = self.details(task)
            hook.task_cache(task, details.status, details)
            return None
        start = time.monotonic()
        self._start_prefetch()
        for index, layer in enumerate(self.readable):
            current = self._restore_from_info(layer, task, key)
            if current is not None:
                return self._hit(task, layer, key, current, start, time.monotonic(), on_output)
            try:
                fetched = await asyncio.to_thread(self._fetch, layer, task, key, index > 0)
            except CorruptArtifactError as exc:
                _log.warning(f"{task.id}: {exc}; evicted, running the task", once=False)
                continue
            except ArtifactError as exc:
                await self._unusable(layer, task, key, exc)
                continue
            except _LayerReadError as exc:
                self._layer_failed(layer, "read", exc.__cause__ or exc)
                continue
            except _Stale as stale:
                self._stale[task.id] = stale.changes
                continue
            if fetched is None:
                continue
            return self._hit(task, layer, key, fetched[1], start, fetched[2], on_output)
        details = replace(self.details(task), lookup_ms=(time.monotonic() - start) * 1000)
        hook.task_cache(task, details.status, details)
        return None

    def _hit(
        self,
        task: Task,
        layer: CacheLayer,
        key: str,
        restored: Restored,
        start: float,
        found_at: float,
        on_output: OutputCallback,
    ) -> TaskResult:
        """``found_at``: when the layer had answered (the rest is restoring the entry)."""
        reported = restored.meta.get("reported")
        self.manifests.save(
            task.id, key, self.keys.manifests[task.id], reported if reported else None
        )
        details = CacheResult(
            status=CacheStatus.HIT,
            source=_source(layer),
            layer=layer.name,
            key=key,
            time_saved_ms=restored.meta.get("duration_ms", 0),
            restored_outputs=restored.extracted,
            lookup_ms=(found_at - start) * 1000,
            restore_ms=(time.monotonic() - found_at) * 1000,
        )
        self.config.hook.task_cache(task, details.status, details)
        if restored.log:
            on_output(restored.log)
        duration = (time.monotonic() - start) * 1000
        return TaskResult(task, TaskStatus.CACHED, 0, duration, restored.log, cache=details)

    def _infos(self, layer: CacheLayer) -> Mapping[str, ArtifactInfo]:
        """The layer's ``info_many`` for every cacheable task of the run, asked once."""
        infos = self._layer_infos.get(layer.name)
        if infos is None:
            keys = [t.hash for t in self.graph if t.hash and t.definition.cache]
            try:
                infos = layer.info_many(keys) if keys else {}
            except Exception:
                infos = {}  # the full read reports problems
            self._layer_infos[layer.name] = infos
        return infos

    def _restore_from_info(self, layer: CacheLayer, task: Task, key: str) -> Restored | None:
        """A hit without reading the archive: the layer knows the entry's outputs and log,
        and the outputs on disk already match them."""
        info = self._infos(layer).get(key)
        if not isinstance(info, ArtifactInfo):
            return None
        meta = {"outputs": info.outputs, "duration_ms": info.duration_ms}
        if not outputs_current(task, self.root, meta):
            return None
        return Restored(meta, info.log, extracted=False)

    def _start_prefetch(self) -> None:
        """On the first restore: fetch, in the background, every cacheable task's artifact
        from the first remote layer, unless a local layer has it (see :mod:`vx.prefetch`)."""
        if self._prefetch_started:
            return
        self._prefetch_started = True
        remote = next((layer for layer in self.readable if not layer.local), None)
        if remote is None:
            return
        local = [self._infos(layer) for layer in self.readable if layer.local]
        depth: dict[str, int] = {}
        for task in self.graph.topological_order():
            depth[task.id] = 1 + max((depth[d] for d in task.dependencies), default=0)
        wanted = sorted(
            (
                task
                for task in self.graph
                if task.hash
                and task.definition.cache
                and task.command is not None
                and not any(task.hash in infos for infos in local)
            ),
            key=lambda task: depth[task.id],
        )
        if wanted:
            from vx.prefetch import Prefetcher

            self._prefetch = Prefetcher(remote, [task.hash for task in wanted if task.hash])

    def _fetch(
        self,
        layer: CacheLayer,
        task: Task,
        key: str,
        backfill: bool = False,
        prefetched: bool = True,
    ) -> tuple[Artifact, Restored, float] | None:
        """Read (or, with ``prefetched``, take the prefetched read) and restore in one
        worker-thread hop; with ``backfill``, also store a hit from a later layer in the
        earlier writable ones. Also returns when the read finished."""
        from vx.artifacts import unpack

        prefetch = self._prefetch if prefetched and self._prefetch else None
        prefetch = prefetch if prefetch is not None and prefetch.layer is layer else None
        future = prefetch.take(key) if prefetch else None
        artifact = None
        try:
            artifact = future.result() if future is not None else layer.get(key)
        except CorruptArtifactError:
            raise
        except Exception as exc:
            raise _LayerReadError() from exc
        finally:
            if prefetch is not None and future is not None:
                prefetch.release(key, artifact)
        if artifact is None:
            return None
        found_at = time.monotonic()
        # One read of the archive: the metadata is checked before anything is extracted.
        restored = unpack(artifact.data, task, self.root, self.vx_dir / "tmp", accept=self._accept)
        # Here rather than on the event loop's thread (the hit's own save then has nothing
        # left to write).
        self.manifests.save(task.id, key, self.keys.manifests[task.id])
        if backfill:
            # An entry with a tool-reported fingerprint keeps no listing: its hits must read
            # (and validate) the archive.
            info = None
            if "reported" not in restored.meta:
                info = ArtifactInfo(
                    outputs=restored.meta.get("outputs", {}),
                    log=restored.log,
                    duration_ms=float(restored.meta.get("duration_ms", 0.0)),
                )
            self._store_earlier(layer, replace(artifact, task_id=task.id, info=info))
        return artifact, restored, found_at

    async def _unusable(self, layer: CacheLayer, task: Task, key: str, exc: ArtifactError) -> None:
        """A corrupt or hostile archive: evict it where possible and run the task."""
        import asyncio

        with contextlib.suppress(Exception):
            await asyncio.to_thread(layer.delete, key)
        if layer.local:
            _log.warning(
                f"{task.id}: local cache entry {key[:16]} is unusable ({exc}); "
                "evicted, running the task",
                once=False,
            )
        else:
            self._layer_failed(layer, "use", type(exc)(f"artifact {key[:16]} refused: {exc}"))

    def _store_earlier(self, source: CacheLayer, artifact: Artifact) -> None:
        """Write a hit from ``source`` to the writable layers read before it."""
        for layer in self.writable:
            if layer is source or self.layers.index(layer) > self.layers.index(source):
                break
            try:
                layer.put(artifact.key, artifact)
            except Exception as exc:
                self._layer_failed(layer, "store", exc)

    async def save(self, task: Task, result: TaskResult, reported: Reported | None = None) -> None:
        """Store a passing result. ``reported``: what the task's tools reported through the
        runner-aware channel: a run a tool kept out of the cache is only remembered for
        ``vx why``; reported inputs and tracked env become the entry's fingerprint, and such
        an entry has no listing (:class:`ArtifactInfo`) so every hit reads its metadata."""
        import asyncio

        if not self.writable or task.hash is None:
            return
        key = task.hash
        changed = self._input_changed(task, reported.ignored_inputs if reported else ())
        if changed is not None:
            _log.warning(
                f"{task.id}: not cached: its input {changed} changed while it ran (an edit; "
                "or the task writes its own inputs, then set cache = false); it runs again "
                "next time",
                once=False,
            )
            return
        if reported is not None and reported.disabled is not None:
            manifest = self.keys.manifests[task.id]
            self.manifests.save(task.id, key, manifest, {"disabled": reported.disabled})
            return
        meta: dict[str, Any] = {
            "key": key,
            "task": task.id,
            "exit_code": result.exit_code,
            "duration_ms": round(result.duration_ms, 3),
            "created_at": time.time(),
            "manifest": self.keys.manifests[task.id],
        }
        local = [layer for layer in self.writable if layer.local]
        rest = [layer for layer in self.writable if not layer.local]
        started = time.monotonic()
        try:
            artifact = await asyncio.to_thread(
                self._pack_and_store, task, result, meta, local, reported
            )
        except OSError as exc:
            _log.warning(f"{task.id}: could not archive outputs ({exc}); not cached", once=False)
            return
        except _LayerWriteError as exc:
            self._layer_failed(exc.layer, "store", exc.__cause__ or exc)
            return
        result.cache = replace(result.cache, save_ms=(time.monotonic() - started) * 1000)
        self.manifests.save(task.id, key, self.keys.manifests[task.id], meta.get("reported"))
        for layer in rest:
            upload = asyncio.create_task(self._upload(layer, artifact))
            self._uploads.add(upload)
            upload.add_done_callback(self._uploads.discard)

    async def adopt(self, task: Task, result: TaskResult, *, restore: bool) -> None:
        """A task that ran elsewhere and whose artifact the executor stored under its key
        (:class:`~vx.execution.RemoteExecution`): record the manifest and, when ``restore``,
        restore the outputs here from the first layer holding the artifact (written to the
        earlier writable layers, i.e. ``local``). Problems are one warning; never raises."""
        import asyncio

        from vx.artifacts import ArtifactError

        key = task.hash
        if key is None:
            return
        self.manifests.save(task.id, key, self.keys.manifests[task.id])
        if not restore:
            return
        for layer in self.readable:
            if layer.local:
                continue
            try:
                # Never a prefetched answer: the executor stored the artifact after it.
                fetched = await asyncio.to_thread(self._fetch, layer, task, key, False, False)
            except (CorruptArtifactError, ArtifactError) as exc:
                _log.warning(f"{task.id}: outputs not restored ({exc})", once=False)
                return
            except _LayerReadError as exc:
                self._layer_failed(layer, "read", exc.__cause__ or exc)
                continue
            except _Stale as stale:
                changes = "; ".join(stale.changes)
                _log.warning(f"{task.id}: outputs not restored ({changes})", once=False)
                return
            if fetched is not None:
                artifact, restored, _ = fetched
                info = ArtifactInfo(
                    outputs=restored.meta.get("outputs", {}),
                    log=restored.log,
                    duration_ms=result.duration_ms,
                )
                adopted = replace(artifact, task_id=task.id, info=info)
                await asyncio.to_thread(self._store_earlier, layer, adopted)
                return
        _log.warning(
            f"{task.id}: its outputs were not found in the shared cache; not restored here",
            once=False,
        )

    def _input_changed(self, task: Task, ignored: Iterable[str] = ()) -> str | None:
        """The first input (declared or global) whose digest is no longer the one in the key:
        the outputs may come from content the key does not describe. Paths a tool reported as
        ignored inputs (its own caches) do not count. Unchanged files cost a stat."""
        manifest = self.keys.manifests.get(task.id)
        if manifest is None:
            return None
        recorded = {**manifest["global_inputs"], **manifest["inputs"]}
        for path in ignored:
            below = path + "/"
            recorded = {p: d for p, d in recorded.items() if p != path and not p.startswith(below)}
        prefix = f"{self.root}/"
        now = self.hasher.digests([prefix + path for path in recorded])
        return next((p for p, digest in recorded.items() if now[prefix + p] != digest), None)

    def _pack_and_store(
        self,
        task: Task,
        result: TaskResult,
        meta: dict[str, Any],
        local: list[CacheLayer],
        reported: Reported | None,
    ) -> Artifact:
        """Archive the outputs and save them in the local layers in one worker-thread hop
        (``meta`` gains the tool-reported fingerprint, if any)."""
        ignored: frozenset[str] = frozenset()
        if reported is not None:
            ignored = frozenset(reported.ignored_outputs)
            found = fingerprint(self.root, self.hasher, reported)
            if found is not None:
                meta["reported"] = found
        key = meta["key"]
        # The archive is streamed into a temporary file (hashed on the way) that the first
        # local layer takes over: no copy of it in memory unless another layer needs bytes.
        path, outputs, digest = self._pack_to_file(task, result, meta, ignored)
        try:
            info = None
            if "reported" not in meta:
                info = ArtifactInfo(
                    outputs=outputs, log=result.output, duration_ms=result.duration_ms
                )
            artifact = Artifact(
                key=key, data=b"", duration_ms=result.duration_ms, task_id=task.id, info=info
            )
            others = len(local) > 1 or any(not layer.local for layer in self.writable)
            if others:
                artifact = replace(artifact, data=path.read_bytes())
            for index, layer in enumerate(local):
                try:
                    if index == 0:
                        layer.put_file(key, replace(artifact, data=b""), path, digest)
                    else:
                        layer.put(key, artifact)
                except Exception as exc:
                    raise _LayerWriteError(layer) from exc
        finally:
            path.unlink(missing_ok=True)
        return artifact

    def _pack_to_file(
        self, task: Task, result: TaskResult, meta: dict[str, Any], ignored: frozenset[str]
    ) -> tuple[Path, dict[str, Any], str]:
        """Archive the outputs into a new file in ``.vx/tmp``; returns its path, the output
        listing and the file's blake3 digest. Raises ``OSError`` (the file removed)."""
        import blake3

        from vx.artifacts import pack_into

        directory = self.vx_dir / "tmp"
        path = directory / f".archive-{os.getpid()}-{os.urandom(6).hex()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            make_dirs(directory)
            fd = os.open(path, flags, 0o666)
        try:
            with open(fd, "wb", buffering=0) as handle:
                sink = _HashingSink(handle, blake3.blake3())
                stream = cast("IO[bytes]", sink)
                outputs = pack_into(stream, task, self.root, result.output, meta, ignored=ignored)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return path, outputs, sink.hasher.hexdigest()

    async def _upload(self, layer: CacheLayer, artifact: Artifact) -> None:
        import asyncio

        started = time.monotonic()
        error: str | None = None
        try:
            await asyncio.to_thread(layer.put, artifact.key, artifact)
        except Exception as exc:
            self._layer_failed(layer, "store", exc)
            error = type(exc).__name__
        duration_ms = (time.monotonic() - started) * 1000
        task = self.graph[artifact.task_id]
        self.config.hook.cache_upload(task, layer.name, artifact.key, duration_ms, error)

    def flush(self) -> None:
        """End of run: stop prefetching, persist what was batched."""
        if self._prefetch is not None:
            self._prefetch.stop()
        self.manifests.flush()

    async def wait_uploads(self) -> None:
        """Wait for background uploads, bounded by the layers' ``upload_timeout``."""
        import asyncio

        if not self._uploads:
            return
        timeout = max((layer.upload_timeout for layer in self.writable), default=60.0)
        _, pending = await asyncio.wait(set(self._uploads), timeout=timeout)
        if pending:
            _log.warning(
                f"{len(pending)} cache upload(s) did not finish within {timeout:g}s; abandoned",
                once=False,
            )
            for task in pending:
                task.cancel()


def create_cache(config: Config, graph: TaskGraph, options: RunOptions) -> TaskCache:
    """Build the run's :class:`TaskCache` from the layers plugins provide."""
    layers = config.hook.cache_layers(config)
    names = [layer.name for layer in layers]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise UsageError(f"two cache layers are named {', '.join(sorted(duplicates))}")
    return TaskCache(config, graph, layers, options)
