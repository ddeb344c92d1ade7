"""Shared test set-up."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_user_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """vx's per-user start-up caches go to a temporary directory, not the developer's home."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("xdg-cache")))
    yield
    mp.undo()


@pytest.fixture(autouse=True, scope="session")
def _private_daemon_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Warm servers (only started by tests that ask for one) keep their sockets in a
    directory of this session; any still running at the end is stopped."""
    directory = tmp_path_factory.mktemp("vx-daemon")
    directory.chmod(0o700)
    yield directory
    _stop_servers(directory)


def _stop_servers(directory: Path) -> None:
    import signal
    import time

    for pidfile in directory.glob("*.pid"):
        try:
            pid = int(pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError, IndexError):
            continue
        if b"vx.daemon.server" in cmdline:
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
            while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
                time.sleep(0.01)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, _private_daemon_dir: Path) -> None:
    """Whatever the environment running the suite: no colours, not on a CI service (``CI``
    turns the live progress display off), no ``VX_*`` overrides (cache directory,
    concurrency, plugins ...), and no warm server (``VX_DAEMON=0``; tests of the server
    turn it on)."""
    for name in list(os.environ):
        if name.startswith("VX_") or name in ("CI", "GITHUB_ACTIONS", "FORCE_COLOR", "NO_COLOR"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("VX_DAEMON", "0")
    monkeypatch.setenv("VX_DAEMON_DIR", str(_private_daemon_dir))


@pytest.fixture
def user_cache() -> Path:
    return Path(os.environ["XDG_CACHE_HOME"]) / "vx"
