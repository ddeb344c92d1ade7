"""Remote cache servers for the tests: the real ``turborepo-remote-cache`` (installed from npm
once per machine, started per test) and a small fault-injecting fake of the ``/v8/artifacts``
protocol running in a thread.

Import the fixtures into a test module::

    from remote_servers import fake_remote, turbo_server  # noqa: F401
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import os
import secrets
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from servers import cache_root, free_port

TURBO_PACKAGE = "turborepo-remote-cache"
TURBO_VERSION = "2.12.0"
#: Seconds allowed for a server to start accepting connections (it loads every storage SDK).
STARTUP_TIMEOUT = 90.0



def _cli(prefix: Path) -> Path:
    return prefix / "node_modules" / TURBO_PACKAGE / "dist" / "cli.js"


def _installed(prefix: Path) -> bool:
    manifest = prefix / "node_modules" / TURBO_PACKAGE / "package.json"
    if not _cli(prefix).is_file() or not manifest.is_file():
        return False
    import json

    try:
        return bool(json.loads(manifest.read_text()).get("version") == TURBO_VERSION)
    except ValueError:
        return False


def install_turbo_server() -> Path:
    """``turborepo-remote-cache@TURBO_VERSION`` under ``$VX_TEST_CACHE`` (default
    ``~/.cache/vx-tests``), installed with npm on first use; returns its ``cli.js``.

    The install goes to a temporary sibling directory that is renamed into place, so an
    interrupted install or two concurrent test sessions never leave a half-installed copy."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail(
            "the remote cache integration tests need Node.js and npm on PATH "
            f"(node: {node or 'missing'}, npm: {npm or 'missing'}); install Node.js >= 20",
            pytrace=False,
        )
    prefix = cache_root() / f"{TURBO_PACKAGE}-{TURBO_VERSION}"
    if _installed(prefix):
        return _cli(prefix)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = prefix.with_name(f".{prefix.name}.{os.getpid()}.{secrets.token_hex(4)}")
    staging.mkdir()
    try:
        completed = subprocess.run(
            [
                npm,
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
                str(staging),
                f"{TURBO_PACKAGE}@{TURBO_VERSION}",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if completed.returncode != 0 or not _installed(staging):
            pytest.fail(
                f"npm install {TURBO_PACKAGE}@{TURBO_VERSION} failed "
                f"(exit {completed.returncode}):\n{completed.stdout}\n{completed.stderr}",
                pytrace=False,
            )
        if prefix.exists() and not _installed(prefix):
            shutil.rmtree(prefix, ignore_errors=True)  # a stale or broken copy
        with contextlib.suppress(OSError):  # another session may have won the race
            staging.rename(prefix)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _installed(prefix):
        pytest.fail(f"{TURBO_PACKAGE} is not usable in {prefix}", pytrace=False)
    return _cli(prefix)



def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class TurboServer:
    """A running ``turborepo-remote-cache`` with local storage."""

    url: str
    token: str
    team: str
    storage: Path
    signature_key: str | None
    process: subprocess.Popen[bytes]
    log: Path

    def artifact_path(self, key: str) -> Path:
        """Where the server keeps the artifact of ``key`` (``<storage>/<team>/<key>``)."""
        return self.storage / self.team / key

    def tag_path(self, key: str) -> Path:
        return self.storage / self.team / f"{key}.tag"

    def stored_keys(self) -> list[str]:
        directory = self.storage / self.team
        if not directory.is_dir():
            return []
        return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".tag"))

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)


