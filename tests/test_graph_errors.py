"""Typos in ``^task`` dependencies and cycles between projects are configuration errors that
name the file and key the user actually wrote, whatever command builds the graph."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]


def _ws(make: Make, a_extra: str = "", b_extra: str = "", root_extra: str = "") -> VxWorkspace:
    return make(
        {
            "pyproject.toml": '[tool.vx]\nmembers = ["p/*"]\n' + root_extra,
            "p/a/pyproject.toml": '[project]\nname = "a"\ndependencies = ["b"]\n' + a_extra,
            "p/b/pyproject.toml": '[project]\nname = "b"\n' + b_extra,
        }
    )


def _one_error(result: Any) -> str:
    assert result.exit_code == 78, result.output
    assert "Traceback" not in result.output
    assert result.stderr.count("vx: error:") == 1, result.stderr
    return str(result.stderr)


def test_a_caret_dependency_no_project_defines_is_an_error(vx_workspace: Make) -> None:
    build = '\n[tool.vx.tasks.build]\ncmd = "true"\ndepends_on = ["lint", "^pkgg"]\n'
    ws = _ws(vx_workspace, a_extra=build + '[tool.vx.tasks.lint]\ncmd = "true"\n')
    ws.write({"p/b/pyproject.toml": '[project]\nname = "b"\n\n[tool.vx.tasks.pkg]\ncmd = "true"\n'})
    message = _one_error(ws.run("run", "build"))
    assert f"{ws.path / 'p/a/pyproject.toml'}: tool.vx.tasks.build.depends_on[1]" in message
    assert "no project in the workspace has a task 'pkgg' (did you mean 'pkg'?)" in message
    assert not (ws.path / "p/a/ran").exists()


def test_a_caret_typo_in_a_template_names_the_template(vx_workspace: Make) -> None:
    template = '\n[tool.vx.defaults.tasks.build]\ncmd = "true"\ndepends_on = ["^biuld"]\n'
    ws = _ws(vx_workspace, a_extra="\n[tool.vx.tasks.build]\n", root_extra=template)
    message = _one_error(ws.run("run", "build"))
    assert f"{ws.path / 'pyproject.toml'}: tool.vx.defaults.tasks.build.depends_on[0]" in message
    assert "(did you mean 'build'?)" in message


def test_a_caret_dependency_some_project_defines_is_fine(vx_workspace: Make) -> None:
    # ^lint: b has no lint task, but the workspace does (a's own): b is passed through.
    ws = _ws(
        vx_workspace,
        a_extra='\n[tool.vx.tasks.lint]\ncmd = "true"\ndepends_on = ["^lint"]\n',
    )
    assert ws.run("run", "lint").exit_code == 0


CYCLE_A = '\n[tool.vx.tasks.build]\ncmd = "true"\ndepends_on = ["^build"]\n'
CYCLE_B = (
    '\n[tool.vx]\ndepends_on = ["a"]\n\n[tool.vx.tasks.build]\ncmd = "true"\n'
    'depends_on = ["^build"]\n'
)


@pytest.mark.parametrize(
    "args",
    [
        ("run", "build"),
        ("run", "a#build"),
        ("graph",),
        ("run", "build", "--dry"),
        ("why", "a#build"),
    ],
)
def test_a_project_cycle_names_the_depends_on_that_closes_it(
    vx_workspace: Make, args: tuple[str, ...]
) -> None:
    ws = _ws(vx_workspace, a_extra=CYCLE_A, b_extra=CYCLE_B)
    message = _one_error(ws.run(*args))
    assert f"{ws.path / 'p/b/pyproject.toml'}: tool.vx.depends_on[0]" in message
    assert "project dependency cycle: " in message
    assert "project.dependencies[0] in " in message  # the other edge, with its own file


def test_a_project_cycle_is_reported_even_when_no_task_traverses_it(vx_workspace: Make) -> None:
    # The cycle a <-> b exists in the project graph; the lint task does not follow it.
    ws = _ws(
        vx_workspace,
        a_extra='\n[tool.vx.tasks.lint]\ncmd = "true"\n',
        b_extra='\n[tool.vx]\ndepends_on = ["a"]\n',
    )
    message = _one_error(ws.run("run", "lint"))
    assert f"{ws.path / 'p/b/pyproject.toml'}: tool.vx.depends_on[0]" in message


def test_a_task_cycle_from_a_template_names_the_template(vx_workspace: Make) -> None:
    template = '\n[tool.vx.defaults.tasks.build]\ncmd = "true"\ndepends_on = ["test"]\n'
    tasks = (
        '\n[tool.vx.tasks.build]\n\n[tool.vx.tasks.test]\ncmd = "true"\ndepends_on = ["build"]\n'
    )
    ws = _ws(vx_workspace, b_extra=tasks, root_extra=template)
    message = _one_error(ws.run("run", "b#build"))
    assert "dependency cycle: b#build -> b#test -> b#build" in message
    assert f"{ws.path / 'pyproject.toml'}: tool.vx.defaults.tasks.build.depends_on" in message
