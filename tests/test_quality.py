"""Style and typing gates, run as part of the test suite so CI enforces them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, check=False
    )


def test_ruff_clean() -> None:
    result = _run("ruff", "check", "vx", "plugins", "tests", "benchmarks")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
    plugins = _run(
        "mypy",
        "--strict",
        "plugins/vx_cache",
        "plugins/vx_python",
        "plugins/vx_remote",
        "plugins/vx_history",
        "plugins/vx_init",
        "plugins/vx_mcp",
        "plugins/vx_watch",
    )
    assert plugins.returncode == 0, plugins.stdout + plugins.stderr
