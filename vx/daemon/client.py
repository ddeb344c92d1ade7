"""The thin client: ask this workspace's warm server to answer a ``vx`` command.

Imported by the ``vx`` entry point before anything heavy: only modules that cost nothing to
import (``os``, ``sys``, ``marshal``, ``_socket``), not even ``typing`` or ``json``.
:func:`serve` returns the exit code when the server answered, or None when the command must
run in this process (no server, a miss, a server that is gone, hung or incompatible: the
last three with one warning).

The protocol (one request per connection): frames of a 4-byte big-endian length and a
``marshal``-encoded dict of plain values (the socket is private to the user: only the
user's own processes write to it). The client sends the request with its stdin, stdout and
stderr attached (``SCM_RIGHTS``); the server answers ``ack`` at once, then ``serve`` (it
writes the output to the attached descriptors, then ``done`` with the exit code) or
``fallback`` / ``restart`` (nothing was written: run it here).
"""

from __future__ import annotations

import _socket
import marshal
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "PROTOCOL",
    "ServerPaths",
    "ci_detected",
    "explicit_mode",
    "read_frame",
    "serve",
    "server_paths",
    "socket_dir",
    "write_frame",
]

#: Bumped whenever a frame changes meaning; part of the handshake.
PROTOCOL = 1

#: Seconds to wait for the server's ``ack`` (a stopped or hung server never sends it).
ACK_TIMEOUT = 2.0
#: Seconds to wait for ``serve``/``fallback`` (the server plans the run in this time).
DECIDE_TIMEOUT = 60.0
#: Seconds to wait for ``done`` once the server serves (it replays cached logs).
DONE_TIMEOUT = 300.0

#: Environment variables that mean "running on a CI service" (the ones Turborepo checks,
#: and a few more).
CI_VARIABLES = (
    "CI",
    "BUILD_ID",
    "BUILD_NUMBER",
    "BUILDKITE",
    "CIRCLECI",
    "CI_NAME",
    "CODEBUILD_BUILD_ID",
    "CONTINUOUS_INTEGRATION",
    "DRONE",
    "GITHUB_ACTIONS",
    "GITLAB_CI",
    "HEROKU_TEST_RUN_ID",
    "JENKINS_URL",
    "RUN_ID",
    "SEMAPHORE",
    "TEAMCITY_VERSION",
    "TF_BUILD",
    "TRAVIS",
    "VERCEL",
)

_ON = ("1", "true", "yes", "on")
_OFF = ("0", "false", "no", "off")


def ci_detected(environ: Any = None) -> bool:
    env = os.environ if environ is None else environ
    return any(env.get(name, "").lower() not in ("", "0", "false") for name in CI_VARIABLES)


def explicit_mode(args: list[str], environ: Any = None) -> bool | None:
    """``--daemon``/``--no-daemon`` (the last one wins), else ``VX_DAEMON``; None: not said
    (``auto`` or unset)."""
    if "--" in args:  # what follows is not vx's
        args = args[: args.index("--")]
    for arg in reversed(args):
        if arg == "--daemon":
            return True
        if arg == "--no-daemon":
            return False
    value = (os.environ if environ is None else environ).get("VX_DAEMON", "").strip().lower()
    if value in _ON:
        return True
    if value in _OFF:
        return False
    return None


def socket_dir() -> str:
    """The per-user directory of sockets, pid files and logs: ``VX_DAEMON_DIR``, else
    ``$XDG_RUNTIME_DIR/vx``, else ``<tmp>/vx-<uid>``. Created ``0700`` by the server."""
    given = os.environ.get("VX_DAEMON_DIR")
    if given:
        return given
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.path.isdir(runtime):
        return os.path.join(runtime, "vx")
    tmp = os.environ.get("TMPDIR") or "/tmp"
    return os.path.join(tmp, f"vx-{os.getuid()}")


def _private(directory: str) -> bool:
    """Whether ``directory`` is ours and reachable by nobody else (never trust another
    user's socket)."""
    try:
        st = os.lstat(directory)
    except OSError:
        return False
    import stat

    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077


class ServerPaths:
    """The files of the server of workspace ``root``."""

    def __init__(self, directory: str, root: str) -> None:
        name = _fnv1a(os.fsencode(root))
        self.directory = directory
        self.root = root
        self.socket = os.path.join(directory, name + ".sock")
        self.pid = os.path.join(directory, name + ".pid")
        self.log = os.path.join(directory, name + ".log")
        self.busy = os.path.join(directory, name + ".busy")
        """Exists while the server answers a request (it answers one at a time)."""


