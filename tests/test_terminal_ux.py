"""What a Turborepo or pytest user expects from the terminal: the wall time of the command,
a live progress display on a TTY (rich, imported only then), ``-v``/``-q``, and hints for
unknown or Turborepo-style flags."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

FILES = {
    "pyproject.toml": '[tool.vx]\nmembers = ["p/*"]\n',
    "p/a/pyproject.toml": (
        '[project]\nname = "a"\n\n[tool.vx.tasks.build]\n'
        'cmd = "sleep 0.3; echo built-a; mkdir -p out; echo a > out/a"\noutputs = ["out/**"]\n'
    ),
    "p/b/pyproject.toml": (
        '[project]\nname = "b"\ndependencies = ["a"]\n\n[tool.vx.tasks.build]\n'
        'cmd = "sleep 0.3; echo built-b"\ndepends_on = ["^build"]\n'
    ),
    "p/c/pyproject.toml": (
        '[project]\nname = "c"\n\n[tool.vx.tasks.build]\ncmd = "echo built-c"\n'
        '[tool.vx.tasks.broken]\ncmd = "echo broken-output; exit 4"\n'
    ),
    # A plugin that makes start-up slow, so the command's wall time is known to exceed it.
    "slow_start.py": (
        "import time\nimport vx\n\n@vx.hookimpl\ndef vx_configure(config):\n    time.sleep(0.4)\n"
    ),
}


def _time(output: str) -> float:
    match = re.search(r" Time:\s+(\d+\.\d+)s", output)
    assert match, output
    return float(match.group(1))


def test_time_is_the_wall_time_of_the_command(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    assert ws.run("run", "build").exit_code == 0
    hit = ws.run("-p", "slow_start", "run", "build")
    assert set(hit.outcomes.values()) == {"cached"}
    assert _time(hit.stdout) >= 0.4  # the whole command, not just the (instant) hits
    as_process = ws.run_subprocess("-p", "slow_start", "run", "build")
    assert _time(as_process.stdout) >= 0.4


def test_quiet_prints_only_failures_and_the_final_line(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    ok = ws.run("run", "build", "-q")
    assert ok.exit_code == 0, ok.output
    assert re.fullmatch(r"vx: 3 successful, 3 total, 0 cached, \d+\.\d\ds\n", ok.stdout)
    failing = ws.run("run", "build", "broken", "-q", "--continue")
    assert failing.exit_code == 4
    lines = failing.stdout.splitlines()
    assert "c#broken: broken-output" in lines
    assert "c#broken: failed with exit code 4 after" in failing.stdout
    assert re.fullmatch(r"vx: 3 successful, 1 failed, 4 total, 3 cached, \d+\.\d\ds", lines[-1])
    assert not [line for line in lines if "built-" in line or "cache" in line.lower()[:40]]


def test_verbose_shows_keys_sources_and_reasons(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    cold = ws.run("run", "build", "-v")
    assert re.search(r"a#build: cache miss, executing [0-9a-f]{64} \(", cold.stdout), cold.stdout
    warm = ws.run("run", "build", "-v", "--output-logs=none")
    key = warm.task("a#build")["hash"]
    assert f"a#build: cache hit (local) {key}" in warm.stdout
    scoped = ws.run("run", "build", "-v", cwd=ws.path / "p/b")
    assert "scope: b (inferred from the current directory" in scoped.stdout


@pytest.mark.parametrize(
    ("flag", "hint"),
    [
        ("--graph", "vx graph"),
        ("--summary", "did you mean '--summarize'?"),
        ("--filtr=a", "did you mean '--filter'?"),
        ("--scope=a", "-F/--filter"),
        ("--parallel", "-j/--concurrency"),
        ("--no-cache", "--cache=local:r,remote:r"),
        ("--contineu", "did you mean '--continue'?"),
    ],
)
def test_unknown_flags_get_a_hint(vx_workspace: Make, flag: str, hint: str) -> None:
    ws = vx_workspace(FILES)
    result = ws.run("run", "build", flag)
    assert result.exit_code == 2
    assert f"unrecognized arguments: {flag}" in result.stderr
    assert f"{flag}: " in result.stderr
    assert hint in result.stderr
    assert "Traceback" not in result.output


# -- a real terminal ----------------------------------------------------------------------------


def _on_a_terminal(
    ws: VxWorkspace, *args: str, env: dict[str, str] | None = None
) -> tuple[int, str, set[str]]:
    """Run vx with stdout on a pseudo-terminal (stderr on a pipe, for ``-X importtime``):
    ``(exit code, what the terminal received, modules imported)``."""
    main, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-X", "importtime", "-m", "vx", *args],
        cwd=ws.path,
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=subprocess.PIPE,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", **(env or {})},
    )
    os.close(secondary)
    received = bytearray()
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        received += chunk
    os.close(main)
    assert process.stderr is not None
    stderr = process.stderr.read().decode()
    modules = {line.rpartition("|")[2].strip() for line in stderr.splitlines()}
    return process.wait(timeout=120), received.decode(errors="replace"), modules


HIDE_CURSOR = "\x1b[?25l"


def test_a_terminal_shows_live_progress_then_the_summary(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    code, screen, modules = _on_a_terminal(ws, "run", "build")
    assert code == 0, screen
    assert "rich" in modules
    assert HIDE_CURSOR in screen  # the live display drew itself
    assert re.search(r"[0-3]/3", screen), screen
    assert "running: a#build" in screen
    assert "built-a" in screen  # task output is still shown, above the display
    assert "3 successful, 3 total" in screen  # then the normal summary


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"CI": "true"}])
def test_no_live_progress_with_no_color_or_ci(vx_workspace: Make, env: dict[str, str]) -> None:
    ws = vx_workspace(FILES)
    code, screen, modules = _on_a_terminal(ws, "run", "build", env=env)
    assert code == 0, screen
    assert "rich" not in modules
    assert HIDE_CURSOR not in screen
    assert "3 successful, 3 total" in screen


def test_no_live_progress_on_a_pipe(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    result = ws.run_subprocess("run", "build")
    assert result.exit_code == 0
    assert HIDE_CURSOR not in result.stdout
    assert "running:" not in result.stdout


def test_a_warm_full_hit_on_a_terminal_does_not_import_rich(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    assert ws.run("run", "build").exit_code == 0
    code, screen, modules = _on_a_terminal(ws, "run", "build")
    assert code == 0, screen
    assert "3 cached, 3 total" in screen
    assert "rich" not in modules
    assert HIDE_CURSOR not in screen


def test_vx_starts_without_rich(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vx", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0
    assert "rich" not in {line.rpartition("|")[2].strip() for line in completed.stderr.splitlines()}
