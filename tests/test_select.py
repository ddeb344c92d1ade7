"""Project selection (``--filter``, ``--affected``), ``vx graph`` and ``vx run --dry``."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vx.testing import RunResult, VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

CORE, API, WEB, TOOLS = "acme-core", "acme-api", "acme-web", "tools"
EVERY = {CORE, API, WEB, TOOLS}


def project(
    name: str, *, deps: tuple[str, ...] = (), build: bool = True, **extra: Any
) -> dict[str, Any]:
    tasks: dict[str, Any] = {"lint": {"cmd": "touch lint.ran"}}
    if build:
        tasks["build"] = {
            "cmd": ["python", "-c", "print('building')"],
            "depends_on": ["^build"],
            "outputs": ["dist/**"],
            **extra,
        }
    table: dict[str, Any] = {"name": name, "dependencies": list(deps)}
    return {"project": table, "tool": {"vx": {"tasks": tasks}}}


@pytest.fixture
def ws(vx_workspace: Make) -> VxWorkspace:
    """core <- api <- web, and an unrelated ``tools`` (lint only)."""
    return vx_workspace(
        {
            "pyproject.toml": {
                "tool": {"vx": {"members": ["packages/*", "apps/*"], "global_inputs": ["uv.lock"]}}
            },
            "uv.lock": "lock v1\n",
            "packages/core/pyproject.toml": project(CORE),
            "packages/core/src/core.py": "x = 1\n",
            "packages/api/pyproject.toml": project(API, deps=(CORE, "httpx")),
            "packages/api/src/api.py": "x = 1\n",
            "apps/web/pyproject.toml": project(WEB, deps=(API,)),
            "packages/tools/pyproject.toml": project(TOOLS, build=False),
        }
    )


def plan(ws: VxWorkspace, *args: str, cwd: Path | None = None) -> dict[str, Any]:
    result = ws.run("run", *args, "--dry=json", cwd=cwd)
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def selected(ws: VxWorkspace, *filters: str, cwd: Path | None = None) -> set[str]:
    args = [f"--filter={spec}" for spec in filters]
    return {task["project"] for task in plan(ws, "lint", *args, cwd=cwd)["tasks"]}


# -- --filter --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ([], EVERY),
        ([API], {API}),
        (["Acme_API"], {API}),
        (["acme-*"], {CORE, API, WEB}),
        (["*o*"], {CORE, TOOLS}),
        (["./packages/*"], {CORE, API, TOOLS}),
        (["./apps/web"], {WEB}),
        ([f"{WEB}..."], {WEB, API, CORE}),
        ([f"...{CORE}"], {CORE, API, WEB}),
        ([f"...{API}..."], {CORE, API, WEB}),
        ([f"{TOOLS}..."], {TOOLS}),
        ([f"!{TOOLS}"], {CORE, API, WEB}),
        (["acme-*", f"!{API}"], {CORE, WEB}),
        ([CORE, TOOLS], {CORE, TOOLS}),
        ([f"!{WEB}..."], {TOOLS}),
    ],
)
def test_filter(ws: VxWorkspace, filters: list[str], expected: set[str]) -> None:
    assert selected(ws, *filters) == expected


def test_short_filter_flag_and_real_run(ws: VxWorkspace) -> None:
    result = ws.run("run", "lint", "-F", API, "-F", TOOLS)
    assert result.exit_code == 0, result.output
    assert set(result.outcomes) == {f"{API}#lint", f"{TOOLS}#lint"}
    assert (ws.path / "packages/api/lint.ran").exists()
    assert not (ws.path / "packages/core/lint.ran").exists()


def test_filter_selects_projects_but_dependencies_tasks_still_run(ws: VxWorkspace) -> None:
    result = ws.run("run", "build", "-F", WEB)
    assert result.exit_code == 0, result.output
    assert set(result.outcomes) == {f"{CORE}#build", f"{API}#build", f"{WEB}#build"}


def test_path_filters_are_relative_to_the_invocation_directory(ws: VxWorkspace) -> None:
    assert selected(ws, "./web", cwd=ws.path / "apps") == {WEB}
    assert selected(ws, ".", cwd=ws.path / "packages/api") == {API}
    assert selected(ws, "../core", cwd=ws.path / "packages/api") == {CORE}


def test_task_missing_in_selected_projects(ws: VxWorkspace) -> None:
    result = ws.run("run", "build", "-F", TOOLS)
    assert result.exit_code == 2
    assert "no selected project has a task named 'build'" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("acme-cor", "did you mean 'acme-core'"),
        ("nothing-*", "no project named 'nothing-*'"),
        ("./nowhere", "no project directory matches"),
        ("", "empty selector"),
        ("!", "empty selector"),
        ("...", "empty selector"),
        ("[HEAD", "unbalanced brackets"),
        ("[]", "empty git revision"),
        ("[HEAD]", "git"),  # not a git repository
    ],
)
def test_bad_filter_is_a_usage_error(ws: VxWorkspace, spec: str, message: str) -> None:
    result = ws.run("run", "lint", f"--filter={spec}")
    assert result.exit_code == 2, result.output
    assert f"--filter {spec!r}" in result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.output
    assert not list(ws.path.rglob("lint.ran"))


# -- git revisions and --affected -------------------------------------------------------------

GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "vx tests",
    "GIT_AUTHOR_EMAIL": "vx@example.invalid",
    "GIT_COMMITTER_NAME": "vx tests",
    "GIT_COMMITTER_EMAIL": "vx@example.invalid",
}


def git(ws: VxWorkspace, *args: str) -> str:
    completed = subprocess.run(
        ["git", "-c", "init.defaultBranch=main", "-c", "commit.gpgsign=false", *args],
        cwd=ws.path,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return completed.stdout


def commit(ws: VxWorkspace, message: str) -> None:
    git(ws, "add", "-A")
    git(ws, "commit", "-q", "-m", message)


@pytest.fixture
def repo(ws: VxWorkspace) -> VxWorkspace:
    (ws.path / ".gitignore").write_text(".vx/\n")
    git(ws, "init", "-q")
    commit(ws, "initial")
    return ws


def test_git_revision_filter_includes_uncommitted_and_untracked_files(repo: VxWorkspace) -> None:
    assert selected(repo, "[HEAD]") == set()
    (repo.path / "packages/core/src/core.py").write_text("x = 2\n")
    assert selected(repo, "[HEAD]") == {CORE}
    (repo.path / "packages/tools/new_file.py").write_text("")
    assert selected(repo, "[HEAD]") == {CORE, TOOLS}
    assert selected(repo, "...[HEAD]") == {CORE, API, WEB, TOOLS}
    assert selected(repo, "[HEAD]", f"!{TOOLS}") == {CORE}


def test_workspace_in_a_subdirectory_of_the_git_repository(ws: VxWorkspace) -> None:
    top = ws.path.parent  # the repository holds the workspace in its "ws/" folder
    (top / "README.md").write_text("outside the workspace\n")
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "initial"]):
        subprocess.run(
            ["git", "-c", "init.defaultBranch=main", *args],
            cwd=top,
            env={**os.environ, **GIT_ENV},
            check=True,
            capture_output=True,
        )
    (top / "README.md").write_text("changed outside the workspace\n")
    assert selected(ws, "[HEAD]") == set()
    (ws.path / "packages/tools/untracked.py").write_text("")
    (ws.path / "packages/api/src/api.py").write_text("x = 2\n")
    assert selected(ws, "[HEAD]") == {TOOLS, API}


def test_git_range_filter(repo: VxWorkspace) -> None:
    (repo.path / "packages/core/src/core.py").write_text("x = 2\n")
    commit(repo, "change core")
    (repo.path / "packages/api/src/api.py").write_text("x = 2\n")
    commit(repo, "change api")
    assert selected(repo, "[HEAD~1...HEAD]") == {API}
    assert selected(repo, "[HEAD~2...HEAD~1]") == {CORE}
    assert selected(repo, "[HEAD~2...HEAD]") == {CORE, API}
    assert selected(repo, "[HEAD~2]") == {CORE, API}
    assert selected(repo, "...[HEAD~1...HEAD]") == {API, WEB}


def test_deleted_files_count_as_changes(repo: VxWorkspace) -> None:
    (repo.path / "packages/api/src/api.py").unlink()
    assert selected(repo, "[HEAD]") == {API}


def test_global_input_change_selects_every_project(repo: VxWorkspace) -> None:
    (repo.path / "uv.lock").write_text("lock v2\n")
    assert selected(repo, "[HEAD]") == EVERY


def test_affected_with_base(repo: VxWorkspace) -> None:
    (repo.path / "packages/api/src/api.py").write_text("x = 2\n")
    commit(repo, "change api")
    result = repo.run("run", "lint", "--affected", "--base", "HEAD~1")
    assert result.exit_code == 0, result.output
    assert set(result.outcomes) == {f"{API}#lint", f"{WEB}#lint"}
    assert selected(repo, cwd=None) == EVERY  # without --affected: everything


def test_affected_with_nothing_changed_runs_nothing(repo: VxWorkspace) -> None:
    result = repo.run("run", "lint", "--affected", "--base=HEAD")
    assert result.exit_code == 0, result.output
    assert "no tasks to run" in result.stderr
    assert not list(repo.path.rglob("lint.ran"))
    assert plan(repo, "lint", "--affected", "--base=HEAD")["tasks"] == []


def test_affected_defaults_to_origin_main(repo: VxWorkspace) -> None:
    result = repo.run("run", "lint", "--affected")
    assert result.exit_code == 2
    assert "origin/main" in result.stderr
    assert "Traceback" not in result.output
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    (repo.path / "packages/core/src/core.py").write_text("x = 3\n")
    assert {t["project"] for t in plan(repo, "lint", "--affected")["tasks"]} == {CORE, API, WEB}


def test_unknown_revision_is_a_usage_error(repo: VxWorkspace) -> None:
    result = repo.run("run", "lint", "-F", "[no-such-branch]")
    assert result.exit_code == 2
    assert "--filter '[no-such-branch]'" in result.stderr
    assert "Traceback" not in result.output


def test_base_without_affected_is_a_usage_error(ws: VxWorkspace) -> None:
    result = ws.run("run", "lint", "--base", "HEAD")
    assert result.exit_code == 2
    assert "--affected" in result.stderr


# -- vx graph -----------------------------------------------------------------------------------

BUILD_EDGES = {(f"{API}#build", f"{CORE}#build"), (f"{WEB}#build", f"{API}#build")}
BUILD_IDS = {f"{CORE}#build", f"{API}#build", f"{WEB}#build"}


def graph(ws: VxWorkspace, *args: str) -> RunResult:
    result = ws.run("graph", *args)
    assert result.exit_code == 0, result.output
    return result


def test_graph_text(ws: VxWorkspace) -> None:
    out = graph(ws, "build").stdout.splitlines()
    assert out == [
        f"{CORE}#build",
        f"{API}#build -> {CORE}#build",
        f"{WEB}#build -> {API}#build",
    ]


def test_graph_dot(ws: VxWorkspace) -> None:
    out = graph(ws, "build", "--format=dot").stdout
    assert out.startswith("digraph vx {")
    assert out.rstrip().endswith("}")
    assert set(re.findall(r'"([^"]+)" -> "([^"]+)";', out)) == BUILD_EDGES
    assert set(re.findall(r'^\s*"([^"]+)";$', out, re.MULTILINE)) == BUILD_IDS


def test_graph_mermaid(ws: VxWorkspace) -> None:
    out = graph(ws, "build", "--format", "mermaid").stdout
    assert out.splitlines()[0] == "graph TD"
    nodes = dict(re.findall(r'^\s*(\w+)\["([^"]+)"\]$', out, re.MULTILINE))
    assert set(nodes.values()) == BUILD_IDS
    edges = re.findall(r"^\s*(\w+) --> (\w+)$", out, re.MULTILINE)
    assert {(nodes[a], nodes[b]) for a, b in edges} == BUILD_EDGES


def test_graph_json(ws: VxWorkspace) -> None:
    document = json.loads(graph(ws, "build", "--format=json").stdout)
    tasks = {task["id"]: task for task in document["tasks"]}
    assert set(tasks) == BUILD_IDS
    assert tasks[f"{API}#build"]["dependencies"] == [f"{CORE}#build"]
    assert tasks[f"{API}#build"]["dependents"] == [f"{WEB}#build"]
    assert tasks[f"{CORE}#build"]["project"] == CORE
    assert tasks[f"{CORE}#build"]["task"] == "build"


def test_graph_of_every_task_and_with_filter(ws: VxWorkspace) -> None:
    every = json.loads(graph(ws, "--format=json").stdout)
    assert {t["id"] for t in every["tasks"]} == BUILD_IDS | {f"{p}#lint" for p in EVERY}
    filtered = json.loads(graph(ws, "lint", "-F", f"{API}...", "--format=json").stdout)
    assert {t["id"] for t in filtered["tasks"]} == {f"{API}#lint", f"{CORE}#lint"}


def test_graph_bad_format_and_unknown_task(ws: VxWorkspace) -> None:
    result = ws.run("graph", "--format=svg")
    assert result.exit_code == 2
    assert "mermaid" in result.stderr
    unknown = ws.run("graph", "biuld")
    assert unknown.exit_code == 2
    assert "did you mean 'build'" in unknown.stderr
    assert "Traceback" not in unknown.output


# -- vx run --dry -------------------------------------------------------------------------------


def test_dry_run_json_is_the_only_thing_on_stdout(ws: VxWorkspace) -> None:
    result = ws.run_subprocess("run", "build", "lint", "--dry=json", "-F", WEB)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)  # the whole of stdout is one JSON document
    tasks = {task["id"]: task for task in document["tasks"]}
    assert set(tasks) == BUILD_IDS | {f"{WEB}#lint"}
    api = tasks[f"{API}#build"]
    assert api["project"] == API
    assert api["task"] == "build"
    assert shlex.split(api["command"]) == ["python", "-c", "print('building')"]
    assert api["cwd"] == str(ws.path / "packages/api")
    assert api["dependencies"] == [f"{CORE}#build"]
    assert api["dependents"] == [f"{WEB}#build"]
    # null until a cache plugin computes task hashes
    assert api["hash"] is None or re.fullmatch(r"[0-9a-f]{16,}", api["hash"])
    assert api["cache"]["status"] in {"miss", "disabled"}
    assert api["outputs"] == ["dist/**"]
    assert tasks[f"{WEB}#lint"]["command"] == "touch lint.ran"
    assert tasks[f"{WEB}#lint"]["dependencies"] == []
    # Nothing ran and no summary was written.
    assert not list(ws.path.rglob("lint.ran"))
    assert not (ws.path / ".vx" / "runs").exists()


def test_dry_run_json_reports_cache_disabled(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"]}}},
            "packages/a/pyproject.toml": {
                "project": {"name": "a"},
                "tool": {"vx": {"tasks": {"t": {"cmd": "true", "cache": False, "cwd": "sub"}}}},
            },
        }
    )
    (task,) = plan(ws, "t")["tasks"]
    assert task["cache"]["status"] == "disabled"
    assert task["cwd"] == str(ws.path / "packages/a/sub")


def test_dry_run_text(ws: VxWorkspace) -> None:
    result = ws.run("run", "build", "--dry")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("Plan: 3 task(s)")
    for id in BUILD_IDS:
        assert f"\n{id}\n" in out
    assert f"  dependencies {CORE}#build\n" in out
    assert f"  cwd          {ws.path / 'apps/web'}\n" in out
    assert "python -c " in out
    assert "Tasks:" not in out  # nothing ran, so no run summary
    bare = ws.run("run", "--dry", "lint")  # the bare flag before the task names
    assert bare.exit_code == 0, bare.output
    assert bare.stdout.startswith("Plan: 4 task(s)")
    assert not list(ws.path.rglob("lint.ran"))


def test_a_root_input_change_selects_the_projects_whose_tasks_read_it(
    vx_workspace: Make,
) -> None:
    tools = project(TOOLS, build=False)
    tools["tool"]["vx"]["tasks"]["lint"]["inputs"] = ["**", "//ruff.toml"]
    ws = vx_workspace(
        {
            "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"]}}},
            "ruff.toml": "line-length = 100\n",
            "notes.txt": "not an input\n",
            "packages/core/pyproject.toml": project(CORE),
            "packages/tools/pyproject.toml": tools,
            ".gitignore": ".vx/\n",
        }
    )
    git(ws, "init", "-q")
    commit(ws, "initial")
    (ws.path / "notes.txt").write_text("changed\n")
    assert selected(ws, "[HEAD]") == set()
    (ws.path / "ruff.toml").write_text("line-length = 120\n")
    assert selected(ws, "[HEAD]") == {TOOLS}
