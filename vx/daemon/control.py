"""Starting, asking and stopping the warm server; whether a run starts one.

``vx run`` decides at its end (:func:`autostart`, never delaying the run it just did):
``--daemon``/``--no-daemon``, else ``VX_DAEMON``, else ``[tool.vx] daemon``
(``true``/``false``/``"auto"``), else auto: on, unless on a CI service.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from vx.daemon.client import (
    ServerPaths,
    _forget,
    _private,
    _server_pid,
    ci_detected,
    explicit_mode,
    read_frame,
    server_paths,
    write_frame,
)
from vx.errors import ConfigError

__all__ = [
    "DEFAULT_IDLE_TIMEOUT",
    "ask",
    "autostart",
    "configured_mode",
    "start",
    "stop",
]

#: Seconds without a request after which the server exits (``[tool.vx] daemon_idle_timeout``).
DEFAULT_IDLE_TIMEOUT = 3 * 3600.0


def configured_mode(table: dict[str, Any], file: Path) -> bool | None:
    """``[tool.vx] daemon`` of the root pyproject (True, False, or None for ``"auto"``)."""
    value = table.get("daemon", "auto")
    if value == "auto":
        return None
    if isinstance(value, bool):
        return value
    raise ConfigError(
        f'expected true, false or "auto", got {value!r}', file=str(file), key="tool.vx.daemon"
    )


def wanted(args: list[str], table: dict[str, Any], file: Path) -> bool:
    """Whether this workspace should have a warm server for this invocation."""
    mode = explicit_mode(args)
    if mode is None:
        mode = configured_mode(table, file)
    return (not ci_detected()) if mode is None else mode


def running(paths: ServerPaths) -> bool:
    return os.path.exists(paths.socket) and _server_pid(paths) is not None


def autostart(args: list[str], root: Path, table: dict[str, Any]) -> None:
    """At the end of ``vx run`` in a process: start the workspace's server in the
    background when it is wanted and not running."""
    from vx.daemon import serving

    if serving.current is not None:
        return
    file = root / "pyproject.toml"
    if not wanted(args, table, file):
        return
    paths = server_paths(str(root))
    if running(paths):
        return
    spawn(root, paths)


def spawn(root: Path, paths: ServerPaths) -> subprocess.Popen[bytes] | None:
    """Start the server of ``root`` in the background (its own session, output to its log);
    the process, or None when the socket directory is not private."""
    try:
        os.makedirs(paths.directory, mode=0o700, exist_ok=True)
    except OSError:
        return None
    if not _private(paths.directory):
        from vx._log import warning

        warning(f"not starting the warm server: {paths.directory} is reachable by other users")
        return None
    log = os.open(paths.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        process = subprocess.Popen(
            [sys.executable, "-m", "vx.daemon.server", str(root)],
            cwd="/",
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(log)
    return process


def ask(paths: ServerPaths, op: str, timeout: float = 5.0) -> dict[str, Any] | None:
    """Send ``op`` (``status``, ``stop``); the answer, or None when no server answers."""
    import socket  # only for vx daemon commands: a run in its own process never asks

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(paths.socket)
        write_frame(sock, {"op": op})
        ack, _ = read_frame(sock)
        if ack.get("answer") != "ack":
            return None
        answer, _ = read_frame(sock)
        return answer
    except (OSError, ValueError):
        return None
    finally:
        sock.close()


def start(root: Path, timeout: float = 30.0) -> dict[str, Any] | None:
    """Start the server (if not running) and wait until it answers; its status."""
    paths = server_paths(str(root))
    status = ask(paths, "status") if os.path.exists(paths.socket) else None
    if status is not None:
        return status
    process = spawn(root, paths)
    if process is None:
        return None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() not in (None, 0):
            return None  # it refused to start (see its log)
        if os.path.exists(paths.socket):
            status = ask(paths, "status")
            if status is not None:
                return status
        time.sleep(0.02)
    return None


def stop(root: Path, timeout: float = 10.0) -> int | None:
    """Stop the server; its pid, or None when none was running. A server that does not
    answer is killed."""
    import signal

    paths = server_paths(str(root))
    pid = _server_pid(paths)
    answer = ask(paths, "stop", timeout=2.0) if os.path.exists(paths.socket) else None
    if answer is not None and isinstance(answer.get("pid"), int):
        pid = answer["pid"]
    if pid is None:
        _forget(paths)
        return None
    if answer is None:  # it did not answer: ask the process itself
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.02)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _forget(paths)
    return pid


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False
