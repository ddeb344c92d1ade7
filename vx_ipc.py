"""Tell vx what a task's tool really read: the client of vx's runner-aware channel.

A single file with no dependency beyond the standard library: import it from any Python
environment a task uses, or copy it into your tool (it is MIT licensed, like vx). Every call
is a no-op when the process is not running under vx (``VX_IPC`` unset), so a tool can call
it unconditionally::

    import vx_ipc

    vx_ipc.add_inputs(["src/generated/schema.json"])   # this run depended on these files
    vx_ipc.ignore_inputs([".mypy_cache"])              # machine state, not an input
    vx_ipc.ignore_outputs([".pytest_cache"])           # written, but not a result
    level = vx_ipc.get_env("LOG_LEVEL")                # read (and tracked) through vx
    vx_ipc.disable_cache("talked to the staging database")

Calls return True when vx accepted them and False otherwise (not under vx, refused, or the
channel is gone); a refusal is printed once on stderr, never raised. The protocol is in
``docs/runner-aware.md``: newline-delimited JSON over the Unix socket named by ``VX_IPC``.
"""

from __future__ import annotations

import os
import sys
from _thread import allocate_lock

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs ~10 ms to import; the client must cost ~1 ms
    from typing import Any

__all__ = [
    "CHANNEL_FD",
    "ENV_VAR",
    "PROTOCOL_VERSION",
    "active",
    "add_inputs",
    "disable_cache",
    "get_env",
    "ignore_inputs",
    "ignore_outputs",
]

#: The environment variable holding the channel's address (a Unix socket path).
ENV_VAR = "VX_IPC"
#: The protocol version this client speaks (``"v"`` of every request).
PROTOCOL_VERSION = 1
#: Seconds to wait for vx's answer before giving up on the channel.
TIMEOUT = 10.0
#: The descriptor the client connects from when it is free. A sandboxed task without network
#: may ``connect`` from this descriptor only (vx_sandbox's Landlock backend), so a tool that
#: copies this client must keep it.
CHANNEL_FD = 1000
#: Paths per request: keeps each line well under the server's 1 MiB limit.
_BATCH = 500

_lock = allocate_lock()
_state: dict[str, Any] = {"sock": None, "pid": None, "file": None, "dead": False, "id": 0}
_warned: set[str] = set()


def active() -> bool:
    """Whether this process runs under vx with a channel (``VX_IPC`` is set)."""
    return bool(os.environ.get(ENV_VAR)) and not _state["dead"]


def add_inputs(paths: Any) -> bool:
    """Files or directories this run depended on (a directory stands for its whole tree).
    Relative paths are taken from the current directory; they must be inside the workspace."""
    return _send_paths("add_inputs", paths)


def ignore_inputs(paths: Any) -> bool:
    """Paths that are not inputs even if reported by another call (tool caches)."""
    return _send_paths("ignore_inputs", paths)


def ignore_outputs(paths: Any) -> bool:
    """Paths the tool wrote that are not results: left out of the cached outputs."""
    return _send_paths("ignore_outputs", paths)


def get_env(name: str, tracked: bool = True) -> str | None:
    """The value of environment variable ``name`` as vx sees it (also in strict env mode,
    where the task's own environment lacks it). ``tracked``: the cached result stays valid
    only while the variable keeps this value. Without vx: ``os.environ.get(name)``."""
    reply = _request({"op": "get_env", "name": name, "tracked": bool(tracked)})
    if reply is None:
        return os.environ.get(name)
    value = reply.get("value")
    return value if isinstance(value, str) else None


def disable_cache(reason: str) -> bool:
    """Do not cache this run; ``reason`` shows in the run summary and ``vx why``."""
    return _request({"op": "disable_cache", "reason": str(reason)}) is not None


def _send_paths(op: str, paths: Any) -> bool:
    if not active():
        return False
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    absolute = [os.path.abspath(os.fspath(path)) for path in paths]
    ok = True
    for start in range(0, len(absolute), _BATCH):
        reply = _request({"op": op, "paths": absolute[start : start + _BATCH]})
        refused = reply.get("refused") if reply is not None else None
        if refused:
            _warn(f"vx refused {len(refused)} path(s) of {op}, e.g. {refused[0]}")
        ok = ok and reply is not None and not refused
    return ok


def _warn(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        sys.stderr.write(f"vx_ipc: {message}\n")


def _channel_socket(socket: Any) -> Any:
    """A Unix stream socket on descriptor :data:`CHANNEL_FD` when that is free."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        os.fstat(CHANNEL_FD)
        return sock  # in use by something else: left alone
    except OSError:
        pass
    try:
        os.dup2(sock.fileno(), CHANNEL_FD, inheritable=False)
    except OSError:  # beyond the descriptor limit
        return sock
    sock.close()
    return socket.socket(fileno=CHANNEL_FD)


def _request(message: dict[str, Any]) -> dict[str, Any] | None:
    """Send one request and wait for its answer; None when there is no usable answer."""
    address = os.environ.get(ENV_VAR)
    if not address or _state["dead"]:
        return None
    import json
    import socket

    with _lock:
        try:
            if _state["sock"] is None or _state["pid"] != os.getpid():
                if _state["sock"] is not None:  # a fork: the parent's connection, not ours
                    _state["sock"].close()
                sock = _channel_socket(socket)
                sock.settimeout(TIMEOUT)
                sock.connect(address)
                _state.update(sock=sock, pid=os.getpid(), file=sock.makefile("rb"))
            _state["id"] += 1
            line = json.dumps({"v": PROTOCOL_VERSION, "id": _state["id"], **message})
            _state["sock"].sendall(line.encode() + b"\n")
            raw = _state["file"].readline(1 << 20)
        except (OSError, ValueError) as exc:
            _state.update(sock=None, file=None, dead=True)
            _warn(f"the vx channel is unavailable ({exc}); further calls are no-ops")
            return None
    try:
        reply = json.loads(raw)
    except ValueError:
        reply = None
    if not isinstance(reply, dict):
        _state["dead"] = True
        _warn("the vx channel closed or answered garbage; further calls are no-ops")
        return None
    if not reply.get("ok"):
        _warn(f"vx refused {message['op']}: {reply.get('error', 'no reason given')}")
        return None
    return reply
