"""A reader that goes away early (``vx graph | head``) is normal use: vx exits quietly, with
no traceback and no internal-error message, and a run still finishes its tasks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]


def _workspace(make: Make, projects: int = 40) -> VxWorkspace:
    files: dict[str, Any] = {"pyproject.toml": '[tool.vx]\nmembers = ["p/*"]\n'}
    for index in range(projects):
        files[f"p/p{index}/pyproject.toml"] = (
            f'[project]\nname = "p{index}"\n\n[tool.vx.tasks.build]\n'
            'cmd = "mkdir -p out && echo built > out/done && echo building"\n'
            'outputs = ["out/**"]\n'
        )
    return make(files)


def _closed_early(ws: VxWorkspace, *args: str, read_lines: int) -> tuple[int, str, bytes]:
    """Run vx with stdout on a pipe whose reader closes it after ``read_lines`` lines."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vx", *args],
        cwd=ws.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
    )
    assert process.stdout is not None
    assert process.stderr is not None
    head = b"".join(process.stdout.readline() for _ in range(read_lines))
    process.stdout.close()
    stderr = process.stderr.read().decode()
    return process.wait(timeout=120), stderr, head


@pytest.mark.parametrize(
    ("args", "read_lines"),
    [
        (("run", "build", "--dry"), 3),
        (("graph",), 0),
        (("plugins",), 0),
        (("run", "build", "--dry=json"), 0),
    ],
)
def test_a_closed_pipe_exits_quietly(
    vx_workspace: Make, args: tuple[str, ...], read_lines: int
) -> None:
    ws = _workspace(vx_workspace, projects=400 if args[-1] == "--dry" else 5)
    code, stderr, head = _closed_early(ws, *args, read_lines=read_lines)
    assert len(head.splitlines()) == read_lines
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    assert "BrokenPipe" not in stderr, stderr
    assert stderr == ""
    assert code == 1  # like Python's own handling of EPIPE: not success, not a crash


def test_a_run_whose_reader_goes_away_finishes_its_tasks(vx_workspace: Make) -> None:
    ws = _workspace(vx_workspace, projects=6)
    code, stderr, _ = _closed_early(ws, "run", "build", "-j", "2", read_lines=1)
    assert "Traceback" not in stderr, stderr
    assert "internal error" not in stderr, stderr
    assert code == 0, stderr
    for index in range(6):
        assert (ws.path / f"p/p{index}/out/done").read_text() == "built\n"
    again = ws.run("run", "build")
    assert set(again.outcomes.values()) == {"cached"}  # every task finished and was stored
