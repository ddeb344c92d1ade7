"""The terminal reporter: ``--output-logs``, ``--log-order``, ``--log-prefix``, GitHub Actions
groups, the end-of-run summary and ``-p no:terminal``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

ROOT = {"tool": {"vx": {"members": ["packages/*"]}}}


def project(name: str, tasks: dict[str, Any]) -> dict[str, Any]:
    return {"project": {"name": name}, "tool": {"vx": {"tasks": tasks}}}


@pytest.fixture
def ok_and_failing(vx_workspace: Make) -> VxWorkspace:
    """``a#build`` succeeds with two lines and an unterminated one; ``b#build`` fails,
    writing to stdout and stderr."""
    return vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a", {"build": {"cmd": "echo a-one; echo a-two; printf a-tail"}}
            ),
            "packages/b/pyproject.toml": project(
                "b", {"build": {"cmd": "echo b-out; echo b-err >&2; exit 1"}}
            ),
        }
    )


def lines(text: str) -> list[str]:
    return text.splitlines()


# -- --output-logs ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["full", "new-only"])
def test_full_and_new_only_stream_every_task_with_prefixes(
    ok_and_failing: VxWorkspace, mode: str
) -> None:
    result = ok_and_failing.run("run", "build", "--continue", f"--output-logs={mode}")
    assert result.exit_code == 1
    out = lines(result.stdout)
    for line in ("a#build: a-one", "a#build: a-two", "a#build: a-tail", "b#build: b-out"):
        assert line in out, result.stdout
    assert "b#build: b-err" in out  # stderr is captured with stdout
    assert any(line.startswith("b#build: failed with exit code 1") for line in out)
    assert "b-err" not in result.stderr


def test_errors_only_shows_only_failed_tasks_output(ok_and_failing: VxWorkspace) -> None:
    result = ok_and_failing.run("run", "build", "--continue", "--output-logs=errors-only")
    assert result.exit_code == 1
    assert "a-one" not in result.stdout
    assert "a-tail" not in result.stdout
    out = lines(result.stdout)
    assert "b#build: b-out" in out
    assert "b#build: b-err" in out
    assert any(line.startswith("b#build: failed with exit code 1") for line in out)


def test_errors_only_with_grouped_order(ok_and_failing: VxWorkspace) -> None:
    result = ok_and_failing.run(
        "run", "build", "--continue", "--output-logs=errors-only", "--log-order=grouped"
    )
    assert "a-one" not in result.stdout
    result.fnmatch_lines(["── b#build*", "b-out", "b-err"], stream="stdout", consecutive=True)


def test_none_hides_task_output_but_keeps_failures_and_summary(
    ok_and_failing: VxWorkspace,
) -> None:
    result = ok_and_failing.run("run", "build", "--continue", "--output-logs=none")
    assert result.exit_code == 1
    for text in ("a-one", "a-tail", "b-out", "b-err"):
        assert text not in result.output
    assert "b#build: failed with exit code 1" in result.stdout
    assert " Failed:   b#build" in lines(result.stdout)
    assert result.outcomes == {"a#build": "success", "b#build": "failed"}


def test_bad_output_logs_value_is_a_usage_error(ok_and_failing: VxWorkspace) -> None:
    result = ok_and_failing.run("run", "build", "--output-logs=most")
    assert result.exit_code == 2
    assert "errors-only" in result.stderr
    assert result.summary is None


# -- --log-order and --log-prefix --------------------------------------------------------------

# a prints a1, waits for b to print b1, then prints a2: streamed output interleaves.
HANDSHAKE = {
    "a": 'R="$VX_WORKSPACE_ROOT"; echo a1; touch "$R/a1"; '
    'while [ ! -e "$R/b1" ]; do sleep 0.02; done; sleep 0.15; echo a2',
    "b": 'R="$VX_WORKSPACE_ROOT"; while [ ! -e "$R/a1" ]; do sleep 0.02; done; sleep 0.15; '
    'echo b1; touch "$R/b1"; echo b2',
}


@pytest.fixture
def interleaving(vx_workspace: Make) -> VxWorkspace:
    return vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("a", {"talk": {"cmd": HANDSHAKE["a"]}}),
            "packages/b/pyproject.toml": project("b", {"talk": {"cmd": HANDSHAKE["b"]}}),
        }
    )


def test_stream_order_prints_lines_as_they_arrive(interleaving: VxWorkspace) -> None:
    result = interleaving.run("run", "talk", "-j", "2", "--log-order=stream")
    assert result.exit_code == 0, result.output
    result.fnmatch_lines(["a#talk: a1", "b#talk: b1", "a#talk: a2"], stream="stdout")


def test_grouped_order_prints_each_tasks_output_together(interleaving: VxWorkspace) -> None:
    result = interleaving.run("run", "talk", "-j", "2", "--log-order=grouped")
    assert result.exit_code == 0, result.output
    for task in ("a", "b"):
        result.fnmatch_lines(
            [f"── {task}#talk*", f"{task}1", f"{task}2"], stream="stdout", consecutive=True
        )
    result.no_fnmatch_line("::group::*")


def test_github_actions_groups(interleaving: VxWorkspace) -> None:
    result = interleaving.run("run", "talk", "-j", "2", env={"GITHUB_ACTIONS": "true"})
    assert result.exit_code == 0, result.output
    for task in ("a", "b"):
        group = [f"::group::{task}#talk", f"{task}1", f"{task}2", "::endgroup::"]
        result.fnmatch_lines(group, stream="stdout", consecutive=True)


def test_github_actions_with_explicit_stream_order_has_no_groups(
    interleaving: VxWorkspace,
) -> None:
    result = interleaving.run(
        "run", "talk", "-j", "2", "--log-order=stream", env={"GITHUB_ACTIONS": "true"}
    )
    assert result.exit_code == 0, result.output
    assert "::group::" not in result.stdout
    result.fnmatch_lines(["a#talk: a1", "b#talk: b1", "a#talk: a2"], stream="stdout")


def test_log_prefix_none_streams_bare_lines(ok_and_failing: VxWorkspace) -> None:
    result = ok_and_failing.run("run", "a#build", "--log-prefix=none")
    assert result.exit_code == 0, result.output
    result.fnmatch_lines(["a-one", "a-two"], stream="stdout", consecutive=True)
    result.fnmatch_lines(["a-tail"], stream="stdout")
    result.no_fnmatch_line("a#build: a-*")


def test_log_prefix_task_in_grouped_order(ok_and_failing: VxWorkspace) -> None:
    result = ok_and_failing.run("run", "a#build", "--log-order=grouped", "--log-prefix=task")
    result.fnmatch_lines(
        ["── a#build*", "a#build: a-one", "a#build: a-two", "a#build: a-tail"],
        stream="stdout",
        consecutive=True,
    )


# -- end-of-run summary ------------------------------------------------------------------------


def test_summary_lines_counts_failed_root_causes_and_summary_path(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a",
                {
                    "ok": {"cmd": "true"},
                    "bad": {"cmd": "exit 2"},
                    "after": {"cmd": "true", "depends_on": ["bad"]},
                },
            ),
        }
    )
    summary = ws.path / "out" / "run.json"
    result = ws.run(
        "run", "ok", "bad", "after", "--continue=dependencies-successful", f"--summarize={summary}"
    )
    assert result.exit_code == 2
    out = lines(result.stdout)
    assert " Tasks:    1 successful, 1 failed, 1 skipped, 3 total" in out
    assert " Cached:   0 cached, 3 total" in out
    assert any(line.startswith(" Time:     ") and line.endswith("s") for line in out)
    # Only the root cause is listed, not the skipped dependent.
    assert " Failed:   a#bad" in out
    shown = next(line for line in out if line.startswith(" Summary:  "))
    assert (Path(os.getcwd()) / shown.split(None, 1)[1]).resolve() == summary
    assert summary.is_file()
    assert "Traceback" not in result.output


def test_summary_of_a_successful_run(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {"pyproject.toml": ROOT, "packages/a/pyproject.toml": project("a", {"ok": {"cmd": "true"}})}
    )
    result = ws.run("run", "ok")
    assert result.exit_code == 0
    out = lines(result.stdout)
    assert out[0].startswith("• vx ")
    assert "running ok" in out[0]
    assert " Tasks:    1 successful, 1 total" in out
    assert not any(line.startswith(" Failed:") for line in out)


def test_no_summary_path_line_without_summarize(
    vx_workspace: Make, capsys: pytest.CaptureFixture[str]
) -> None:
    from vx.__main__ import main

    ws = vx_workspace(
        {"pyproject.toml": ROOT, "packages/a/pyproject.toml": project("a", {"ok": {"cmd": "true"}})}
    )
    assert main(["-C", str(ws.path), "run", "ok"]) == 0  # not through vx.testing: no --summarize
    out = lines(capsys.readouterr().out)
    assert " Tasks:    1 successful, 1 total" in out
    assert not any(line.startswith(" Summary:") for line in out)
    assert not (ws.path / ".vx" / "runs").exists()


def test_quiet_hides_the_run_header(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {"pyproject.toml": ROOT, "packages/a/pyproject.toml": project("a", {"ok": {"cmd": "true"}})}
    )
    result = ws.run("-q", "run", "ok")
    assert result.exit_code == 0
    assert "• vx" not in result.stdout
    assert result.stdout.startswith("vx: 1 successful, 1 total, 0 cached, ")  # the final line
    assert len(lines(result.stdout)) == 1


def test_no_terminal_plugin_silences_the_reporter(ok_and_failing: VxWorkspace) -> None:
    result = ok_and_failing.run("-p", "no:terminal", "run", "build", "--continue")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert "Tasks:" not in result.output
    assert "a-one" not in result.output
    # The run itself and the other plugins are unaffected.
    assert result.outcomes == {"a#build": "success", "b#build": "failed"}


def test_no_terminal_plugin_in_a_subprocess(ok_and_failing: VxWorkspace) -> None:
    result = ok_and_failing.run_subprocess("run", "a#build", "-p", "no:terminal")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert result.outcomes == {"a#build": "success"}
