"""Git-range selection (``-F '[REV]'``, ``--affected``) ignores what vx runs produce: files
matching a project's declared ``outputs`` and anything under ``.vx/`` are not source changes."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "vx tests",
    "GIT_AUTHOR_EMAIL": "vx@example.invalid",
    "GIT_COMMITTER_NAME": "vx tests",
    "GIT_COMMITTER_EMAIL": "vx@example.invalid",
}


def _git(ws: VxWorkspace, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=ws.path,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        check=True,
    )


def _project(name: str, deps: list[str]) -> str:
    return (
        f'[project]\nname = "{name}"\ndependencies = {json.dumps(deps)}\n\n'
        "[tool.vx.tasks.build]\n"
        'cmd = "mkdir -p dist build && cp src/m.py dist/m.py && echo log > build/log.txt"\n'
        'outputs = ["dist/**", "build/*.txt"]\ndepends_on = ["^build"]\n'
    )


@pytest.fixture
def repo(vx_workspace: Make) -> VxWorkspace:
    """A committed repository without any .gitignore: outputs show up as untracked files."""
    ws = vx_workspace(
        {
            "pyproject.toml": '[tool.vx]\nmembers = ["p/*"]\n',
            "p/core/pyproject.toml": _project("core", []),
            "p/core/src/m.py": "x = 1\n",
            "p/app/pyproject.toml": _project("app", ["core"]),
            "p/app/src/m.py": "x = 1\n",
        }
    )
    _git(ws, "init", "-q")
    _git(ws, "add", "-A")
    _git(ws, "commit", "-q", "-m", "initial")
    return ws


def _selected(ws: VxWorkspace, *args: str) -> set[str]:
    result = ws.run("run", "build", *args, "--dry=json")
    assert result.exit_code == 0, result.output
    return {task["project"] for task in json.loads(result.stdout)["tasks"]}


def test_outputs_and_state_of_a_previous_run_are_not_changes(repo: VxWorkspace) -> None:
    assert repo.run("run", "build").exit_code == 0
    assert (repo.path / "p/core/dist/m.py").is_file()
    # State an older vx left without a .gitignore, and a stray file under .vx/
    (repo.path / ".vx" / ".gitignore").unlink(missing_ok=True)
    (repo.path / ".vx" / "notes.txt").write_text("x\n")
    assert _selected(repo, "-F", "[HEAD]") == set()
    assert _selected(repo, "--affected", "--base", "HEAD") == set()
    graph = repo.run("graph", "build", "--affected", "--base", "HEAD", "--format=json")
    assert json.loads(graph.stdout)["tasks"] == []


def test_a_source_change_next_to_outputs_still_selects(repo: VxWorkspace) -> None:
    assert repo.run("run", "build").exit_code == 0
    (repo.path / "p/core/src/m.py").write_text("x = 2\n")
    assert _selected(repo, "-F", "[HEAD]") == {"core"}
    assert _selected(repo, "--affected", "--base", "HEAD") == {"core", "app"}
    (repo.path / "p/app/build/notes.md").write_text("not an output: *.txt only\n")
    assert _selected(repo, "-F", "[HEAD]") == {"core", "app"}


def test_a_committed_output_that_changed_is_not_a_source_change(repo: VxWorkspace) -> None:
    assert repo.run("run", "build").exit_code == 0
    _git(repo, "add", "-A", "p")
    _git(repo, "commit", "-q", "-m", "commit the outputs")
    (repo.path / "p/app/dist/m.py").write_text("edited output\n")
    assert _selected(repo, "-F", "[HEAD]") == set()
