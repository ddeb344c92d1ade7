"""Started inside a member project's directory, ``vx run``/``vx graph``/``--dry`` cover that
project (and what its tasks depend on), like Turborepo; ``-F`` and ``--affected`` take over,
and ``-F '*'`` covers the whole workspace."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]


def _member(name: str, deps: list[str], extra: str = "") -> str:
    return (
        f'[project]\nname = "{name}"\ndependencies = {json.dumps(deps)}\n\n'
        '[tool.vx.tasks.build]\ncmd = "echo built > built.txt"\ndepends_on = ["^build"]\n' + extra
    )


@pytest.fixture
def ws(vx_workspace: Make) -> VxWorkspace:
    return vx_workspace(
        {
            "pyproject.toml": '[tool.vx]\nmembers = ["packages/*"]\n',
            "packages/core/pyproject.toml": _member("core", []),
            "packages/api/pyproject.toml": _member(
                "api", ["core"], '\n[tool.vx.tasks.test]\ncmd = "true"\n'
            ),
            "packages/api/src/api/__init__.py": "",
            "packages/web/pyproject.toml": _member("web", ["api"]),
            "packages/tools/pyproject.toml": _member("tools", []),
        }
    )


def _planned(ws: VxWorkspace, *args: str, cwd: str) -> set[str]:
    result = ws.run("run", *args, "--dry=json", cwd=ws.path / cwd)
    assert result.exit_code == 0, result.output
    return {task["id"] for task in json.loads(result.stdout)["tasks"]}


def test_a_run_inside_a_member_covers_that_project_and_its_dependencies(ws: VxWorkspace) -> None:
    assert _planned(ws, "build", cwd="packages/api") == {"api#build", "core#build"}
    assert _planned(ws, "build", cwd="packages/api/src/api") == {"api#build", "core#build"}
    result = ws.run_subprocess("run", "build", cwd=ws.path / "packages/api")
    assert result.exit_code == 0, result.output
    assert set(result.outcomes) == {"api#build", "core#build"}
    assert "scope: api (inferred from the current directory" in result.stdout
    assert not (ws.path / "packages/web/built.txt").exists()
    assert not (ws.path / "packages/tools/built.txt").exists()


def test_explicit_selection_takes_over(ws: VxWorkspace) -> None:
    every = {"core#build", "api#build", "web#build", "tools#build"}
    assert _planned(ws, "build", "-F", "*", cwd="packages/api") == every
    assert _planned(ws, "build", "-F", "web", cwd="packages/api") == {
        "web#build",
        "api#build",
        "core#build",
    }
    assert _planned(ws, "build", cwd=".") == every  # the workspace root: everything


def test_graph_and_dry_follow_the_same_rule(ws: VxWorkspace) -> None:
    graph = ws.run("graph", "build", "--format=json", cwd=ws.path / "packages/web")
    assert graph.exit_code == 0, graph.output
    ids = {task["id"] for task in json.loads(graph.stdout)["tasks"]}
    assert ids == {"web#build", "api#build", "core#build"}
    text = ws.run("graph", cwd=ws.path / "packages/tools")
    assert text.stdout == "tools#build\n"
    assert "scope: tools" in text.stderr
    dry = ws.run("run", "build", "--dry", cwd=ws.path / "packages/tools")
    assert "scope: tools (inferred from the current directory" in dry.stdout
    assert "\ntools#build\n" in dry.stdout
    assert "core#build" not in dry.stdout


def test_a_task_the_inferred_project_lacks_says_how_to_widen(ws: VxWorkspace) -> None:
    result = ws.run("run", "test", cwd=ws.path / "packages/web")
    assert result.exit_code == 2, result.output
    assert "project 'web' (inferred from the current directory" in result.stderr
    assert "-F '*'" in result.stderr
    assert _planned(ws, "test", "-F", "*", cwd="packages/web") == {"api#test"}
