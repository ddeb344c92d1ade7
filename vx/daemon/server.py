"""The warm server process (``python -m vx.daemon.server ROOT``, started by
:mod:`vx.daemon.control`).

It keeps vx's modules and the plugins' modules imported, and answers one request at a time:
each ``vx run`` request goes through the same code as a run in a new process (``vx.cli``
with a fresh plugin manager, configuration, workspace, graph and keys), with the client's
arguments, environment, working directory and terminal (its descriptors), so its answer is
the answer of a run without the server. Besides code it keeps file state: input digests and
the git listing, kept current by a file watcher and synced before each request
(:mod:`vx.daemon.filestate`); everything else a run reads from disk it reads again.

Before each request the server checks that it still runs what the client would run: the
same protocol, vx version, Python and import path, and every imported module file and every
import-path directory unchanged since it loaded them (a ``pip install``, an upgrade or an
edit of an editable install). Otherwise it answers ``restart`` and exits.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from vx import filehash, gitfiles
from vx.daemon import serving
from vx.daemon.client import (
    ServerPaths,
    client_facts,
    read_frame,
    server_paths,
    write_frame,
)
from vx.daemon.filestate import FileState

__all__ = ["main"]

#: The log is cut when the server starts and it is bigger than this.
_LOG_LIMIT = 1 << 20


class _Restart(Exception):
    pass


class Server:
    def __init__(self, root: Path, paths: ServerPaths, idle_timeout: float) -> None:
        self.root = root
        self.paths = paths
        self.idle_timeout = idle_timeout
        self.started = time.time()
        self.requests = 0
        self.served = 0
        self.last_request = time.monotonic()
        self.log_fd = os.open(paths.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.facts = client_facts()
        self.base_path = list(sys.path)
        self.installed: dict[str, tuple[int, int]] = {}
        self.listener: socket.socket | None = None
        self.unwanted = False
        self.socket_inode = -1
        self.check_ms = 0.0
        self.sync_ms = 0.0
        self.files = FileState(root, self.log)
        self.terminating = False

    # -- life cycle ------------------------------------------------------------------

    def log(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        with contextlib.suppress(OSError):
            os.write(self.log_fd, f"{stamp} [{os.getpid()}] {message}\n".encode())

    def warm_up(self) -> None:
        """Import what a run imports (the kernel, every entry-point plugin's hooks module)."""
        import vx.cache
        import vx.cli
        import vx.commands.run
        import vx.planning
        import vx.runner  # noqa: F401
        from vx.plugin_manager import VxPluginManager

        pm = VxPluginManager()
        with contextlib.suppress(Exception):
            pm.load_entrypoints(autoload=not os.environ.get("VX_DISABLE_PLUGIN_AUTOLOAD"))
        self.installed = _installed_state(self.base_path)

    def listen(self) -> None:
        """Bind under a temporary name and rename into place once listening: a client never
        finds a socket that refuses connections while the server starts."""
        temporary = f"{self.paths.socket}.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(temporary)
        os.chmod(temporary, 0o600)
        listener.listen(16)
        os.replace(temporary, self.paths.socket)
        self.listener = listener
        self.socket_inode = os.stat(self.paths.socket).st_ino

    def loop(self) -> None:
        assert self.listener is not None
        self.log(f"serving {self.root} (idle timeout {self.idle_timeout:g} s)")
        while True:
            idle = time.monotonic() - self.last_request
            if idle >= self.idle_timeout:
                self.log(f"idle for {idle:.0f} s: exiting")
                return
            if not (self.root / "pyproject.toml").is_file():
                self.log("the workspace is gone: exiting")
                return
            if not self._owns_socket():
                self.log("the socket was replaced or removed: exiting")
                return
            self.files.drain()
            self._exit_if_terminating()
            self.listener.settimeout(min(self.idle_timeout - idle, 5.0))
            try:
                connection, _ = self.listener.accept()
            except TimeoutError:
                continue
            self.last_request = time.monotonic()
            # A client that gets no ack in time kills a hung server, not a busy one.
            with open(self.paths.busy, "wb"), connection:
                try:
                    if not self.handle(connection):
                        return
                finally:
                    with contextlib.suppress(OSError):
                        os.unlink(self.paths.busy)

    def _exit_if_terminating(self) -> None:
        """A SIGTERM that arrived while the watcher waited was swallowed there: exit now."""
        if self.terminating:
            raise SystemExit(0)

    def _owns_socket(self) -> bool:
        try:
            return os.stat(self.paths.socket).st_ino == self.socket_inode
        except OSError:
            return False

    def close(self) -> None:
        if self.listener is not None and self._owns_socket():
            with contextlib.suppress(OSError):
                os.unlink(self.paths.socket)

    # -- requests --------------------------------------------------------------------

    def handle(self, connection: socket.socket) -> bool:
        """Answer one request; False when the server must exit."""
        connection.settimeout(10.0)
        fds: list[int] = []
        try:
            request, fds = read_frame(connection, maxfds=3)
            write_frame(connection, {"answer": "ack"})
            op = request.get("op")
            self.requests += 1
            if op == "status":
                write_frame(connection, self.status())
                return True
            if op == "stop":
                write_frame(connection, {"answer": "stopping", "pid": os.getpid()})
                self.log("stop requested")
                return False
            if op == "close-watcher":  # for tests: the watcher dies as on an error
                if self.files.notify is not None:
                    self.files.notify.close()
                write_frame(connection, {"answer": "closed"})
                return True
            if op != "run" or len(fds) != 3:
                write_frame(connection, {"answer": "fallback", "reason": "unknown request"})
                return True
            try:
                began = time.perf_counter()
                self.check(request.get("client"))
                self.check_ms = (time.perf_counter() - began) * 1000
            except _Restart as exc:
                self.log(f"restart: {exc}")
                write_frame(connection, {"answer": "restart", "reason": str(exc)})
                return False
            return self.run(connection, request, fds)
        except (OSError, ValueError) as exc:
            self.log(f"request failed: {type(exc).__name__}: {exc}")
            return True
        finally:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)

    def status(self) -> dict[str, Any]:
        return {
            "answer": "status",
            "pid": os.getpid(),
            "root": str(self.root),
            "version": self.facts["vx"],
            "python": sys.executable,
            "socket": self.paths.socket,
            "log": self.paths.log,
            "uptime": time.time() - self.started,
            "requests": self.requests,
            "served": self.served,
            "idle_timeout": self.idle_timeout,
            "rss_bytes": _rss_bytes(),
            "files": self.files.status(),
        }

    def check(self, client: object) -> None:
        """Raise :class:`_Restart` unless this process runs what the client would run."""
        if not isinstance(client, dict):
            raise _Restart("the client sent no version")
        for key, label in (
            ("protocol", "protocol"),
            ("vx", "vx version"),
            ("executable", "Python"),
            ("prefix", "environment"),
            ("python", "Python version"),
            ("uid", "user"),
        ):
            if client.get(key) != self.facts[key]:
                raise _Restart(f"{label} {client.get(key)!r} != {self.facts[key]!r}")
        path = client.get("path")
        if not isinstance(path, list) or path[1:] != self.base_path[1:]:
            raise _Restart("a different import path (PYTHONPATH)")
        for file, state in self.installed.items():
            if _stat(file) != state:
                raise _Restart(f"{file} changed (vx or a plugin was installed or edited)")

    def run(self, connection: socket.socket, request: dict[str, Any], fds: list[int]) -> bool:
        args, cwd, env = request.get("args"), request.get("cwd"), request.get("env")
        started = request.get("started")
        streams = request.get("streams")
        if not (
            isinstance(args, list)
            and all(isinstance(a, str) for a in args)
            and isinstance(cwd, str)
            and isinstance(env, dict)
            and isinstance(started, int | float)
            and isinstance(streams, list)
            and len(streams) == 3
        ):
            write_frame(connection, {"answer": "fallback", "reason": "malformed request"})
            return True
        begun = time.perf_counter()
        client_path = request["client"]["path"]

        def commit() -> None:
            write_frame(connection, {"answer": "serve"})
            # The keys are computed: from here on (completing hits, or the rare task that
            # runs here when a hit vanished) digests are read from disk, so that a change
            # made while the answer is produced is seen (the check before storing a result).
            filehash.memo = gitfiles.memo = None

        session = serving.Session(commit)
        synced = time.perf_counter()
        memo = self.files if self.files.sync() else None
        self.sync_ms = (time.perf_counter() - synced) * 1000
        self._exit_if_terminating()
        before = set(sys.modules)
        umask = request.get("umask")
        umask = umask if isinstance(umask, int) else 0o022
        with _client_process(env, cwd, fds, streams, session, client_path, umask) as restore:
            serving.current = session
            filehash.memo = gitfiles.memo = memo
            try:
                _forget_process_state()
                if not self.wanted(args):
                    raise serving.NeedsRun("not wanted for this invocation")
                code = _cli_main(args, float(started))
                restore.flush()
            except serving.NeedsRun as exc:
                code = None
                reason = exc.reason
            finally:
                serving.current = None
                filehash.memo = gitfiles.memo = None
                self.files.synced = False
        self._after(before)
        if code is None:
            write_frame(connection, {"answer": "fallback", "reason": reason})
            took = (time.perf_counter() - begun) * 1000
            self.log(f"fallback after {took:.0f} ms: {reason}")
            return not self.unwanted
        if not session.committed:
            session.commit()
        write_frame(connection, {"answer": "done", "code": code})
        self.served += 1
        took = (time.perf_counter() - begun) * 1000
        self.log(
            f"served {' '.join(args)} -> {code} in {took:.0f} ms (+{self.check_ms:.1f} ms checks,"
            f" sync {self.sync_ms:.1f} ms, {len(self.files.known)} files kept)"
        )
        return True

    def wanted(self, args: list[str]) -> bool:
        """Whether this invocation is for this workspace and wants a server (else the
        server also exits: ``[tool.vx] daemon = false``, a CI environment)."""
        from vx.errors import VxError

        try:
            wanted = wanted_here(args, self.root)
        except VxError:
            return False  # a bad configuration: the run in the client reports it
        if wanted is False:
            self.unwanted = True
        return bool(wanted)

    def _after(self, before: set[str]) -> None:
        """Forget modules that only the request's own path made importable (workspace-local
        plugins: the next request imports them again), and watch the files of modules
        imported for the first time."""
        stable = tuple(os.path.join(p, "") for p in self.base_path[1:] if p)
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None)
            if file is None:
                continue
            if file.startswith(stable):
                state = _stat(file)
                if state is not None:
                    self.installed.setdefault(file, state)
            else:
                del sys.modules[name]
        from vx import gitfiles

        for process in gitfiles._prefetched.values():
            with contextlib.suppress(OSError):
                process.kill()
                process.wait()
        gitfiles._prefetched.clear()


