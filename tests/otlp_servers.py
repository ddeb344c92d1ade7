"""OTLP receivers for the ``vx_otel`` tests.

- :class:`Phoenix`: the real Arize Phoenix server (``arize-phoenix`` from PyPI), installed once
  per machine into its own virtual environment under ``$VX_TEST_CACHE`` (default
  ``~/.cache/vx-tests``), so its pins never touch vx's environment; started once per test
  session. It accepts OTLP over HTTP and gRPC and serves the stored spans over its REST API.
- :class:`FakeCollector`: a small in-process OTLP/HTTP receiver built on ``opentelemetry-proto``
  that can answer 500 or 401, or stall, for the fault tests.

Use the fixtures in a test module with ``pytest_plugins = ["otlp_servers"]``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from servers import cache_root, free_port

PHOENIX_PACKAGE = "arize-phoenix"
PHOENIX_VERSION = "20.26.1"
#: Seconds allowed for Phoenix to answer /healthz (it migrates its database on start).
STARTUP_TIMEOUT = 180.0




def closed_port_url() -> str:
    """An http URL on which nothing listens."""
    return f"http://127.0.0.1:{free_port()}"


def _phoenix_ok(prefix: Path) -> bool:
    return (prefix / "bin" / "python").exists() and (prefix / ".complete").is_file()


def install_phoenix() -> Path:
    """``arize-phoenix==PHOENIX_VERSION`` in its own venv, installed with pip on first use;
    returns that venv's ``python``. The venv is built in a temporary sibling directory and
    renamed into place (Phoenix is then started with ``python -m``, so no script depends on
    the path it was built at), so an interrupted install never leaves a half-installed copy."""
    version = f"py{sys.version_info[0]}{sys.version_info[1]}"
    prefix = cache_root() / f"phoenix-{PHOENIX_VERSION}-{version}"
    if _phoenix_ok(prefix):
        return prefix / "bin" / "python"
    prefix.parent.mkdir(parents=True, exist_ok=True)
    staging = prefix.with_name(f".{prefix.name}.{os.getpid()}.{secrets.token_hex(4)}")
    python = getattr(sys, "_base_executable", sys.executable)
    try:
        for command in (
            [python, "-m", "venv", str(staging)],
            [
                str(staging / "bin" / "python"),
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                f"{PHOENIX_PACKAGE}=={PHOENIX_VERSION}",
            ],
        ):
            completed = subprocess.run(
                command, capture_output=True, text=True, timeout=1800, check=False
            )
            if completed.returncode != 0:
                pytest.fail(
                    f"installing {PHOENIX_PACKAGE}=={PHOENIX_VERSION} for the OTLP tests failed: "
                    f"{' '.join(command)} exited {completed.returncode}\n"
                    f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}",
                    pytrace=False,
                )
        (staging / ".complete").write_text(f"{PHOENIX_PACKAGE}=={PHOENIX_VERSION}\n")
        if prefix.exists() and not _phoenix_ok(prefix):
            shutil.rmtree(prefix, ignore_errors=True)  # a stale or broken copy
        with contextlib.suppress(OSError):  # another session may have won the race
            staging.rename(prefix)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _phoenix_ok(prefix):
        pytest.fail(f"{PHOENIX_PACKAGE} is not usable in {prefix}", pytrace=False)
    return prefix / "bin" / "python"


def _get_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


@dataclass
class Phoenix:
    """A running Phoenix: OTLP/HTTP at ``url`` (``/v1/traces``), OTLP/gRPC at ``grpc_url``."""

    url: str
    grpc_url: str
    process: subprocess.Popen[bytes]
    log: Path

    def project_id(self, name: str) -> str | None:
        for project in _get_json(f"{self.url}/v1/projects?limit=1000")["data"]:
            if project["name"] == name:
                return str(project["id"])
        return None

    def spans(self, project: str) -> list[dict[str, Any]]:
        """Every span stored for ``project`` (all pages)."""
        id = self.project_id(project)
        if id is None:
            return []
        spans: list[dict[str, Any]] = []
        cursor: str | None = None
        while True:
            query = "limit=1000" + (f"&cursor={cursor}" if cursor else "")
            page = _get_json(f"{self.url}/v1/projects/{id}/spans?{query}")
            spans.extend(page["data"])
            cursor = page.get("next_cursor")
            if not cursor:
                return spans

    def wait_spans(self, project: str, count: int, timeout: float = 60.0) -> list[dict[str, Any]]:
        """The project's spans once at least ``count`` arrived (Phoenix ingests in batches)."""
        deadline = time.monotonic() + timeout
        while True:
            spans = self.spans(project)
            if len(spans) >= count or time.monotonic() > deadline:
                return spans
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(15)


