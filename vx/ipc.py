"""The runner-aware channel: a private Unix socket per task, served in the runner's event
loop, through which the task's tools report what they really read (see
``docs/runner-aware.md`` and the client, ``vx_ipc.py``).

Protocol version 1: newline-delimited JSON. Each request is one object
``{"v": 1, "id": N, "op": ..., ...}`` on one line (at most :data:`MAX_LINE` bytes); each
gets one answer line ``{"v": 1, "id": N, "ok": true, ...}`` or ``{"ok": false, "error": ...}``.
Operations: ``add_inputs``/``ignore_inputs``/``ignore_outputs`` (``paths``: absolute paths;
the answer lists ``refused`` ones), ``get_env`` (``name``, ``tracked``; answers ``value``),
``disable_cache`` (``reason``).

A misbehaving client is refused or bounded, with one warning per task and kind: malformed or
oversized lines, paths outside the workspace (or under ``.vx/``), more than
:data:`MAX_PATHS` paths (the run is then not cached), more than :data:`MAX_CONNECTIONS`
connections at once. When the task ends its socket is removed and open connections are
dropped, so later calls fail on the client side (where they are no-ops).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vx import _log
from vx.filehash import digest_text

if TYPE_CHECKING:
    import asyncio

    from vx.graph import Task

__all__ = ["ENV_VAR", "PROTOCOL_VERSION", "ChannelServer", "Reported", "TaskChannel"]

ENV_VAR = "VX_IPC"
PROTOCOL_VERSION = 1
#: Longest accepted request line, in bytes.
MAX_LINE = 1 << 20
#: Paths (reported plus ignored) a task may report before its run stops being cacheable.
MAX_PATHS = 50_000
#: Tracked environment variables a task may report.
MAX_ENV = 1_000
#: Connections one task may hold open at once.
MAX_CONNECTIONS = 32
#: Longest kept ``disable_cache`` reason, in characters.
MAX_REASON = 500


@dataclass(slots=True)
class Reported:
    """What a task's tools reported during one run (workspace-relative POSIX paths)."""

    inputs: set[str] = field(default_factory=set)
    ignored_inputs: set[str] = field(default_factory=set)
    ignored_outputs: set[str] = field(default_factory=set)
    env: dict[str, str | None] = field(default_factory=dict)
    """Tracked variable -> digest of the value vx answered (None: unset)."""
    disabled: str | None = None
    """Why the run must not be cached (``disable_cache``, or a report that overflowed)."""

    def effective_inputs(self) -> list[str]:
        """Reported inputs minus ignored ones (an ignored directory covers its tree)."""
        ignored = self.ignored_inputs
        return sorted(
            path
            for path in self.inputs
            if path not in ignored and not any(path.startswith(i + "/") for i in ignored)
        )


class TaskChannel:
    """One task's endpoint: its socket, its open connections and what they reported."""

    def __init__(self, server: ChannelServer, task: Task, directory: Path, name: str) -> None:
        self.server = server
        self.task = task
        self.directory = directory
        self.address = str(directory / name)
        self.reported = Reported()
        self._listener: asyncio.base_events.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._warned: set[str] = set()
        self._closed = False

    def warn(self, kind: str, message: str) -> None:
        if kind not in self._warned:
            self._warned.add(kind)
            _log.warning(f"{self.task.id}: runner-aware channel: {message}", once=False)

    async def start(self) -> None:
        import asyncio

        self._listener = await asyncio.start_unix_server(
            self._accept, path=self.address, limit=MAX_LINE
        )

    def close(self) -> Reported:
        """Stop serving (the task ended): drop connections, remove the socket."""
        if not self._closed:
            self._closed = True
            if self._listener is not None:
                self._listener.close()
            for handler, writer in list(self._connections.items()):
                writer.transport.abort()
                handler.cancel()
            with contextlib.suppress(OSError):
                os.unlink(self.address)
        return self.reported

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio

        current = asyncio.current_task()
        assert current is not None
        if self._closed:
            writer.transport.abort()
            return
        if len(self._connections) >= MAX_CONNECTIONS:
            self.warn(
                "connections",
                f"more than {MAX_CONNECTIONS} connections at once; extra ones refused",
            )
            writer.transport.abort()
            return
        self._connections[current] = writer
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._connections.pop(current, None)
            writer.transport.abort()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        import asyncio

        while True:
            try:
                line = await reader.readuntil(b"\n")
            except asyncio.IncompleteReadError as exc:
                if exc.partial.strip():
                    self.warn("malformed", "a request did not end with a newline; dropped")
                return
            except asyncio.LimitOverrunError:
                self.warn("huge", f"a request longer than {MAX_LINE} bytes; connection closed")
                writer.write(_answer(None, error=f"request longer than {MAX_LINE} bytes"))
                return
            writer.write(self.handle(line))
            await writer.drain()

    def handle(self, line: bytes) -> bytes:
        """The answer line to one request line."""
        try:
            request = json.loads(line)
        except ValueError:
            self.warn("malformed", "a request that is not JSON; refused")
            return _answer(None, error="not JSON")
        if not isinstance(request, dict):
            self.warn("malformed", "a request that is not a JSON object; refused")
            return _answer(None, error="not a JSON object")
        ident = request.get("id")
        ident = ident if isinstance(ident, int) and not isinstance(ident, bool) else None
        if request.get("v") != PROTOCOL_VERSION:
            self.warn("version", f"protocol version {request.get('v')!r} is not supported")
            return _answer(
                ident, error=f"unsupported protocol version (vx speaks {PROTOCOL_VERSION})"
            )
        op = request.get("op")
        try:
            if op in ("add_inputs", "ignore_inputs", "ignore_outputs"):
                return _answer(ident, refused=self._paths(op, request.get("paths")))
            if op == "get_env":
                return _answer(
                    ident, value=self._get_env(request.get("name"), request.get("tracked", True))
                )
            if op == "disable_cache":
                reason = request.get("reason")
                if not isinstance(reason, str) or not reason.strip():
                    raise _Refused("disable_cache needs a non-empty string reason")
                if self.reported.disabled is None:
                    self.reported.disabled = reason.strip()[:MAX_REASON]
                return _answer(ident)
        except _Refused as exc:
            self.warn(f"refused-{op}", f"{op} refused: {exc}")
            return _answer(ident, error=str(exc))
        self.warn("unknown-op", f"unknown operation {op!r}; refused")
        return _answer(ident, error=f"unknown operation {op!r}")

    def _paths(self, op: str, paths: Any) -> list[str]:
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise _Refused("paths must be a list of strings")
        reported = self.reported
        target = {
            "add_inputs": reported.inputs,
            "ignore_inputs": reported.ignored_inputs,
            "ignore_outputs": reported.ignored_outputs,
        }[op]
        total = len(reported.inputs) + len(reported.ignored_inputs) + len(reported.ignored_outputs)
        refused: list[str] = []
        for path in paths:
            relative = self.server.relative(path)
            if relative is None:
                refused.append(path)
                continue
            if relative in target:
                continue
            if total >= MAX_PATHS:
                reported.disabled = (
                    reported.disabled or f"a tool reported more than {MAX_PATHS} paths"
                )
                raise _Refused(f"more than {MAX_PATHS} paths reported; this run is not cached")
            target.add(relative)
            total += 1
        if refused:
            self.warn(
                f"outside-{op}",
                f"{op}: {len(refused)} path(s) outside the workspace or under .vx/ refused, "
                f"e.g. {refused[0]}",
            )
        return refused

    def _get_env(self, name: Any, tracked: Any) -> str | None:
        if not isinstance(name, str) or not name or "=" in name or "\0" in name:
            raise _Refused("name must be a non-empty variable name")
        value = self.server.environ.get(name)
        if tracked is not False:
            if name not in self.reported.env and len(self.reported.env) >= MAX_ENV:
                raise _Refused(f"more than {MAX_ENV} tracked variables")
            self.reported.env[name] = None if value is None else digest_text(value)
        return value