def _fnv1a(data: bytes) -> str:
    """A 64-bit FNV-1a digest in hex (hashlib costs the client milliseconds to import; the
    server checks the root it is asked about, so a collision only costs a fallback)."""
    value = 0xCBF29CE484222325
    for byte in data:
        value = ((value ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{value:016x}"


def server_paths(root: str) -> ServerPaths:
    return ServerPaths(socket_dir(), root)


def write_frame(sock: Any, message: dict[str, Any], fds: list[int] | None = None) -> None:
    """Send one frame on ``sock`` (a ``socket.socket`` or ``_socket.socket``), with ``fds``
    attached to its first bytes."""
    data = marshal.dumps(message)
    frame = len(data).to_bytes(4, "big") + data
    if fds:
        ancillary = b"".join(fd.to_bytes(4, sys.byteorder, signed=True) for fd in fds)
        sent = sock.sendmsg([frame], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, ancillary)])
        frame = frame[sent:]
    if frame:
        sock.sendall(frame)


def read_frame(sock: Any, *, maxfds: int = 0) -> tuple[dict[str, Any], list[int]]:
    """One frame (and the descriptors attached to its first bytes). Raises ConnectionError
    at end of stream, ValueError for a malformed frame."""
    fds: list[int] = []
    if maxfds:
        head, ancillary, _, _ = sock.recvmsg(4, _socket.CMSG_SPACE(maxfds * 4))
        for level, kind, data in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                usable = len(data) - len(data) % 4
                fds += [
                    int.from_bytes(data[i : i + 4], sys.byteorder, signed=True)
                    for i in range(0, usable, 4)
                ]
    else:
        head = sock.recv(4)
    if not head:
        raise ConnectionError("the connection was closed")
    while len(head) < 4:
        more = sock.recv(4 - len(head))
        if not more:
            raise ConnectionError("the connection was closed")
        head += more
    size = int.from_bytes(head, "big")
    if size > 64 * 1024 * 1024:
        raise ValueError("frame too large")
    body = bytearray()
    while len(body) < size:
        chunk = sock.recv(min(size - len(body), 1 << 20))
        if not chunk:
            raise ConnectionError("the connection was closed")
        body += chunk
    try:
        message = marshal.loads(body)
    except (EOFError, TypeError) as exc:
        raise ValueError(f"a malformed frame: {exc}") from None
    if not isinstance(message, dict):
        raise ValueError("a frame is not a JSON object")
    return message, fds


def _servable(args: list[str]) -> bool:
    """Only ``vx run`` (with or without ``--dry``) is answered by the server, and not with
    options that print while plugins load (``--trace-config``, ``-v``, ``--debug``)."""
    skip = False
    command = None
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--":
            break
        if arg in ("--trace-config", "--debug", "-h", "--help") or (
            arg.startswith("-v") and set(arg[1:]) == {"v"}
        ):
            return False
        if arg == "--verbose":
            return False
        if arg in ("-C", "-p"):
            skip = True
            continue
        if arg.startswith("-"):
            continue
        if command is None:
            command = arg
    return command == "run"


def _candidates(directory: str) -> list[str]:
    """Ancestors of ``directory`` holding a ``pyproject.toml``: one of them is the workspace
    root (the server checks which with the real rule)."""
    found = []
    current = directory
    while True:
        if os.path.isfile(os.path.join(current, "pyproject.toml")):
            found.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            return found
        current = parent


def _directory(args: list[str]) -> str:
    for index, arg in enumerate(args):
        if arg == "--":
            break
        if arg == "-C" and index + 1 < len(args):
            return os.path.abspath(args[index + 1])
        if arg.startswith("-C") and len(arg) > 2:
            return os.path.abspath(arg[2:].removeprefix("="))
    return os.getcwd()


def _warn(message: str) -> None:
    sys.stderr.write(f"vx: warning: {message}\n")
    sys.stderr.flush()


def _stream_facts(stream: Any) -> dict[str, Any]:
    return {
        "encoding": getattr(stream, "encoding", None) or "utf-8",
        "errors": getattr(stream, "errors", None) or "strict",
    }


def client_facts() -> dict[str, Any]:
    """What must be equal between the client and the server (else the server restarts)."""
    from vx._version import __version__

    return {
        "protocol": PROTOCOL,
        "vx": __version__,
        "executable": os.path.realpath(sys.executable),
        "prefix": sys.prefix,
        "python": sys.version,
        "path": list(sys.path),
        "uid": os.getuid(),
    }


