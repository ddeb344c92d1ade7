"""``vx run --summarize[=PATH]``: the run summary JSON."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]


@pytest.fixture
def ws(vx_workspace: Make) -> VxWorkspace:
    tasks = {
        "ok": {"cmd": "sleep 0.1"},
        "bad": {"cmd": "exit 7"},
        "after_bad": {"cmd": "touch after_bad.ran", "depends_on": ["bad"]},
    }
    return vx_workspace(
        {
            "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"]}}},
            "packages/a/pyproject.toml": {
                "project": {"name": "a"},
                "tool": {"vx": {"tasks": tasks}},
            },
            "packages/a/sub/.keep": "",
        }
    )


ARGS = ("ok", "bad", "after_bad", "--continue=dependencies-successful")


def runs_dir_files(ws: VxWorkspace) -> list[Any]:
    runs = ws.path / ".vx" / "runs"
    return sorted(runs.glob("*.json")) if runs.is_dir() else []


def test_default_summary_path_under_dot_vx_runs(ws: VxWorkspace) -> None:
    result = ws.run("run", *ARGS, "--summarize")
    assert result.exit_code == 7
    (path,) = runs_dir_files(ws)
    document = json.loads(path.read_text())
    assert path.name == f"{document['run_id']}.json"
    assert re.fullmatch(r"[\w.-]+", document["run_id"])
    shown = [line for line in result.stdout.splitlines() if line.startswith(" Summary:")]
    assert len(shown) == 1
    assert shown[0].endswith(f".vx/runs/{path.name}")


def test_default_summary_path_is_in_the_workspace_root_from_a_subdirectory(
    ws: VxWorkspace,
) -> None:
    result = ws.run("run", "a#ok", "--summarize", cwd=ws.path / "packages/a/sub")
    assert result.exit_code == 0, result.output
    assert len(runs_dir_files(ws)) == 1
    assert not (ws.path / "packages/a/sub/.vx").exists()


def test_each_run_gets_its_own_summary(ws: VxWorkspace) -> None:
    first = ws.run("run", "a#ok", "--summarize")
    second = ws.run("run", "--summarize", "a#ok")  # bare flag before the task names
    assert first.exit_code == second.exit_code == 0, second.output
    files = runs_dir_files(ws)
    assert len(files) == 2
    ids = {json.loads(path.read_text())["run_id"] for path in files}
    assert len(ids) == 2


def test_explicit_summary_path_relative_to_the_invocation_directory(ws: VxWorkspace) -> None:
    result = ws.run("run", "a#ok", "--summarize=out/summary.json", cwd=ws.path / "packages/a")
    assert result.exit_code == 0, result.output
    path = ws.path / "packages/a/out/summary.json"
    assert json.loads(path.read_text())["exit_code"] == 0
    assert runs_dir_files(ws) == []
    absolute = ws.path / "abs.json"
    ws.run("run", "a#ok", f"--summarize={absolute}")
    assert json.loads(absolute.read_text())["tasks"][0]["id"] == "a#ok"


def test_summary_fields(ws: VxWorkspace) -> None:
    before = time.time()
    result = ws.run("run", *ARGS)  # vx.testing passes --summarize=<its own path>
    after = time.time()
    document = result.summary
    assert document is not None
    assert isinstance(document["run_id"], str)
    assert document["run_id"]
    started = datetime.strptime(document["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert int(before) - 1 <= started.timestamp() <= after + 1
    assert isinstance(document["duration_ms"], int | float)
    assert 0 <= document["duration_ms"] <= (after - before) * 1000 + 1
    assert document["exit_code"] == result.exit_code == 7
    assert document.get("interrupted") is False

    tasks = {task["id"]: task for task in document["tasks"]}
    assert set(tasks) == {"a#ok", "a#bad", "a#after_bad"}
    for task in tasks.values():
        assert set(task) >= {"id", "status", "exit_code", "duration_ms", "cache"}
        assert isinstance(task["cache"], dict)
        assert isinstance(task["duration_ms"], int | float)
    assert tasks["a#ok"]["status"] == "success"
    assert tasks["a#ok"]["exit_code"] == 0
    assert tasks["a#ok"]["duration_ms"] >= 50  # it slept 0.1s
    assert tasks["a#bad"]["status"] == "failed"
    assert tasks["a#bad"]["exit_code"] == 7
    assert tasks["a#after_bad"] | {"cache": None} == tasks["a#after_bad"] | {
        "status": "skipped",
        "exit_code": 1,
        "duration_ms": 0,
        "cache": None,
    }
    assert result.outcomes == {"a#ok": "success", "a#bad": "failed", "a#after_bad": "skipped"}


def test_summary_of_a_successful_run(ws: VxWorkspace) -> None:
    result = ws.run("run", "a#ok")
    assert result.summary is not None
    assert result.summary["exit_code"] == 0
    assert [t["status"] for t in result.summary["tasks"]] == ["success"]
    assert result.summary["tasks"][0]["cache"].get("status") in {"miss", "disabled"}


def test_summary_is_valid_json_written_by_a_subprocess(ws: VxWorkspace) -> None:
    target = ws.path / "sub.json"
    result = ws.run_subprocess("run", *ARGS, f"--summarize={target}")
    assert result.exit_code == 7
    document = json.loads(target.read_text())
    assert {t["id"]: t["status"] for t in document["tasks"]} == {
        "a#ok": "success",
        "a#bad": "failed",
        "a#after_bad": "skipped",
    }
    assert not list(ws.path.glob(".sub.json.*"))  # no temporary file left behind


def test_no_summary_file_without_summarize(ws: VxWorkspace) -> None:
    from vx.__main__ import main

    assert main(["-C", str(ws.path), "-q", "run", "a#ok"]) == 0
    assert runs_dir_files(ws) == []
