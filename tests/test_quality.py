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
    result = _run(
        "ruff",
        "check",
        "vx",
        "vx_otel",
        "vx_sandbox",
        "plugins",
        "tests",
        "benchmarks",
        "vx_ipc.py",
        "vx_ipc_pytest.py",
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr
    # Every first-party plugin, and the example plugin plugin authors copy from.
    packages = sorted(
        str(path.relative_to(ROOT))
        for path in [
            *ROOT.glob("plugins/vx_*"),
            *ROOT.glob("vx_*"),
            *ROOT.glob("docs/examples/*/vx_*"),
        ]
        if (path / "__init__.py").is_file()
    )
    assert "docs/examples/vx-hello/vx_hello" in packages
    plugins = _run("mypy", "--strict", *packages)
    assert plugins.returncode == 0, plugins.stdout + plugins.stderr
