"""The kernel's side of a request served by the warm server.

While the server answers a request, :data:`current` is its :class:`Session`. ``vx run``
calls :func:`admit` once the graph and the cache are ready: the request is served only when
nothing would execute (``--dry``, or every task a hit whose outputs are already in place,
which the runner completes without its scheduler); otherwise :class:`NeedsRun` goes back to
the client, which runs the command itself. Until the session commits, everything written to
stdout and stderr is held (and dropped on :class:`NeedsRun`), so a fallback never shows
anything twice.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = ["HeldWriter", "NeedsRun", "Session", "admit", "current"]


class NeedsRun(BaseException):
    """The request needs something executed: the client runs it itself. A BaseException so
    that the CLI's error handling passes it through unchanged."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class HeldWriter(io.RawIOBase):
    """A raw writer on a descriptor that holds what is written until :meth:`release`
    (shared ``log`` keeps stdout and stderr in the order they were written)."""

    def __init__(self, fd: int, log: list[tuple[int, bytes]]) -> None:
        super().__init__()
        self.fd = fd
        self._log: list[tuple[int, bytes]] | None = log

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self.fd

    def isatty(self) -> bool:
        return os.isatty(self.fd)

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = bytes(data)
        if self._log is not None:
            self._log.append((self.fd, chunk))
        else:
            _write_all(self.fd, chunk)
        return len(chunk)

    def release(self) -> None:
        self._log = None

    def retire(self) -> None:
        """After the request: anything still written (a late flush) goes nowhere."""
        self._log = []


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Session:
    """One served request. ``on_commit`` tells the client that the server answers."""

    def __init__(self, on_commit: Callable[[], None]) -> None:
        self._on_commit = on_commit
        self.committed = False
        self.log: list[tuple[int, bytes]] = []
        self.writers: list[HeldWriter] = []

    def writer(self, fd: int) -> HeldWriter:
        writer = HeldWriter(fd, self.log)
        self.writers.append(writer)
        return writer

    def commit(self) -> None:
        """From here on the server answers: send ``serve``, then write what was held."""
        if self.committed:
            return
        self.committed = True
        self._on_commit()
        for fd, data in self.log:
            _write_all(fd, data)
        self.log.clear()
        for writer in self.writers:
            writer.release()


#: The request being served (None outside the server).
current: Session | None = None


class _Lookup(Protocol):
    """What :func:`admit` needs of the run's cache (a :class:`vx.cache.TaskCache`; typed
    structurally so that this module imports nothing of the kernel)."""

    def can_restore_now(self, task: Any) -> bool: ...


class _Options(Protocol):
    @property
    def dry(self) -> str | None: ...


def admit(graph: Iterable[Any], cache: _Lookup, options: _Options) -> None:
    """In the server: commit when ``vx run`` can be answered without executing anything,
    else raise :class:`NeedsRun`. Outside the server: nothing."""
    session = current
    if session is None:
        return
    if not options.dry:
        for task in graph:
            if task.command is not None and not cache.can_restore_now(task):
                raise NeedsRun(f"{task.id} is not a hit with its outputs in place")
    session.commit()
