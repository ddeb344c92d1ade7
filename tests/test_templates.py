"""Task templates that name their projects (``projects = ["*"]``): one edit enables a task
everywhere; per-project opt-in, overrides and opt-outs keep working."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

ROOT = """[tool.vx]
members = ["packages/*", "apps/*"]

[tool.vx.defaults.tasks.lint]
cmd = "echo linted > lint.out"
outputs = ["lint.out"]
"""


def _workspace(make: Make, projects_line: str) -> VxWorkspace:
    return make(
        {
            "pyproject.toml": ROOT + projects_line,
            "packages/acme-core/pyproject.toml": '[project]\nname = "acme-core"\n',
            "packages/acme-api/pyproject.toml": (
                '[project]\nname = "acme-api"\n\n[tool.vx.tasks.lint]\n'
                'cmd = "echo custom > lint.out"\n'
            ),
            "packages/legacy/pyproject.toml": (
                '[project]\nname = "legacy"\n\n[tool.vx]\nskip_templates = ["lint"]\n'
            ),
            "apps/web/pyproject.toml": '[project]\nname = "web"\n',
        }
    )


def _planned(ws: VxWorkspace, *args: str) -> dict[str, str]:
    result = ws.run("run", *args, "--dry=json")
    assert result.exit_code == 0, result.output
    return {task["id"]: task["command"] for task in json.loads(result.stdout)["tasks"]}


def test_a_template_for_every_project(vx_workspace: Make) -> None:
    ws = _workspace(vx_workspace, 'projects = ["*"]\n')
    assert _planned(ws, "lint") == {
        "acme-core#lint": "echo linted > lint.out",
        "acme-api#lint": "echo custom > lint.out",  # the project's override wins
        "web#lint": "echo linted > lint.out",
        # legacy opted out
    }
    result = ws.run("run", "lint")
    assert result.exit_code == 0, result.output
    assert (ws.path / "apps/web/lint.out").read_text() == "linted\n"
    assert (ws.path / "packages/acme-api/lint.out").read_text() == "custom\n"
    assert not (ws.path / "packages/legacy/lint.out").exists()


def test_project_globs_and_exclusions(vx_workspace: Make) -> None:
    ws = _workspace(vx_workspace, 'projects = ["acme-*", "web", "!acme-core"]\n')
    assert set(_planned(ws, "lint")) == {"acme-api#lint", "web#lint"}


def test_a_template_without_projects_still_needs_an_opt_in(vx_workspace: Make) -> None:
    ws = _workspace(vx_workspace, "")
    assert set(_planned(ws, "lint")) == {"acme-api#lint"}


def test_running_a_template_nobody_enabled_says_how_to_opt_in(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/acme-core/pyproject.toml": '[project]\nname = "acme-core"\n',
            "apps/web/pyproject.toml": '[project]\nname = "web"\n',
        }
    )
    result = ws.run("run", "lint")
    assert result.exit_code == 2, result.output
    assert "[tool.vx.defaults.tasks.lint]" in result.stderr
    assert 'add projects = ["*"]' in result.stderr
    assert "Traceback" not in result.output


def test_skipping_an_unknown_template_is_an_error(vx_workspace: Make) -> None:
    ws = _workspace(vx_workspace, 'projects = ["*"]\n')
    ws.write(
        {
            "packages/legacy/pyproject.toml": (
                '[project]\nname = "legacy"\n\n[tool.vx]\nskip_templates = ["lnt"]\n'
            )
        }
    )
    result = ws.run("run", "lint")
    assert result.exit_code == 78, result.output
    where = f"{ws.path / 'packages/legacy/pyproject.toml'}: tool.vx.skip_templates[0]"
    assert where in result.stderr
    assert "(did you mean 'lint'?)" in result.stderr


def test_a_template_for_all_without_a_command_names_the_template(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": (
                '[tool.vx]\nmembers = ["packages/*"]\n\n[tool.vx.defaults.tasks.lint]\n'
                'outputs = ["x"]\nprojects = ["*"]\n'
            ),
            "packages/a/pyproject.toml": '[project]\nname = "a"\n',
        }
    )
    result = ws.run("run", "lint")
    assert result.exit_code == 78, result.output
    assert f"{ws.path / 'pyproject.toml'}: tool.vx.defaults.tasks.lint" in result.stderr


def test_editing_the_template_globs_invalidates_the_workspace_cache(vx_workspace: Make) -> None:
    ws = _workspace(vx_workspace, "")
    assert set(_planned(ws, "lint")) == {"acme-api#lint"}
    ws.write({"pyproject.toml": ROOT + 'projects = ["web"]\n'})
    assert set(_planned(ws, "lint")) == {"acme-api#lint", "web#lint"}


def test_a_glob_never_selects_the_root_project_even_when_it_has_a_name(
    vx_workspace: Make,
) -> None:
    root = (
        '[project]\nname = "acme"\n\n[tool.vx]\nmembers = ["packages/*"]\n\n'
        '[tool.vx.tasks.build]\ncmd = "true"\n\n'
        '[tool.vx.defaults.tasks.lint]\ncmd = "ruff check ."\nprojects = ["*"]\n'
    )
    ws = vx_workspace(
        {
            "pyproject.toml": root,
            "packages/acme-core/pyproject.toml": '[project]\nname = "acme-core"\n',
        }
    )
    assert set(_planned(ws, "lint")) == {"acme-core#lint"}
    ws.write({"pyproject.toml": root.replace('["*"]', '["*", "acme"]')})
    assert set(_planned(ws, "lint")) == {"acme#lint", "acme-core#lint"}