class _Refused(Exception):
    """A request vx does not accept (the message is sent back)."""


def _answer(ident: int | None, error: str | None = None, **fields: Any) -> bytes:
    if error is not None:
        document: dict[str, Any] = {"v": PROTOCOL_VERSION, "id": ident, "ok": False, "error": error}
    else:
        document = {"v": PROTOCOL_VERSION, "id": ident, "ok": True, **fields}
    return json.dumps(document).encode() + b"\n"


class ChannelServer:
    """The channels of one run: a private (0700) directory holding one 0700 directory per
    concurrency slot, in which the task holding the slot gets a socket of its own (a fresh
    name per task, removed when the task ends). Directories are reused across the tasks of a
    slot: removing a directory costs milliseconds on some file systems (2.6 ms measured on
    ext4), a socket file microseconds."""

    def __init__(self, root: Path, environ: Mapping[str, str] | None = None) -> None:
        self.root = str(root.resolve())
        self.environ = os.environ if environ is None else environ
        self.base: Path | None = None
        self._count = 0
        self._slots: set[int] = set()

    def relative(self, path: str) -> str | None:
        """``path`` relative to the workspace root (POSIX), or None when it is not an
        absolute path inside it (symlinks resolved), or it is under ``.vx/``."""
        if not path.startswith("/") or "\0" in path:
            return None
        try:
            resolved = os.path.realpath(path)
        except ValueError:  # not encodable as a file name (a lone surrogate from JSON)
            return None
        root = self.root
        if resolved == root or not resolved.startswith(root + os.sep):
            return None
        relative = resolved[len(root) + 1 :]
        if relative == ".vx" or relative.startswith(".vx/"):
            return None
        return relative

    async def open(self, task: Task, slot: int) -> TaskChannel | None:
        """Start serving ``task``'s channel in the directory of concurrency slot ``slot``;
        None (one warning) when that is impossible."""
        try:
            if self.base is None:
                self.base = _private_base()
            directory = self.base / str(slot)
            if slot not in self._slots:
                directory.mkdir(mode=0o700)
                self._slots.add(slot)
            self._count += 1
            channel = TaskChannel(self, task, directory, f"{self._count}.sock")
            await channel.start()
        except OSError as exc:
            _log.warning(f"runner-aware channel unavailable ({exc}); tasks run without it")
            return None
        return channel

    def close(self) -> None:
        """End of run: remove the run's directory."""
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
            self._slots.clear()


def _private_base() -> Path:
    """A fresh 0700 directory whose socket paths stay under the 108-byte ``sun_path`` limit."""
    parent = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
    if len(parent) > 60 or not os.path.isdir(parent):
        parent = "/tmp"
    with contextlib.suppress(OSError):
        return Path(tempfile.mkdtemp(prefix="vx-ipc-", dir=parent))
    return Path(tempfile.mkdtemp(prefix="vx-ipc-", dir="/tmp"))
