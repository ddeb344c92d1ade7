"""The kernel side of caching: task keys, the composition of cache layers, restore and save.

Layers are read in order (``local`` first); a hit from a later layer is written to the
earlier writable ones; a save goes to ``local`` first, then to the others in the background
(awaited before the run ends). Any layer error is a miss plus one warning per layer per run.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import TYPE_CHECKING, Any

from vx import _log
from vx.artifacts import ArtifactError, pack, unpack
from vx.caching import Artifact, CacheLayer, CorruptArtifactError
from vx.errors import UsageError
from vx.execution import OutputCallback, TaskResult, TaskStatus
from vx.explain import ManifestStore, explain
from vx.hashing import FileHasher, KeyBuilder

if TYPE_CHECKING:
    from vx.config import Config
    from vx.graph import Task, TaskGraph

__all__ = ["TaskCache", "parse_cache_spec"]


def parse_cache_spec(spec: str) -> dict[str, tuple[bool, bool]]:
    """``local:rw,remote:r`` -> ``{"local": (True, True), "remote": (True, False)}``."""
    result: dict[str, tuple[bool, bool]] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, mode = part.partition(":")
        if not sep or not name or set(mode) - {"r", "w"}:
            raise UsageError(
                f"--cache={spec!r}: expected LAYER:MODE pairs like local:rw,remote:r "
                "(MODE is r, w, rw or empty)"
            )
        result[name.strip()] = ("r" in mode, "w" in mode)
    return result


class TaskCache:
    """Computes every task's key up front and serves the runner's restore/save calls."""

    def __init__(self, config: Config, graph: TaskGraph, layers: list[CacheLayer]) -> None:
        self.config = config
        self.graph = graph
        self.root = graph.workspace.root
        self.vx_dir = self.root / ".vx"
        option = config.option
        self.force = bool(getattr(option, "force", False))
        overrides = parse_cache_spec(option.cache) if getattr(option, "cache", None) else None
        ordered = sorted(layers, key=lambda layer: layer.name != "local")
        self.layers = ordered
        self.readable: list[CacheLayer] = []
        self.writable: list[CacheLayer] = []
        for layer in ordered:
            read, write = layer.readable, layer.writable
            if overrides is not None:
                read_override, write_override = overrides.get(layer.name, (False, False))
                read, write = read and read_override, write and write_override
            if read:
                self.readable.append(layer)
            if write:
                self.writable.append(layer)
        self.manifests = ManifestStore(self.vx_dir / "manifests")
        self._warned: set[str] = set()
        self._uploads: set[asyncio.Task[None]] = set()
        self._probed: dict[str, str | None] = {}
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
        consequence = "" if "disabled" in cause else f" (could not {action}; treated as a miss)"
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

    async def restore(self, task: Task, on_output: OutputCallback) -> TaskResult | None:
        hook = self.config.hook
        key = task.hash
        if key is None or not task.definition.cache or self.force:
            hook.task_cache(
                task, "disabled" if not task.definition.cache else "miss", self._miss_details(task)
            )
            return None
        start = time.monotonic()
        for index, layer in enumerate(self.readable):
            try:
                artifact = await asyncio.to_thread(layer.get, key)
            except CorruptArtifactError as exc:
                _log.warning(f"{task.id}: {exc}; evicted, running the task", once=False)
                continue
            except Exception as exc:
                self._layer_failed(layer, "read", exc)
                continue
            if artifact is None:
                continue
            try:
                restored = await asyncio.to_thread(
                    unpack, artifact.data, task, self.root, self.vx_dir / "tmp"
                )
            except ArtifactError as exc:
                _log.warning(
                    f"{task.id}: cache entry {key[:16]} from '{layer.name}' is unusable ({exc}); "
                    "evicting it and running the task",
                    once=False,
                )
                delete = getattr(layer, "delete", None)
                if callable(delete):
                    with contextlib.suppress(Exception):
                        await asyncio.to_thread(delete, key)
                continue
            if index > 0:
                await self._backfill(layer, artifact)
            self.manifests.save(task.id, key, self.keys.manifests[task.id])
            details = {
                "status": "hit",
                "source": "local" if layer.name == "local" else "remote",
                "layer": layer.name,
                "key": key,
                "time_saved_ms": restored.meta.get("duration_ms", 0),
                "restored_outputs": restored.extracted,
            }
            hook.task_cache(task, "hit", details)
            if restored.log:
                on_output(restored.log)
            duration = (time.monotonic() - start) * 1000
            return TaskResult(task, TaskStatus.CACHED, 0, duration, restored.log, cache=details)
        hook.task_cache(task, "miss", self._miss_details(task))
        return None

    async def _backfill(self, source: CacheLayer, artifact: Artifact) -> None:
        for layer in self.writable:
            if layer is source or self.layers.index(layer) > self.layers.index(source):
                break
            try:
                await asyncio.to_thread(layer.put, artifact.key, artifact)
            except Exception as exc:
                self._layer_failed(layer, "store", exc)

    async def save(self, task: Task, result: TaskResult) -> None:
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
        try:
            data = await asyncio.to_thread(pack, task, self.root, result.output, meta)
        except OSError as exc:
            _log.warning(f"{task.id}: could not archive outputs ({exc}); not cached", once=False)
            return
        artifact = Artifact(key=key, data=data, duration_ms=result.duration_ms, task_id=task.id)
        first, *rest = self.writable
        if first.name == "local":
            try:
                await asyncio.to_thread(first.put, key, artifact)
            except Exception as exc:
                self._layer_failed(first, "store", exc)
        else:
            rest = self.writable
        self.manifests.save(task.id, key, self.keys.manifests[task.id])
        for layer in rest:
            upload = asyncio.create_task(self._upload(layer, artifact))
            self._uploads.add(upload)
            upload.add_done_callback(self._uploads.discard)

    async def _upload(self, layer: CacheLayer, artifact: Artifact) -> None:
        try:
            await asyncio.to_thread(layer.put, artifact.key, artifact)
        except Exception as exc:
            self._layer_failed(layer, "store", exc)

    async def close(self) -> None:
        """Wait for background uploads, bounded by the layers' ``upload_timeout``."""
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


def create_cache(config: Config, graph: TaskGraph) -> TaskCache:
    """Build the run's :class:`TaskCache` from the layers plugins provide."""
    layers = config.hook.cache_layers(config)
    names = [layer.name for layer in layers]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise UsageError(f"two cache layers are named {', '.join(sorted(duplicates))}")
    return TaskCache(config, graph, layers)
