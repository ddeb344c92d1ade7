"""The kernel side of caching: task keys, the composition of cache layers, restore and save.

Layers are read in order (``local`` first); a hit from a later layer is written to the
earlier writable ones; a save goes to ``local`` first, then to the others in the background
(awaited before the run ends). Any layer error is a miss plus one warning per layer per run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from vx import _log
from vx.caching import Artifact, ArtifactInfo, CacheLayer, CorruptArtifactError
from vx.errors import UsageError
from vx.execution import OutputCallback, TaskResult, TaskStatus
from vx.explain import ManifestStore, explain
from vx.filehash import FileHasher
from vx.keys import KeyBuilder
from vx.outputs import Restored, outputs_current
from vx.runoptions import LayerAccess, RunOptions

if TYPE_CHECKING:
    import asyncio

    from vx.artifacts import ArtifactError
    from vx.config import Config
    from vx.graph import Task, TaskGraph

__all__ = ["TaskCache", "create_cache"]


_OFF = LayerAccess(read=False, write=False)


class _LayerReadError(Exception):
    """A cache layer raised while reading (the cause is chained)."""


class _LayerWriteError(Exception):
    """The local layer raised while storing (the cause is chained)."""


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
        ordered = sorted(layers, key=lambda layer: layer.name != "local")
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
        self._probed: dict[str, str | None] = {}
        self._ready: dict[str, tuple[CacheLayer, Restored]] = {}
        self._layer_infos: dict[str, Mapping[str, ArtifactInfo]] = {}
        components = {task.id: config.hook.task_hash_components(task, config) for task in graph}
        hasher = FileHasher(self.vx_dir / "stat-cache")
        self.keys = KeyBuilder(graph, hasher, components)
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
        return explain(self.manifests.load(task.id), self.keys.manifests[task.id])

    def _miss_details(self, task: Task) -> dict[str, Any]:
        if not task.definition.cache:
            return {"status": "disabled", "key": task.hash}
        changes = ["--force"] if self.force else self.reason(task)
        return {
            "status": "miss",
            "key": task.hash,
            "reason": "; ".join(changes),
            "changes": changes,
        }

    def details(self, task: Task) -> dict[str, object]:
        """Cache details of a task that is about to run."""
        return dict(self._miss_details(task))

    # -- dry run -----------------------------------------------------------------

    def probe(self, task: Task) -> str | None:
        """Name of the first readable layer that has the task's key (bumps its access time)."""
        if task.id in self._probed:
            return self._probed[task.id]
        found = None
        if task.definition.cache and not self.force and task.hash:
            for layer in self.readable:
                if task.hash in self._infos(layer):  # one batched query per layer
                    found = layer.name
                    break
                try:
                    if layer.has(task.hash):
                        found = layer.name
                        break
                except Exception as exc:
                    self._layer_failed(layer, "answer", exc)
        self._probed[task.id] = found
        return found

    def dry_run_entry(self, task: Task) -> dict[str, Any]:
        source = self.probe(task)
        if source is not None:
            cache: dict[str, Any] = {"status": "hit", "source": source, "key": task.hash}
        else:
            cache = self._miss_details(task)
        manifest = self.keys.manifests[task.id]
        return {"hash": task.hash, "cache": cache, "inputs": manifest["inputs"]}

    # -- run -----------------------------------------------------------------------

    def can_restore_now(self, task: Task) -> bool:
        """Whether ``task`` is a hit whose outputs are already in place (no archive read)."""
        if task.hash is None or not task.definition.cache or self.force:
            return False
        found = self._current_in_index(task, task.hash)
        if found is not None:
            self._ready[task.id] = found
        return found is not None

    def restore_now(self, task: Task, on_output: OutputCallback) -> TaskResult | None:
        """Complete a hit found by :meth:`can_restore_now`."""
        found = self._ready.pop(task.id, None)
        if found is None or task.hash is None:
            return None
        layer, restored = found
        return self._hit(task, layer, task.hash, restored, time.monotonic(), on_output)

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
            hook.task_cache(
                task, "disabled" if not task.definition.cache else "miss", self._miss_details(task)
            )
            return None
        start = time.monotonic()
        for index, layer in enumerate(self.readable):
            current = self._restore_from_info(layer, task, key)
            if current is not None:
                return self._hit(task, layer, key, current, start, on_output)
            try:
                fetched = await asyncio.to_thread(self._fetch, layer, task, key)
            except CorruptArtifactError as exc:
                _log.warning(f"{task.id}: {exc}; evicted, running the task", once=False)
                continue
            except ArtifactError as exc:
                await self._unusable(layer, task, key, exc)
                continue
            except _LayerReadError as exc:
                self._layer_failed(layer, "read", exc.__cause__ or exc)
                continue
            if fetched is None:
                continue
            artifact, restored = fetched
            if index > 0:
                info = ArtifactInfo(
                    outputs=restored.meta.get("outputs", {}),
                    log=restored.log,
                    duration_ms=float(restored.meta.get("duration_ms", 0.0)),
                )
                await self._backfill(layer, replace(artifact, task_id=task.id, info=info))
            return self._hit(task, layer, key, restored, start, on_output)
        hook.task_cache(task, "miss", self._miss_details(task))
        return None

    def _hit(
        self,
        task: Task,
        layer: CacheLayer,
        key: str,
        restored: Restored,
        start: float,
        on_output: OutputCallback,
    ) -> TaskResult:
        self.manifests.save(task.id, key, self.keys.manifests[task.id])
        details = {
            "status": "hit",
            "source": "local" if layer.name == "local" else "remote",
            "layer": layer.name,
            "key": key,
            "time_saved_ms": restored.meta.get("duration_ms", 0),
            "restored_outputs": restored.extracted,
        }
        self.config.hook.task_cache(task, "hit", details)
        if restored.log:
            on_output(restored.log)
        duration = (time.monotonic() - start) * 1000
        return TaskResult(task, TaskStatus.CACHED, 0, duration, restored.log, cache=details)

    def _infos(self, layer: CacheLayer) -> Mapping[str, ArtifactInfo]:
        """The layer's ``info_many`` for every cacheable task of the run, asked once."""
        infos = self._layer_infos.get(layer.name)
        if infos is None:
            info_many = getattr(layer, "info_many", None)
            keys = [t.hash for t in self.graph if t.hash and t.definition.cache]
            try:
                infos = info_many(keys) if callable(info_many) and keys else {}
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

    def _fetch(self, layer: CacheLayer, task: Task, key: str) -> tuple[Artifact, Restored] | None:
        """Read and restore in one worker-thread hop."""
        from vx.artifacts import unpack

        try:
            artifact = layer.get(key)
        except CorruptArtifactError:
            raise
        except Exception as exc:
            raise _LayerReadError() from exc
        if artifact is None:
            return None
        return artifact, unpack(artifact.data, task, self.root, self.vx_dir / "tmp")

    async def _unusable(self, layer: CacheLayer, task: Task, key: str, exc: ArtifactError) -> None:
        """A corrupt or hostile archive: evict it where possible and run the task."""
        import asyncio

        delete = getattr(layer, "delete", None)
        if callable(delete):
            with contextlib.suppress(Exception):
                await asyncio.to_thread(delete, key)
        if layer.name == "local":
            _log.warning(
                f"{task.id}: local cache entry {key[:16]} is unusable ({exc}); "
                "evicted, running the task",
                once=False,
            )
        else:
            self._layer_failed(layer, "use", type(exc)(f"artifact {key[:16]} refused: {exc}"))

    async def _backfill(self, source: CacheLayer, artifact: Artifact) -> None:
        import asyncio

        for layer in self.writable:
            if layer is source or self.layers.index(layer) > self.layers.index(source):
                break
            try:
                await asyncio.to_thread(layer.put, artifact.key, artifact)
            except Exception as exc:
                self._layer_failed(layer, "store", exc)

    async def save(self, task: Task, result: TaskResult) -> None:
        import asyncio

        if not self.writable or task.hash is None:
            return
        key = task.hash
        meta = {
            "key": key,
            "task": task.id,
            "exit_code": result.exit_code,
            "duration_ms": round(result.duration_ms, 3),
            "created_at": time.time(),
            "manifest": self.keys.manifests[task.id],
        }
        first, *rest = self.writable
        local = first if first.name == "local" else None
        if local is None:
            rest = self.writable
        try:
            artifact = await asyncio.to_thread(self._pack_and_store, task, result, meta, local)
        except OSError as exc:
            _log.warning(f"{task.id}: could not archive outputs ({exc}); not cached", once=False)
            return
        except _LayerWriteError as exc:
            assert local is not None
            self._layer_failed(local, "store", exc.__cause__ or exc)
            return
        self.manifests.save(task.id, key, self.keys.manifests[task.id])
        for layer in rest:
            upload = asyncio.create_task(self._upload(layer, artifact))
            self._uploads.add(upload)
            upload.add_done_callback(self._uploads.discard)

    def _pack_and_store(
        self, task: Task, result: TaskResult, meta: dict[str, Any], local: CacheLayer | None
    ) -> Artifact:
        """Archive the outputs and save them locally in one worker-thread hop."""
        from vx.artifacts import pack

        data, outputs = pack(task, self.root, result.output, meta)
        artifact = Artifact(
            key=meta["key"],
            data=data,
            duration_ms=result.duration_ms,
            task_id=task.id,
            info=ArtifactInfo(outputs=outputs, log=result.output, duration_ms=result.duration_ms),
        )
        if local is not None:
            try:
                local.put(artifact.key, artifact)
            except Exception as exc:
                raise _LayerWriteError() from exc
        return artifact

    async def _upload(self, layer: CacheLayer, artifact: Artifact) -> None:
        import asyncio

        try:
            await asyncio.to_thread(layer.put, artifact.key, artifact)
        except Exception as exc:
            self._layer_failed(layer, "store", exc)

    def flush(self) -> None:
        """End of run: persist what was batched."""
        self.manifests.flush()

    async def wait_uploads(self) -> None:
        """Wait for background uploads, bounded by the layers' ``upload_timeout``."""
        import asyncio

        if not self._uploads:
            return
        timeout = max(
            (float(getattr(layer, "upload_timeout", 60.0)) for layer in self.writable), default=60.0
        )
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