def wanted_here(args: list[str], root: Path) -> bool | None:
    """:func:`wanted` for a command started in this process's working directory (``-C``
    considered); None when it runs in another workspace than ``root``."""
    from vx.config import find_workspace_root, tool_vx
    from vx.daemon.client import _directory
    from vx.daemon.control import wanted

    directory = _directory(args)
    found = find_workspace_root(Path(directory).resolve())
    if found is None or found[0] != root:
        return None
    return wanted(args, tool_vx(found[1]) or {}, root / "pyproject.toml")


def idle_timeout(root: Path) -> float:
    """``VX_DAEMON_IDLE_TIMEOUT``, else ``[tool.vx] daemon_idle_timeout``, else 3 h."""
    from vx.daemon.control import DEFAULT_IDLE_TIMEOUT
    from vx.settings import parse_duration

    value: Any = os.environ.get("VX_DAEMON_IDLE_TIMEOUT")
    if value is None:
        from vx.config import read_toml, tool_vx

        table = tool_vx(read_toml(root / "pyproject.toml")) or {}
        value = table.get("daemon_idle_timeout", DEFAULT_IDLE_TIMEOUT)
    return parse_duration(value)


def _cli_main(args: list[str], started: float) -> int:
    from vx.cli import main

    return main(args, started=started)