def serve(args: list[str], started: float) -> int | None:
    """Let this workspace's warm server answer ``vx args``; the exit code, or None to run
    the command in this process."""
    if explicit_mode(args) is False or not _servable(args):
        return None
    directory = socket_dir()
    if not _private(directory):
        return None
    try:
        cwd = os.getcwd()
    except OSError:
        return None
    for root in _candidates(_directory(args)):
        paths = ServerPaths(directory, root)
        if os.path.exists(paths.socket):
            return _ask(paths, args, cwd, started)
    return None


def _ask(paths: ServerPaths, args: list[str], cwd: str, started: float) -> int | None:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.settimeout(ACK_TIMEOUT)
        try:
            sock.connect(paths.socket)
        except (ConnectionRefusedError, FileNotFoundError):
            _forget(paths)
            _warn(
                "the warm server of this workspace is gone (it crashed or was killed); "
                "running without it"
            )
            return None
        except OSError as exc:
            _warn(f"cannot reach the warm server ({exc}); running without it")
            return None
        umask = os.umask(0o022)
        os.umask(umask)
        request = {
            "op": "run",
            "umask": umask,
            "args": args,
            "cwd": cwd,
            "env": dict(os.environ),
            "started": started,
            "client": client_facts(),
            "streams": [_stream_facts(s) for s in (sys.stdin, sys.stdout, sys.stderr)],
        }
        try:
            write_frame(sock, request, [0, 1, 2])
            answer, _ = read_frame(sock)
        except TimeoutError:
            if _busy(paths):  # answering another command: healthy, just not free
                _warn("the warm server is busy with another command; running without it")
                return None
            _stop_hung(paths)
            _warn(
                f"the warm server did not answer within {ACK_TIMEOUT:g} s; stopped it, "
                "running without it"
            )
            return None
        except (OSError, ValueError) as exc:
            _warn(f"the warm server failed ({exc}); running without it")
            return None
        if answer.get("answer") != "ack":
            _warn("the warm server answered out of protocol; running without it")
            return None
        sock.settimeout(DECIDE_TIMEOUT)
        try:
            answer, _ = read_frame(sock)
        except (OSError, ValueError) as exc:
            return _lost(paths, exc)
        decision = answer.get("answer")
        if decision == "fallback":
            return None
        if decision == "restart":
            _warn(
                f"the warm server was restarted ({answer.get('reason', 'incompatible')}); "
                "running without it this time"
            )
            return None
        if decision != "serve":
            _warn("the warm server answered out of protocol; running without it")
            return None
        sock.settimeout(DONE_TIMEOUT)
        try:
            answer, _ = read_frame(sock)
        except (OSError, ValueError) as exc:
            # Output may have been written: the run in this process repeats it, correctly.
            return _lost(paths, exc)
        code = answer.get("code")
        if answer.get("answer") != "done" or not isinstance(code, int):
            return _lost(paths, ValueError("no exit code"))
        return code
    except KeyboardInterrupt:
        return 130
    finally:
        sock.close()


def _lost(paths: ServerPaths, exc: BaseException) -> int | None:
    if isinstance(exc, TimeoutError):
        _stop_hung(paths)
    _warn(f"the warm server stopped answering ({exc or type(exc).__name__}); running without it")
    return None


def _server_pid(paths: ServerPaths) -> int | None:
    """The pid in the pid file, if that process is a vx warm server."""
    try:
        with open(paths.pid) as file:
            pid = int(file.read().split()[0])
        with open(f"/proc/{pid}/cmdline", "rb") as file:
            cmdline = file.read()
    except (OSError, ValueError, IndexError):
        return None
    return pid if b"vx.daemon.server" in cmdline else None


def _busy(paths: ServerPaths) -> bool:
    """Whether the server is within a request it may still legitimately be answering."""
    import time  # built in: costs nothing, but only needed here

    try:
        age = time.time() - os.stat(paths.busy).st_mtime
    except OSError:
        return False
    return age < DECIDE_TIMEOUT + DONE_TIMEOUT


def _stop_hung(paths: ServerPaths) -> None:
    """A server that does not answer is killed (it is ours: same user, our pid file) and
    its files removed, so the next run starts a fresh one."""
    import signal

    pid = _server_pid(paths)
    if pid is not None:
        try:  # noqa: SIM105 - contextlib is not imported on the client's path
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    _forget(paths)


def _forget(paths: ServerPaths) -> None:
    for path in (paths.socket, paths.pid, paths.busy):
        try:  # noqa: SIM105 - contextlib is not imported on the client's path
            os.unlink(path)
        except OSError:
            pass