class TurboLauncher:
    """Starts servers, each with a fresh port, storage directory and token.

    Node needs several seconds to load the server, so the launcher keeps one spare process
    of each kind (signed or not) booting in the background: a test takes a server that was
    never used before, and the next one starts while the test runs."""

    def __init__(self, cli: Path, base: Path) -> None:
        self.cli = cli
        self.base = base
        self.counter = 0
        self.spares: dict[bool, TurboServer] = {}

    def _spawn(self, signed: bool) -> TurboServer:
        self.counter += 1
        directory = self.base / f"server{self.counter}"
        storage = directory / "storage"
        storage.mkdir(parents=True)
        port = free_port()
        token = f"vx-test-token-{secrets.token_hex(12)}"
        key = f"vx-test-signing-{secrets.token_hex(8)}" if signed else None
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(directory)),
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "TURBO_TOKEN": token,
            "STORAGE_PROVIDER": "local",
            "STORAGE_PATH": str(storage),
            # Without this the server nests STORAGE_PATH under os.tmpdir().
            "STORAGE_PATH_USE_TMP_FOLDER": "false",
            "LOG_LEVEL": "warn",
            "NODE_ENV": "production",
        }
        if key is not None:
            # The server only stores and returns x-artifact-tag when it has a key.
            env["TURBO_REMOTE_CACHE_SIGNATURE_KEY"] = key
        log = directory / "server.log"
        with open(log, "wb") as handle:
            process = subprocess.Popen(
                ["node", str(self.cli)],
                env=env,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return TurboServer(
            url=f"http://127.0.0.1:{port}",
            token=token,
            team=f"team{self.counter}",
            storage=storage,
            signature_key=key,
            process=process,
            log=log,
        )

    def _ready(self, server: TurboServer) -> bool:
        port = int(server.url.rsplit(":", 1)[1])
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                return False
            if _accepting(port):
                return True
            time.sleep(0.05)
        server.stop()
        pytest.fail(
            f"turborepo-remote-cache did not accept connections within {STARTUP_TIMEOUT:g}s:\n"
            + server.log.read_text(errors="replace"),
            pytrace=False,
        )

    def take(self, *, signed: bool) -> TurboServer:
        for _attempt in range(3):  # a port taken between free_port() and listen() exits early
            server = self.spares.pop(signed, None) or self._spawn(signed)
            self.spares[signed] = self._spawn(signed)
            if self._ready(server):
                return server
        log = server.log.read_text(errors="replace")
        pytest.fail(f"turborepo-remote-cache exited at startup:\n{log}", pytrace=False)

    def close(self) -> None:
        for server in self.spares.values():
            server.stop()
        self.spares.clear()


@pytest.fixture(scope="session")
def turbo_launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TurboLauncher]:
    """Installs ``turborepo-remote-cache`` (cached across sessions) and starts servers."""
    launcher = TurboLauncher(install_turbo_server(), tmp_path_factory.mktemp("turbo"))
    yield launcher
    launcher.close()


@pytest.fixture
def turbo_server(turbo_launcher: TurboLauncher) -> Iterator[TurboServer]:
    """A fresh ``turborepo-remote-cache`` on 127.0.0.1 (no signing key), stopped after."""
    server = turbo_launcher.take(signed=False)
    yield server
    server.stop()


@pytest.fixture
def turbo_server_signed(turbo_launcher: TurboLauncher) -> Iterator[TurboServer]:
    """Like ``turbo_server``, with ``TURBO_REMOTE_CACHE_SIGNATURE_KEY`` set so that the server
    stores and returns ``x-artifact-tag``."""
    server = turbo_launcher.take(signed=True)
    yield server
    server.stop()


# -- a fault-injecting fake ------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    truncate_to: int | None = None
    """Send only this many bytes of ``body`` (with the full Content-Length), then close."""


Behaviour = Callable[["Request", "FakeRemote"], "Reply | None"]


class FakeRemote:
    """An in-memory ``/v8/artifacts`` server; ``behaviour`` may replace any answer.

    ``behaviour(request, fake)`` returns a :class:`Reply`, or None for the normal answer
    (token check, then 404 / stored artifact / store on PUT)."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.store: dict[str, tuple[bytes, str | None]] = {}
        self.requests: list[Request] = []
        self.behaviour: Behaviour | None = None
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    method=self.command,
                    path=parts.path,
                    query=parse_qs(parts.query),
                    authorization=self.headers.get("Authorization"),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
                with fake._lock:
                    fake.requests.append(request)
                reply = fake.behaviour(request, fake) if fake.behaviour else None
                if reply is None:
                    reply = fake.normal(request)
                if reply.delay:
                    time.sleep(reply.delay)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                if reply.truncate_to is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                if self.command == "HEAD":
                    return
                if reply.truncate_to is not None:
                    self.wfile.write(reply.body[: reply.truncate_to])
                    self.wfile.flush()
                    self.close_connection = True
                    with contextlib.suppress(OSError):
                        self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.wfile.write(reply.body)

            do_GET = do_HEAD = do_PUT = _handle

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def normal(self, request: Request) -> Reply:
        if request.authorization != f"Bearer {self.token}":
            return Reply(401, b'{"message":"Invalid authorization token"}')
        key = request.path.rsplit("/", 1)[-1]
        if request.method == "PUT":
            with self._lock:
                self.store[key] = (request.body, request.headers.get("x-artifact-tag"))
            return Reply(200, b'{"urls":[]}')
        stored = self.store.get(key)
        if stored is None:
            return Reply(404, b'{"message":"Artifact not found"}')
        data, tag = stored
        return Reply(200, data, {"x-artifact-tag": tag} if tag else {})

    def count(self, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if method is None or r.method == method)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


@pytest.fixture
def fake_remote() -> Iterator[FakeRemote]:
    """A fault-injecting ``/v8/artifacts`` server on 127.0.0.1 (token: ``fake.token``)."""
    fake = FakeRemote(f"vx-fake-token-{secrets.token_hex(12)}")
    yield fake
    fake.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


def artifact_tag(key: str, hash: str, team: str, body: bytes) -> str:
    """Turborepo's ``x-artifact-tag``, computed independently of the plugin."""
    mac = hmac.new(key.encode(), hash.encode() + team.encode() + body, hashlib.sha256)
    return base64.b64encode(mac.digest()).decode()
