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


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the environment running the suite: no colours, not on a CI service (``CI``
    turns the live progress display off), no ``VX_*`` overrides (cache directory,
    concurrency, plugins ...)."""
    for name in list(os.environ):
        if name.startswith("VX_") or name in ("CI", "GITHUB_ACTIONS", "FORCE_COLOR", "NO_COLOR"):
            monkeypatch.delenv(name)


@pytest.fixture
def user_cache() -> Path:
    return Path(os.environ["XDG_CACHE_HOME"]) / "vx"
