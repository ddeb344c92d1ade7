"""Projects with dynamic dependencies get their workspace edges from ``uv.lock``.

``tests/data/uv_dynamic`` is a uv workspace whose members fill in their dependencies from
requirements files (setuptools ``dynamic``), with the ``uv.lock`` uv 0.13 wrote for it:
``acme-api`` needs ``acme-core`` (and ``acme-cli`` only through its ``cli`` extra);
``acme-cli`` needs ``acme-api`` (and ``acme-core`` only in its ``dev`` group).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

DATA = Path(__file__).parent / "data" / "uv_dynamic"

VX = """
[tool.vx]
members = ["packages/*"]

[tool.vx.defaults.tasks.build]
cmd = "echo built"
depends_on = ["^build"]
projects = ["*"]
"""


@pytest.fixture
def ws(vx_workspace: Make) -> VxWorkspace:
    workspace = vx_workspace({})
    shutil.copytree(DATA, workspace.path, dirs_exist_ok=True)
    root = workspace.path / "pyproject.toml"
    root.write_text(root.read_text() + VX)
    return workspace


def _edges(result: Any) -> dict[str, list[str]]:
    assert result.exit_code == 0, result.output
    return {t["id"]: sorted(t["dependencies"]) for t in json.loads(result.stdout)["tasks"]}


LOCKED = {
    "acme-core#build": [],
    "acme-api#build": ["acme-core#build"],
    "acme-cli#build": ["acme-api#build"],
}


def test_edges_of_dynamic_projects_come_from_the_lock(ws: VxWorkspace) -> None:
    result = ws.run("graph", "build", "--format=json")
    # Runtime dependencies only, as for static metadata: the ``cli`` extra (which would make
    # a cycle) and the ``dev`` group are not edges.
    assert _edges(result) == LOCKED
    assert "warning" not in result.stderr
    run = ws.run("run", "build", "-j", "1")
    assert run.exit_code == 0, run.output
    assert list(run.outcomes) == ["acme-core#build", "acme-api#build", "acme-cli#build"]


def test_static_dependencies_stay_the_first_source(ws: VxWorkspace) -> None:
    cli = ws.path / "packages/cli/pyproject.toml"
    text = cli.read_text().replace('dynamic = ["dependencies"]', 'dependencies = ["acme-core"]')
    cli.write_text(text)
    edges = _edges(ws.run("graph", "build", "--format=json"))
    assert edges["acme-cli#build"] == ["acme-core#build"]  # not the lock's acme-api


def test_an_edited_lock_invalidates_the_cached_workspace(ws: VxWorkspace) -> None:
    assert _edges(ws.run("graph", "build", "--format=json")) == LOCKED
    assert _edges(ws.run("graph", "build", "--format=json")) == LOCKED  # from the cache
    lock = ws.path / "uv.lock"
    cli_entry = (
        'source = { editable = "packages/cli" }\ndependencies = [\n    { name = "acme-api" },\n]'
    )
    assert cli_entry in lock.read_text()
    lock.write_text(lock.read_text().replace(cli_entry, 'source = { editable = "packages/cli" }'))
    assert _edges(ws.run("graph", "build", "--format=json"))["acme-cli#build"] == []


def test_without_a_lock_each_dynamic_project_gets_one_warning(ws: VxWorkspace) -> None:
    (ws.path / "uv.lock").unlink()
    for attempt in ("cold", "warm"):
        result = ws.run_subprocess("graph", "build")
        assert result.exit_code == 0, result.output
        warnings = [line for line in result.stderr.splitlines() if "warning" in line]
        assert len(warnings) == 2, (attempt, result.stderr)
        for name, folder in (("acme-api", "api"), ("acme-cli", "cli")):
            (line,) = [w for w in warnings if f"project '{name}'" in w]
            assert str(ws.path / "packages" / folder / "pyproject.toml") in line
            assert "[tool.vx] depends_on" in line
            assert "uv.lock" in line
    # Declaring the edges is the fix: no warning for that project any more.
    api = ws.path / "packages/api/pyproject.toml"
    api.write_text(api.read_text() + '\n[tool.vx]\ndepends_on = ["acme-core"]\n')
    result = ws.run_subprocess("graph", "build")
    assert "acme-api" not in result.stderr
    assert "project 'acme-cli'" in result.stderr


def test_a_lock_appearing_later_is_read(ws: VxWorkspace) -> None:
    lock = (ws.path / "uv.lock").read_text()
    (ws.path / "uv.lock").unlink()
    assert _edges(ws.run("graph", "build", "--format=json"))["acme-api#build"] == []
    (ws.path / "uv.lock").write_text(lock)
    assert _edges(ws.run("graph", "build", "--format=json")) == LOCKED


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("version = 1\n[[package]\n", "invalid TOML"),
        ("[tool]\nx = 1\n", "not a uv lock file"),
    ],
)
def test_an_unreadable_lock_is_a_warning(ws: VxWorkspace, content: str, fragment: str) -> None:
    (ws.path / "uv.lock").write_text(content)
    result = ws.run_subprocess("run", "build")
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    (warning,) = [line for line in result.stderr.splitlines() if "warning" in line]
    assert f"{ws.path / 'uv.lock'}: {fragment}" in warning
    assert "uv lock" in warning


def test_a_stale_lock_missing_a_member_is_a_warning(ws: VxWorkspace) -> None:
    lock = ws.path / "uv.lock"
    lock.write_text(lock.read_text().replace('name = "acme-cli"', 'name = "acme-old-cli"'))
    result = ws.run_subprocess("graph", "build")
    assert result.exit_code == 0, result.output
    assert f"{lock} does not list project 'acme-cli'" in result.stderr
    assert "stale" in result.stderr


def test_a_warm_full_hit_does_not_read_the_lock(ws: VxWorkspace) -> None:
    assert ws.run_subprocess("run", "build").exit_code == 0
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vx", "run", "build"],
        cwd=ws.path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "3 cached, 3 total" in completed.stdout
    modules = {line.rpartition("|")[2].strip() for line in completed.stderr.splitlines()}
    assert "tomllib" not in modules
    assert "vx.uvlock" not in modules
