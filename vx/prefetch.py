"""Fetching remote artifacts ahead of the tasks that need them.

A fresh clone with a shared remote cache restores almost every task from the remote: each
restore is a round trip to a server, and the scheduler only runs ``concurrency`` tasks at a
time. Keys are known before anything runs, so the run's remote reads can start at once, in
dependency order (the tasks the scheduler reaches first are fetched first), on a few threads
sharing the layer's connection pool. A task's restore then takes its prefetched answer, or
reads it itself when the prefetch has not reached it.

Only the bytes are fetched here: validating and unpacking stay in the task's restore, so
every safety property of a restore is unchanged (a prefetched artifact is exactly what
``layer.get`` returned). Memory is bounded: at most :data:`WINDOW_BYTES` of fetched but not yet
consumed archives (and :data:`WINDOW_COUNT` entries) are held; fetching pauses until restores
consume them. One thread reads first; the others start once a read succeeded, so a server
that is down or rejects the token costs what it cost without prefetching (its layer disables
itself after one read's retries).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vx.caching import Artifact, CacheLayer

__all__ = ["Prefetcher"]

#: Concurrent reads per layer (Turborepo uses 10 for its whole run).
THREADS = 8
#: Fetched but not yet consumed: at most this many bytes ...
WINDOW_BYTES = 256 << 20
#: ... and this many artifacts.
WINDOW_COUNT = 64


class Prefetcher:
    """Reads ``keys`` (in order) from ``layer`` on background threads; :meth:`take` hands a
    key's result (or its exception) to the restore that needs it."""

    def __init__(self, layer: CacheLayer, keys: Sequence[str]) -> None:
        self.layer = layer
        self._keys = list(dict.fromkeys(keys))
        self._next = 0
        self._results: dict[str, Future[Artifact | None]] = {}
        self._taken: set[str] = set()
        self._arrived: set[str] = set()
        """Keys fetched and found, not yet taken: read without the lock (the scheduler asks
        for every ready task on each of its turns)."""
        self._held_bytes = 0
        self._held_count = 0
        self._stopped = False
        self._condition = threading.Condition()
        self._spawned = 0
        self._spawn(1)

    def _spawn(self, count: int) -> None:
        for _ in range(min(count, len(self._keys) - self._spawned)):
            self._spawned += 1
            name = f"vx-prefetch-{self.layer.name}"
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def _claim(self) -> tuple[str, Future[Artifact | None]] | None:
        """The next key nobody fetched or took yet, once the window has room."""
        with self._condition:
            while True:
                if self._stopped or self._next >= len(self._keys):
                    return None
                if self._held_bytes < WINDOW_BYTES and self._held_count < WINDOW_COUNT:
                    break
                self._condition.wait()
            while self._next < len(self._keys):
                key = self._keys[self._next]
                self._next += 1
                if key not in self._taken:
                    future: Future[Artifact | None] = Future()
                    self._results[key] = future
                    self._held_count += 1
                    return key, future
            return None

    def _work(self) -> None:
        while (claimed := self._claim()) is not None:
            key, future = claimed
            try:
                artifact = self.layer.get(key)
            except BaseException as exc:  # raised in the restore that takes it, like get's own
                future.set_exception(exc)
                if self._spawned == 1:
                    # The first read failed: the layer is likely down (it disables itself
                    # after its retries); restores read it themselves, one at a time.
                    self.stop()
                continue
            if self._spawned == 1:
                # Slow start: the first read succeeded, now read in parallel (a dead server
                # costs one read's retries, not one per thread).
                self._spawn(THREADS - 1)
            if artifact is not None:
                with self._condition:
                    self._held_bytes += len(artifact.data)
            future.set_result(artifact)
            if artifact is not None:
                with self._condition:
                    if key not in self._taken:
                        self._arrived.add(key)

    def arrived(self, key: str) -> bool:
        """Whether ``key`` was fetched and found (not yet taken)."""
        return key in self._arrived

    def take(self, key: str) -> Future[Artifact | None] | None:
        """The prefetch of ``key`` (running or done), or None when it was not started (the
        caller reads the layer itself; the prefetch will skip the key)."""
        with self._condition:
            self._taken.add(key)
            self._arrived.discard(key)
            return self._results.get(key)

    def release(self, key: str, artifact: Artifact | None) -> None:
        """``key``'s result was consumed: free its room in the window."""
        with self._condition:
            if self._results.pop(key, None) is None:
                return
            self._held_count -= 1
            if artifact is not None:
                self._held_bytes -= len(artifact.data)
            self._condition.notify_all()

    def stop(self) -> None:
        """Start no more reads (those in flight finish on their daemon threads; a restore
        waiting for one still gets it)."""
        with self._condition:
            self._stopped = True
            self._condition.notify_all()
