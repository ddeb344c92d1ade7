"""``.vx/`` (and a cache directory vx creates) never ends up in git, and a command that fails
on bad input leaves nothing behind."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

FILES = {
    "pyproject.toml": '[tool.vx]\nmembers = ["p/*"]\n',
    "p/a/pyproject.toml": (
        '[project]\nname = "a"\n\n[tool.vx.tasks.build]\n'
        'cmd = "mkdir -p dist && echo built > dist/a.txt"\noutputs = ["dist/**"]\n'
    ),
}


def _git(ws: VxWorkspace, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=ws.path, capture_output=True, text=True, check=True
    ).stdout


def _repo(make: Make) -> VxWorkspace:
    ws = make(FILES)
    _git(ws, "init", "-q")
    (ws.path / ".gitignore").write_text("dist/\n")
    return ws


def _is_marked(directory: Path) -> bool:
    tag = (directory / "CACHEDIR.TAG").read_bytes()
    ignore = (directory / ".gitignore").read_text().splitlines()
    return tag.startswith(b"Signature: 8a477f597d28d172789f06886806bc55") and "*" in ignore


def test_the_state_directory_is_ignored_by_git(vx_workspace: Make) -> None:
    ws = _repo(vx_workspace)
    result = ws.run_subprocess("run", "build")
    assert result.exit_code == 0, result.output
    assert (ws.path / ".vx" / "cache").is_dir()
    assert _is_marked(ws.path / ".vx")
    _git(ws, "add", "-A")
    staged = _git(ws, "diff", "--cached", "--name-only").split()
    assert sorted(staged) == [".gitignore", "p/a/pyproject.toml", "pyproject.toml"]


def test_a_cache_directory_vx_creates_is_marked(vx_workspace: Make, tmp_path: Path) -> None:
    ws = _repo(vx_workspace)
    result = ws.run_subprocess("run", "build", env={"VX_CACHE_DIR": "build-cache"})
    assert result.exit_code == 0, result.output
    assert _is_marked(ws.path / "build-cache")
    _git(ws, "add", "-A")
    assert not [n for n in _git(ws, "diff", "--cached", "--name-only").split() if "cache" in n]


def test_an_existing_cache_directory_gets_no_gitignore(vx_workspace: Make, tmp_path: Path) -> None:
    ws = _repo(vx_workspace)
    mine = tmp_path / "my-cache"
    mine.mkdir()
    result = ws.run_subprocess("run", "build", env={"VX_CACHE_DIR": str(mine)})
    assert result.exit_code == 0, result.output
    assert (mine / "CACHEDIR.TAG").is_file()
    assert not (mine / ".gitignore").exists()  # the user's directory: not vx's to hide


def test_failing_commands_leave_no_state_behind(vx_workspace: Make) -> None:
    ws = _repo(vx_workspace)
    for args in (("run", "build", "-F", "nope"), ("run", "buld"), ("graph", "-F", "[nope]")):
        result = ws.run_subprocess(*args)
        assert result.exit_code == 2, result.output
        assert not (ws.path / ".vx").exists(), f"vx {' '.join(args)} left .vx/ behind"
    ws.write({"p/a/pyproject.toml": FILES["p/a/pyproject.toml"] + "bogus = 1\n"})
    result = ws.run_subprocess("run", "build")
    assert result.exit_code == 78, result.output
    assert not (ws.path / ".vx").exists()
