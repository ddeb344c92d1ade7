"""The history plugin on real workspaces: what a run records, ``vx history``, priorities from
history, retries and flaky tasks, slow-task lines, and a store that cannot be used."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from typing import Any

import pytest
from vx_history.store import HistoryStore, RunRecord, TaskRecord, history_path

from vx.testing import VxWorkspace

Make = Callable[..., VxWorkspace]
ROOT = '[tool.vx]\nmembers = ["packages/*"]\n'


def project(name: str, tasks: str, deps: tuple[str, ...] = ()) -> dict[str, str]:
    dependencies = ", ".join(f'"{d}"' for d in deps)
    return {
        f"packages/{name}/pyproject.toml": (
            f'[project]\nname = "{name}"\ndependencies = [{dependencies}]\n\n{tasks}'
        )
    }


def task(name: str, cmd: str, **extra: Any) -> str:
    lines = [f"[tool.vx.tasks.{name}]", f"cmd = {json.dumps(cmd)}"]
    lines += [f"{key} = {json.dumps(value)}" for key, value in extra.items()]
    return "\n".join(lines) + "\n"


def tasks_of(ws: VxWorkspace, run_id: str | None = None) -> dict[str, TaskRecord]:
    with HistoryStore.open(ws.path) as store:
        run_id = run_id or store.runs(limit=1)[0].run_id
        return {t.task_id: t for t in store.task_results() if t.run_id == run_id}


def runs_of(ws: VxWorkspace) -> list[RunRecord]:
    with HistoryStore.open(ws.path) as store:
        return store.runs()


def fake_history(ws: VxWorkspace, samples: dict[str, list[float]], key: str = "old") -> None:
    """Record one run per sample index: ``samples[task_id][i]`` seconds, executed, passing."""
    count = max(len(v) for v in samples.values())
    with HistoryStore.open(ws.path, create=True) as store:
        for i in range(count):
            run = RunRecord(
                f"fake-{key}-{i}", time.time() - 3600 + i, 1.0, 0, False, ["vx"], [], None, None, 1,
                None, None,
            )  # fmt: skip
            records = [
                TaskRecord(run.run_id, t, key, "success", "miss", None, 0, v[i] * 1000, 1,
                           0.0, v[i] * 1000, 0)
                for t, v in samples.items()
                if i < len(v)
            ]  # fmt: skip
            store.record(run, records)


# -- the store ---------------------------------------------------------------------


def test_misses_hits_failures_and_skips_are_recorded(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            **project("a", task("build", "echo a > out.txt", outputs=["out.txt"])),
            **project("b", task("build", "exit 3", depends_on=["^build"]), deps=("a",)),
            **project("c", task("build", "echo c", depends_on=["^build"]), deps=("b",)),
        }
    )
    first = ws.run("run", "build", "--continue=dependencies-successful")
    assert first.exit_code == 3
    recorded = tasks_of(ws, first.summary["run_id"])  # type: ignore[index]
    assert {t: r.status for t, r in recorded.items()} == {
        "a#build": "success",
        "b#build": "failed",
        "c#build": "skipped",
    }
    a, b, c = recorded["a#build"], recorded["b#build"], recorded["c#build"]
    assert a.key == first.task("a#build")["hash"]
    assert a.cache_status == "miss"
    assert a.attempts == 1
    assert a.slot is not None
    assert a.start_ms is not None
    assert a.end_ms == pytest.approx(a.start_ms + a.duration_ms)
    assert b.exit_code == 3
    assert b.start_ms is not None
    assert b.start_ms >= a.end_ms
    assert c.slot is None
    assert c.start_ms is None
    assert c.attempts == 0
    [run] = runs_of(ws)
    assert run.exit_code == 3
    assert not run.interrupted
    assert run.argv[:2] == ["vx", "run"] or run.argv[0] == "vx"
    assert run.task_names == ["build"]
    assert run.concurrency is not None
    assert run.host

    second = ws.run("run", "a#build")
    hit = tasks_of(ws, second.summary["run_id"])["a#build"]  # type: ignore[index]
    assert (hit.status, hit.cache_status, hit.cache_source, hit.attempts) == (
        "cached",
        "hit",
        "local",
        0,
    )
    assert hit.key == a.key
    assert len(runs_of(ws)) == 2


def test_a_failure_is_never_cached_and_fail_fast_cancellation_is_recorded(
    vx_workspace: Make,
) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            **project("slow", task("build", "sleep 30")),
            **project("bad", task("build", "sleep 0.3; exit 2")),
        }
    )
    for _ in range(2):
        result = ws.run("run", "build", "-j", "2")
        assert result.exit_code == 2
        recorded = tasks_of(ws, result.summary["run_id"])  # type: ignore[index]
        assert recorded["bad#build"].status == "failed"  # executed again: not cached
        assert recorded["bad#build"].attempts == 1
        assert recorded["slow#build"].status == "cancelled"
        assert {recorded["slow#build"].slot, recorded["bad#build"].slot} == {0, 1}


def test_an_interrupted_run_is_recorded(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            **project("a", task("build", "touch started; sleep 30")),
            **project("b", task("build", "echo b")),
        }
    )
    process = ws.popen("run", "build", "-j", "2")
    started = ws.path / "packages" / "a" / "started"
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    [run] = runs_of(ws)
    assert run.interrupted
    assert run.exit_code == 130
    assert tasks_of(ws)["a#build"].status == "cancelled"


def test_concurrent_runs_all_record(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {"pyproject.toml": ROOT, **project("a", task("build", "sleep 0.2", cache=False))}
    )
    processes = [ws.popen("run", "build") for _ in range(4)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
        assert "warning" not in stderr
    runs = runs_of(ws)
    assert len(runs) == 4
    assert len({run.run_id for run in runs}) == 4
    with HistoryStore.open(ws.path) as store:
        assert len(store.task_results("a#build")) == 4


def test_a_locked_database_is_waited_for(vx_workspace: Make) -> None:
    ws = vx_workspace({"pyproject.toml": ROOT, **project("a", task("build", "true"))})
    assert ws.run("run", "build").exit_code == 0
    holder = sqlite3.connect(history_path(ws.path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    process = ws.popen("run", "build")
    time.sleep(1.0)  # the run finishes its tasks and waits for the write lock
    holder.execute("COMMIT")
    holder.close()
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr
    assert "warning" not in stderr
    assert len(runs_of(ws)) == 2


def test_a_database_locked_too_long_is_one_warning(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT + "\n[tool.vx.history]\nlock_timeout = 0.2\n",
            **project("a", task("build", "echo a")),
        }
    )
    assert ws.run("run", "build").exit_code == 0
    holder = sqlite3.connect(history_path(ws.path), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        result = ws.run_subprocess("run", "build", "--force")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert "run history not recorded" in warnings[0]
    assert "locked" in warnings[0]
    assert len(runs_of(ws)) == 1


def test_a_corrupt_database_is_one_warning_and_is_replaced(vx_workspace: Make) -> None:
    ws = vx_workspace({"pyproject.toml": ROOT, **project("a", task("build", "echo a"))})
    path = history_path(ws.path)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"this is not a database" * 100)
    result = ws.run_subprocess("run", "build")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1, result.stderr
    assert "history.db" in warnings[0]
    assert "moved it to" in warnings[0]
    assert [p.name for p in path.parent.glob("history.db.corrupt-*")]
    assert [run.run_id for run in runs_of(ws)] == [result.summary["run_id"]]  # type: ignore[index]


def test_a_database_from_a_newer_vx_is_one_warning_and_left_alone(vx_workspace: Make) -> None:
    ws = vx_workspace({"pyproject.toml": ROOT, **project("a", task("build", "echo a"))})
    path = history_path(ws.path)
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version = 99")
    db.close()
    result = ws.run_subprocess("run", "build", "--force")
    assert result.exit_code == 0, result.output
    assert result.stderr.count("warning") == 1
    assert "newer" in result.stderr
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == 99
    db.close()
    shown = ws.run("history")
    assert shown.exit_code != 0
    assert "upgrade vx-build" in shown.stderr


def test_retention_keeps_the_newest_runs(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT + "\n[tool.vx.history]\nkeep_runs = 3\n",
            **project("a", task("build", "true", cache=False)),
        }
    )
    ids = [ws.run("run", "build").summary["run_id"] for _ in range(5)]  # type: ignore[index]
    assert [run.run_id for run in runs_of(ws)] == ids[:1:-1]
    with HistoryStore.open(ws.path) as store:
        assert {t.run_id for t in store.task_results()} == set(ids[2:])


def test_read_api_statistics(vx_workspace: Make) -> None:
    ws = vx_workspace({"pyproject.toml": ROOT, **project("a", task("build", "true"))})
    with HistoryStore.open(ws.path, create=True) as store:
        outcomes = [
            ("success", "k1", 1, 1000.0),
            ("failed", "k1", 1, 200.0),
            ("cached", "k1", 0, 1.0),
            ("success", "k2", 1, 3000.0),
            ("flaky", "k3", 2, 4000.0),
        ]
        for i, (status, key, attempts, ms) in enumerate(outcomes):
            run = RunRecord(
                f"r{i}", 1000.0 + i, ms, 0, False, ["vx"], [], None, "main" if i % 2 else "dev",
                1, None, None,
            )  # fmt: skip
            record = TaskRecord(
                run.run_id, "a#build", key, status, "hit" if attempts == 0 else "miss", None,
                1 if status == "failed" else 0, ms, attempts, 0.0, ms, 0,
            )  # fmt: skip
            store.record(run, [record])
        [stats] = store.task_stats("a#*")
        assert (stats.runs, stats.executed) == (5, 4)
        assert (stats.p50_ms, stats.p90_ms, stats.p99_ms) == (1000.0, 4000.0, 4000.0)
        assert stats.success_rate == 0.75
        assert stats.hit_rate == 0.2
        assert stats.flaky == 2  # k1 passed and failed; k3 passed on a retry
        assert stats.last_failure is not None
        assert stats.last_failure.run_id == "r1"
        assert [s.runs for s in store.task_stats("a#build", branch="main")] == [2]
        assert [s.runs for s in store.task_stats("*", limit=2)] == [2]
        assert store.task_stats("b#*") == []
        assert [r.run_id for r in store.runs(since=1003.0)] == ["r4", "r3"]


# -- vx history ------------------------------------------------------------------


def test_vx_history_text_and_json(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            **project("a", task("build", "echo a > out.txt", outputs=["out.txt"])),
            **project("b", task("test", "exit 1", cache=False)),
        }
    )
    subprocess.run(["git", "init", "-q", "-b", "feature", str(ws.path)], check=True)
    empty = ws.run("history")
    assert empty.exit_code == 0
    assert "no runs recorded yet" in empty.stdout
    ws.run("run", "build")
    ws.run("run", "build")
    failed = ws.run("run", "test")
    assert failed.exit_code == 1

    listing = ws.run("history")
    assert listing.exit_code == 0, listing.output
    lines = listing.stdout.splitlines()
    assert lines[0].split()[:4] == ["RUN", "STARTED", "TIME", "EXIT"]
    assert len(lines) == 4
    assert failed.summary["run_id"] in lines[1]
    assert "feature" in lines[1]
    assert " run " in lines[1]
    assert lines[1].endswith(" test")

    document = json.loads(ws.run("history", "--json", "--limit", "2").stdout)
    assert [run["task_names"] for run in document["runs"]] == [["test"], ["build"]]
    assert document["runs"][0]["exit_code"] == 1
    assert document["runs"][0]["git_branch"] == "feature"
    assert json.loads(ws.run("history", "--json", "--branch", "main").stdout) == {"runs": []}

    stats = ws.run("history", "a#*")
    assert stats.exit_code == 0
    row = next(line for line in stats.stdout.splitlines() if line.startswith("a#build"))
    assert row.split()[1:3] == ["2", "1"]
    assert "50%" in row
    tasks = json.loads(ws.run("history", "*", "--json").stdout)["tasks"]
    by_id = {t["task_id"]: t for t in tasks}
    assert by_id["a#build"]["hit_rate"] == 0.5
    assert by_id["a#build"]["p50_ms"] > 0
    assert by_id["b#test"]["success_rate"] == 0.0
    assert by_id["b#test"]["last_failure"]["exit_code"] == 1
    assert json.loads(ws.run("history", "*", "--json", "--since", "1h").stdout)["tasks"]
    old = json.loads(ws.run("history", "*", "--json", "--since", "2001-01-01").stdout)
    assert len(old["tasks"]) == 2

    bad = ws.run("history", "--since", "yesterday")
    assert bad.exit_code != 0
    assert "--since" in bad.stderr
    assert "7d" in bad.stderr
    assert "Traceback" not in bad.output


# -- scheduling ------------------------------------------------------------------


def _start_order(ws: VxWorkspace, *args: str, env: dict[str, str] | None = None) -> list[str]:
    order = ws.path / "order.txt"
    order.unlink(missing_ok=True)
    result = ws.run(*args, env=env)
    assert result.exit_code == 0, result.output
    return order.read_text().split()


def test_priorities_from_history_change_the_start_order(vx_workspace: Make) -> None:
    record = 'echo {} >> "$VX_WORKSPACE_ROOT/order.txt"'
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            **project("a", task("build", record.format("a"))),
            **project("b", task("build", record.format("b"))),
            **project("c", task("build", record.format("c"))),
            **project("d", task("build", record.format("d"), depends_on=["^build"]), deps=("a",)),
        }
    )
    # Default: a has one dependent, so it goes first; then declaration order.
    assert _start_order(ws, "run", "build", "-j", "1", "--force") == ["a", "b", "c", "d"]
    ws.path.joinpath(".vx", "history.db").unlink()
    fake_history(ws, {"a#build": [1.0], "b#build": [5.0], "c#build": [10.0], "d#build": [1.0]})
    # History: c (10 s) > b (5 s) > a then d (1 + 1 s).
    assert _start_order(ws, "run", "build", "-j", "1", "--force") == ["c", "b", "a", "d"]
    # Turned off: the default order again.
    off = {"VX_HISTORY__SCHEDULING": "false"}
    assert _start_order(ws, "run", "build", "-j", "1", "--force", env=off) == ["a", "b", "c", "d"]


def test_expected_cache_hits_cost_nothing(vx_workspace: Make) -> None:
    record = 'echo {} >> "$VX_WORKSPACE_ROOT/order.txt"'
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            **project("a", task("build", record.format("a"))),
            **project("b", task("build", record.format("b"))),
            **project("c", task("build", record.format("c"))),
        }
    )
    plan = json.loads(ws.run("run", "build", "--dry=json").stdout)
    c_key = next(t["hash"] for t in plan["tasks"] if t["id"] == "c#build")
    fake_history(ws, {"a#build": [1.0], "b#build": [5.0]})
    fake_history(ws, {"c#build": [10.0]}, key=c_key)
    # c's current key passed before: expected to be a hit, so it costs 0 and goes last ...
    assert _start_order(ws, "run", "build", "-j", "1") == ["b", "a", "c"]
    # ... unless --force makes it run (same history as before that run).
    history_path(ws.path).unlink()
    fake_history(ws, {"a#build": [1.0], "b#build": [5.0]})
    fake_history(ws, {"c#build": [10.0]}, key=c_key)
    assert _start_order(ws, "run", "build", "-j", "1", "--force") == ["c", "b", "a"]


def test_a_task_without_history_is_estimated_from_tasks_of_the_same_name(
    vx_workspace: Make,
) -> None:
    record = 'echo {} >> "$VX_WORKSPACE_ROOT/order.txt"'
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            **project("a", task("lint", record.format("a-lint"))),
            **project("b", task("test", record.format("b-test"))),
            **project("c", task("test", record.format("c-test"))),
        }
    )
    fake_history(ws, {"a#lint": [3.0], "b#test": [8.0]})
    # c#test has no history: estimated as 8 s like b#test, ahead of a#lint (3 s).
    order = _start_order(ws, "run", "lint", "test", "-j", "1", "--force")
    assert order.index("c-test") < order.index("a-lint")


# -- retries, flaky, slow --------------------------------------------------------

FAIL_ONCE = "if [ -f marker ]; then echo second; else touch marker; echo first; exit 7; fi"


def test_retries_make_a_failing_then_passing_task_flaky(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT + "retries = 1\n",
            **project("a", task("test", FAIL_ONCE, outputs=["marker"])),
            **project("b", task("test", "exit 4", retries=2)),
        }
    )
    result = ws.run("run", "test", "--continue")
    assert result.outcomes == {"a#test": "flaky", "b#test": "failed"}
    assert result.exit_code == 4
    assert result.task("a#test")["attempts"] == 2
    assert result.task("b#test")["attempts"] == 3
    assert result.summary["counts"]["flaky"] == 1  # type: ignore[index]
    assert "a#test: flaky: failed 1 time(s), passed on attempt 2" in result.stdout
    assert " Flaky:    a#test (passed on a retry)" in result.stdout
    assert "1 flaky" in result.stdout
    recorded = tasks_of(ws)
    assert (recorded["a#test"].status, recorded["a#test"].attempts) == ("flaky", 2)
    # The history line: the same key passed (on a retry) and failed.
    assert "a#test passed 1\u00d7 and failed 1\u00d7 with the same inputs" in result.stdout
    # The flaky pass was cached with its passing log only.
    hit = ws.run("run", "a#test")
    assert hit.outcomes == {"a#test": "cached"}
    assert "second" in hit.stdout
    assert "first" not in hit.stdout


def test_a_flaky_task_exits_0_unless_fail_on_flaky(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT + "fail_on_flaky = true\n",
            **project("a", task("test", FAIL_ONCE, retries=1, cache=False)),
        }
    )
    result = ws.run("run", "test")
    assert result.outcomes == {"a#test": "flaky"}
    assert result.exit_code == 1
    ws.write({"pyproject.toml": ROOT})
    (ws.path / "packages" / "a" / "marker").unlink()
    relaxed = ws.run("run", "test")
    assert relaxed.outcomes == {"a#test": "flaky"}
    assert relaxed.exit_code == 0


def test_flaky_tasks_from_history_are_listed(vx_workspace: Make) -> None:
    # The marker is outside the project, so both runs have the same key.
    outside = FAIL_ONCE.replace("marker", '"$VX_WORKSPACE_ROOT/.vx/marker"')
    ws = vx_workspace({"pyproject.toml": ROOT, **project("a", task("test", outside, cache=False))})
    first = ws.run("run", "test")
    assert first.exit_code == 7
    assert "Flaky" not in first.stdout
    second = ws.run("run", "test")
    assert second.exit_code == 0
    assert "a#test passed 1\u00d7 and failed 1\u00d7 with the same inputs" in second.stdout
    stats = json.loads(ws.run("history", "a#test", "--json").stdout)["tasks"][0]
    assert stats["flaky"] == 1
    assert stats["success_rate"] == 0.5


SLOW = ROOT + "\n[tool.vx.history]\nregression_min_seconds = 1.0\n"


# Margins are wide so that a loaded CI machine (a sleep taking longer than asked) cannot flip
# a case: "silent" cases stay silent unless a 0.3 s sleep takes over 1.1 s or a 1.5 s one 28 s.
@pytest.mark.parametrize(
    ("samples", "sleep", "expected"),
    [
        pytest.param([0.1] * 5, "1.5", True, id="slow"),
        pytest.param([0.1] * 4, "1.5", False, id="too-little-history"),
        pytest.param([0.1] * 5, "0.3", False, id="short-difference"),
        pytest.param([0.1] * 4 + [30.0], "1.5", False, id="within-p99"),
    ],
)
def test_the_slow_task_line(
    vx_workspace: Make, samples: list[float], sleep: str, expected: bool
) -> None:
    ws = vx_workspace({"pyproject.toml": SLOW, **project("a", task("build", f"sleep {sleep}"))})
    fake_history(ws, {"a#build": samples})
    result = ws.run("run", "build")
    assert result.exit_code == 0
    slow = [line for line in result.stdout.splitlines() if line.startswith(" Slow:")]
    if expected:
        took = result.task("a#build")["duration_ms"] / 1000
        assert slow == [
            f" Slow:     a#build took {took:.1f}s, {took / 0.1:.1f}\u00d7 its p50 of 0.1s "
            f"(last {len(samples)} runs)"
        ]
    else:
        assert slow == []


def test_disabled_history_records_nothing(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT + "\n[tool.vx.history]\nenabled = false\n",
            **project("a", task("build", "true")),
        }
    )
    assert ws.run("run", "build").exit_code == 0
    assert not history_path(ws.path).exists()


def test_a_persistent_task_is_never_named_slow(vx_workspace: Make) -> None:
    """Its duration is how long it served, which says nothing about its speed."""
    serve = task("serve", "echo listening; sleep 600", persistent=True)
    serve += 'ready = { log = "listening" }\n'
    check = task("check", "sleep 1.5", depends_on=["serve"])
    ws = vx_workspace({"pyproject.toml": SLOW, **project("a", serve + check)})
    fake_history(ws, {"a#serve": [0.1] * 5, "a#check": [1.5] * 5})
    result = ws.run("run", "check")
    assert result.exit_code == 0, result.output
    assert tasks_of(ws)["a#serve"].duration_ms >= 1500  # recorded, as served
    assert [line for line in result.stdout.splitlines() if line.startswith(" Slow:")] == []