def _forget_process_state() -> None:
    """What a new process would not know: one-time warnings, created-directory marks, and
    every memoized function of vx and its plugins (some depend on the environment)."""
    from vx import _log, statedir

    _log._warned.clear()
    _log.set_verbosity(0)
    statedir._marked.clear()
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("vx"):
            continue
        for value in list(vars(module).values()):
            clear = getattr(value, "cache_clear", None)
            if callable(clear) and getattr(value, "__module__", None) == name:
                clear()


class _client_process(contextlib.AbstractContextManager["_client_process"]):
    """Become the client for one request: its environment, working directory, import path
    entry, and standard streams (the descriptors it passed), with output held until the
    session commits. Everything is put back on exit."""

    def __init__(
        self,
        env: dict[str, Any],
        cwd: str,
        fds: list[int],
        streams: list[Any],
        session: serving.Session,
        client_path: list[str],
        umask: int,
    ) -> None:
        self.umask = umask
        self.env = {str(k): str(v) for k, v in env.items()}
        self.cwd = cwd
        self.fds = fds
        self.streams = streams
        self.session = session
        self.client_path = client_path

    def __enter__(self) -> _client_process:
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved_env = dict(os.environ)
        self.saved_cwd = os.getcwd()
        self.saved_path = list(sys.path)
        self.saved_streams = (sys.stdin, sys.stdout, sys.stderr)
        self.saved_fds = [os.dup(fd) for fd in (0, 1, 2)]
        for target, fd in enumerate(self.fds):
            os.dup2(fd, target)
        os.environ.clear()
        os.environ.update(self.env)
        os.chdir(self.cwd)
        self.saved_umask = os.umask(self.umask)
        if self.client_path:
            sys.path[0] = str(self.client_path[0])
        facts = [s if isinstance(s, dict) else {} for s in self.streams]
        sys.stdin = io.TextIOWrapper(
            io.FileIO(0, "r", closefd=False),
            encoding=str(facts[0].get("encoding", "utf-8")),
            errors=str(facts[0].get("errors", "strict")),
        )
        self.out = self._writer(1, facts[1], line_buffering=os.isatty(1))
        self.err = self._writer(2, facts[2], line_buffering=True)
        sys.stdout, sys.stderr = self.out, self.err
        signal.signal(signal.SIGINT, signal.default_int_handler)
        return self

    def _writer(self, fd: int, facts: dict[str, Any], *, line_buffering: bool) -> io.TextIOWrapper:
        try:
            size = max(os.fstat(fd).st_blksize, io.DEFAULT_BUFFER_SIZE)
        except OSError:
            size = io.DEFAULT_BUFFER_SIZE
        raw: Any = self.session.writer(fd)
        return io.TextIOWrapper(
            io.BufferedWriter(raw, buffer_size=size),
            encoding=str(facts.get("encoding", "utf-8")),
            errors=str(facts.get("errors", "strict")),
            line_buffering=line_buffering,
        )

    def flush(self) -> None:
        """The request is answered: write what it wrote (the session commits first)."""
        self.session.commit()
        for stream in (self.out, self.err):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for writer in self.session.writers:
            writer.retire()
        sys.stdin, sys.stdout, sys.stderr = self.saved_streams
        for target, fd in enumerate(self.saved_fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(self.saved_cwd)
        os.umask(self.saved_umask)
        os.environ.clear()
        os.environ.update(self.saved_env)
        sys.path[:] = self.saved_path


def _stat(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _installed_state(path: list[str]) -> dict[str, tuple[int, int]]:
    """Every import-path directory and every imported module file, with its stat."""
    files = [p for p in path[1:] if p]
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if file:
            files.append(file)
    state = {}
    for file in files:
        found = _stat(file)
        if found is not None:
            state[file] = found
    return state


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _private_directory(directory: str) -> bool:
    os.makedirs(directory, mode=0o700, exist_ok=True)
    st = os.lstat(directory)
    return st.st_uid == os.getuid() and not st.st_mode & 0o077


def main(argv: list[str]) -> int:
    root = Path(argv[0]).resolve()
    paths = server_paths(str(root))
    if not _private_directory(paths.directory):
        sys.stderr.write(f"vx daemon: {paths.directory} is not private to this user\n")
        return 1
    lock = os.open(paths.pid, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return 0  # this workspace already has a server
    os.ftruncate(lock, 0)
    os.write(lock, f"{os.getpid()}\n".encode())
    with contextlib.suppress(OSError):
        if os.path.getsize(paths.log) > _LOG_LIMIT:
            os.truncate(paths.log, 0)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    from vx.errors import VxError

    try:
        timeout = idle_timeout(root)
    except (VxError, ValueError) as exc:
        # The workspace went away or its configuration is broken: no server (the runs in
        # the client report the error).
        sys.stderr.write(f"vx daemon: not starting for {root}: {exc}\n")
        os.unlink(paths.pid)
        return 1
    server = Server(root, paths, timeout)

    def terminate(*_: object) -> None:
        server.terminating = True
        sys.exit(0)

    signal.signal(signal.SIGTERM, terminate)
    try:
        server.warm_up()
        server.files.start()
        server.listen()
        server.log(f"started (pid {os.getpid()}, vx {server.facts['vx']}, {sys.executable})")
        server.loop()
    finally:
        server.close()
        with contextlib.suppress(OSError):
            os.unlink(paths.pid)
        server.log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