def start_phoenix(python: Path, directory: Path) -> Phoenix:
    directory.mkdir(parents=True, exist_ok=True)
    port, grpc_port = free_port(), free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(directory),
        "PHOENIX_WORKING_DIR": str(directory),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = directory / "phoenix.log"
    with open(log, "wb") as handle:
        process = subprocess.Popen(
            [str(python), "-m", "phoenix.server.main", "serve"],
            env=env,
            stdout=handle,
            stderr=subprocess.STDOUT,
        )
    server = Phoenix(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{grpc_port}", process, log)
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(f"{server.url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.25)
    server.stop()
    pytest.fail(
        f"Phoenix did not become ready (exit {process.returncode}); log:\n"
        + log.read_text(errors="replace")[-4000:],
        pytrace=False,
    )


@pytest.fixture(scope="session")
def phoenix(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Phoenix]:
    """One Phoenix server for the session (installed on first use)."""
    server = start_phoenix(install_phoenix(), tmp_path_factory.mktemp("phoenix"))
    yield server
    server.stop()


# -- the fault-injecting fake ------------------------------------------------------------


@dataclass
class Export:
    """One OTLP/HTTP export request the fake received."""

    headers: dict[str, str]
    resource: dict[str, Any]
    spans: list[dict[str, Any]]


@dataclass
class FakeCollector:
    """An OTLP/HTTP receiver in a thread; ``mode`` is ``ok``, ``500``, ``401`` or ``slow``."""

    mode: str = "ok"
    delay: float = 30.0
    exports: list[Export] = field(default_factory=list)
    requests: int = 0

    def __post_init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
            ExportTraceServiceResponse,
        )

        collector = self
        self._stop = threading.Event()

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                collector.requests += 1
                if self.path != "/v1/traces":
                    return self._reply(404, b"not found")
                if collector.mode == "slow" and collector._stop.wait(collector.delay):
                    return  # closed while stalling: the client gave up long ago
                if collector.mode in ("500", "401"):
                    return self._reply(int(collector.mode), b"no")
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                for resource_spans in request.resource_spans:
                    resource = _attributes(resource_spans.resource.attributes)
                    spans = [
                        _span(span) for scope in resource_spans.scope_spans for span in scope.spans
                    ]
                    collector.exports.append(
                        Export({k.lower(): v for k, v in self.headers.items()}, resource, spans)
                    )
                self._reply(200, ExportTraceServiceResponse().SerializeToString())

            def _reply(self, code: int, body: bytes) -> None:
                self.send_response(code)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def spans(self) -> list[dict[str, Any]]:
        return [span for export in self.exports for span in export.spans]

    def close(self) -> None:
        self._stop.set()
        self.server.shutdown()
        self.server.server_close()


def _value(value: Any) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_value(item) for item in value.array_value.values]
    return getattr(value, kind) if kind else None


def _attributes(attributes: Any) -> dict[str, Any]:
    return {item.key: _value(item.value) for item in attributes}


def _span(span: Any) -> dict[str, Any]:
    return {
        "name": span.name,
        "trace_id": span.trace_id.hex(),
        "span_id": span.span_id.hex(),
        "parent_id": span.parent_span_id.hex() or None,
        "kind": span.kind,
        "start": span.start_time_unix_nano,
        "end": span.end_time_unix_nano,
        "status": span.status.code,
        "status_message": span.status.message,
        "attributes": _attributes(span.attributes),
        "events": [(event.name, _attributes(event.attributes)) for event in span.events],
        "links": [link.span_id.hex() for link in span.links],
    }


@pytest.fixture
def silent_port_url() -> Iterator[str]:
    """An http URL whose server accepts connections and never answers (a hung collector,
    for any protocol)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                accepted.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


@pytest.fixture
def collector() -> Iterator[FakeCollector]:
    fake = FakeCollector()
    yield fake
    fake.close()
