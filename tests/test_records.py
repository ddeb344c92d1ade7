"""The records plugin: the ``--events`` NDJSON stream, the event record kept in the run store,
``vx replay`` (without side effects) and ``vx report``."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from vx_history.store import SCHEMA_VERSION, HistoryStore, StoredEvents

from vx.testing import VxWorkspace, snapshot_tree

Make = Callable[..., VxWorkspace]

# core#build is cached after the first run; core#fail fails fast, which cancels core#slow
# (running next to it) and skips app#test (it depends on the failure).
FILES = {
    "pyproject.toml": '[tool.vx]\nmembers = ["packages/*"]\nconcurrency = 3\n',
    "packages/core/pyproject.toml": (
        '[project]\nname = "core"\n\n'
        "[tool.vx.tasks.build]\n"
        'cmd = "echo compiling core; mkdir -p dist && echo built > dist/out.txt"\n'
        'outputs = ["dist/**"]\n\n'
        "[tool.vx.tasks.fail]\n"
        'cmd = "echo about to fail; sleep 0.3; echo boom >&2; exit 4"\n'
        'depends_on = ["build"]\n\n'
        "[tool.vx.tasks.slow]\n"
        'cmd = "echo slow start; sleep 30"\n'
        'depends_on = ["build"]\n'
    ),
    "packages/app/pyproject.toml": (
        '[project]\nname = "app"\ndependencies = ["core"]\n\n'
        "[tool.vx.tasks.test]\n"
        'cmd = "echo testing app"\n'
        'depends_on = ["^fail"]\n'
    ),
    "packages/core/src/a.py": "A = 1\n",
}
TASKS = {"core#build", "core#fail", "core#slow", "app#test"}


def _events(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _mixed_run(ws: VxWorkspace) -> str:
    """A run with a cache hit, a failure, a cancellation and a skip; returns its id."""
    first = ws.run("run", "build")
    assert first.exit_code == 0, first.output
    second = ws.run("run", "build", "fail", "slow", "test")
    assert second.exit_code == 4, second.output
    assert second.outcomes == {
        "core#build": "cached",
        "core#fail": "failed",
        "core#slow": "cancelled",
        "app#test": "skipped",
    }
    assert second.summary is not None
    return str(second.summary["run_id"])


def _store(ws: VxWorkspace) -> HistoryStore:
    return HistoryStore.open(ws.path)


# -- the event stream -------------------------------------------------------------------


def test_events_stream_follows_the_schema(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    ws.run("run", "build")
    result = ws.run("run", "build", "fail", "slow", "test", "--events=out/events.ndjson")
    assert result.exit_code == 4
    events = _events(ws.path / "out" / "events.ndjson")
    assert {e["v"] for e in events} == {1}
    assert events[0]["event"] == "run_start"
    assert events[-1]["event"] == "run_finish"
    start = events[0]
    assert start["run_id"] == result.summary["run_id"]  # type: ignore[index]
    assert {t["id"] for t in start["tasks"]} == TASKS
    assert start["root"] == str(ws.path)
    finished = {e["task"]: e for e in events if e["event"] == "task_finish"}
    assert {k: v["status"] for k, v in finished.items()} == {
        "core#build": "cached",
        "core#fail": "failed",
        "core#slow": "cancelled",
        "app#test": "skipped",
    }
    assert finished["core#fail"]["exit_code"] == 4
    assert finished["core#build"]["cache"]["status"] == "hit"
    assert finished["core#build"]["cache"]["source"] == "local"
    assert len(finished["core#fail"]["key"]) == 64
    assert finished["core#fail"]["slot"] in (0, 1, 2)
    assert finished["app#test"]["start_ms"] is None
    caches = {e["task"]: e for e in events if e["event"] == "task_cache"}
    assert caches["core#fail"]["status"] == "miss"
    assert caches["core#fail"]["details"]["reason"]
    output = "".join(e.get("text", "") for e in events if e["event"] == "task_output")
    assert "boom" in output
    assert "compiling core" in output
    assert events[-1]["exit_code"] == 4
    assert events[-1]["counts"] == {"cached": 1, "failed": 1, "cancelled": 1, "skipped": 1}
    # Each task's events come in lifecycle order.
    kinds = [e["event"] for e in events if e.get("task") == "core#fail"]
    assert kinds[0] == "task_start"
    assert kinds[1] == "task_cache"
    assert kinds[-1] == "task_finish"
    times = [e["t_ms"] for e in events]
    assert times == sorted(times)


def test_events_to_stdout_and_without_output(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    result = ws.run_subprocess("-p", "no:terminal", "run", "build", "--events=-")
    assert result.exit_code == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]  # only NDJSON
    assert next(e["event"] for e in events) == "run_start"
    assert any(e["event"] == "task_output" for e in events)
    quiet = ws.run("run", "build", "--force", "--events=e.ndjson", "--events-output=none")
    assert quiet.exit_code == 0
    streamed = _events(ws.path / "e.ndjson")
    assert not [e for e in streamed if e["event"] == "task_output"]
    finish = next(e for e in streamed if e["event"] == "task_finish")
    assert finish["output_bytes"] == len("compiling core\n")
    # The stored record keeps the output even when the stream does not.
    with _store(ws) as store:
        stored = store.events(quiet.summary["run_id"])  # type: ignore[index]
    assert stored is not None
    assert b"compiling core" in stored.ndjson


def test_events_to_stdout_next_to_the_terminal_is_a_usage_error(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    result = ws.run("run", "build", "--events=-")
    assert result.exit_code == 2
    assert "--events=-" in result.stderr
    assert "-p no:terminal" in result.stderr
    assert "Traceback" not in result.stderr


# -- the stored record ------------------------------------------------------------------


def test_every_run_keeps_its_record_with_the_history_retention(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    ws.write({"pyproject.toml": FILES["pyproject.toml"] + "\n[tool.vx.history]\nkeep_runs = 2\n"})
    ids = [ws.run("run", "build").summary["run_id"] for _ in range(3)]  # type: ignore[index]
    with _store(ws) as store:
        assert store.events(ids[0]) is None  # pruned with its run
        record = store.events(ids[2])
        assert record is not None
        assert record.schema == 1
        assert b'"event":"run_finish"' in record.ndjson
    db = sqlite3.connect(ws.path / ".vx" / "history.db")
    assert db.execute("SELECT count(*) FROM run_events").fetchone()[0] == 2
    (stored_size,) = db.execute("SELECT length(data) FROM run_events LIMIT 1").fetchone()
    (raw_size,) = db.execute("SELECT size FROM run_events LIMIT 1").fetchone()
    assert stored_size < raw_size  # compressed


def test_no_record_without_the_plugin_and_a_clear_message(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    run = ws.run("-p", "no:records", "run", "build")
    assert run.exit_code == 0
    replay = ws.run("replay", run.summary["run_id"])  # type: ignore[index]
    assert replay.exit_code == 2
    assert "no stored event record" in replay.stderr
    assert "Traceback" not in replay.stderr
    unknown = ws.run("replay", "19990101T000000-000000")
    assert unknown.exit_code == 2
    assert "no run '19990101T000000-000000'" in unknown.stderr


def test_a_version_1_store_is_migrated(vx_workspace: Make) -> None:
    from vx_history import store as history_store

    ws = vx_workspace(FILES)
    (ws.path / ".vx").mkdir()
    db = sqlite3.connect(ws.path / ".vx" / "history.db")
    db.executescript(history_store._MIGRATIONS[0])
    db.execute(
        "INSERT INTO runs VALUES (1, 'old-run', ?, 5.0, 0, 0, '[]', '[]', NULL, NULL, 1,"
        " NULL, NULL)",
        (time.time() - 60,),
    )
    db.execute(
        "INSERT INTO task_results VALUES (1, 'a#build', 'k1', 'success', 'miss', NULL, 0, 12.5,"
        " 1, 0.0, 12.5, 0)"
    )
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    assert ws.run("run", "build").exit_code == 0
    with _store(ws) as store:
        runs = store.runs()
        assert [r.run_id for r in runs][-1] == "old-run"
        assert store.events("old-run") is None
        assert store.events(runs[0].run_id) is not None
        kept = [t for t in store.task_results() if t.run_id == "old-run"]
        assert [(t.task_id, t.key, t.duration_ms) for t in kept] == [("a#build", "k1", 12.5)]
        assert store.key_outcomes([("a#build", "k1")]) == {("a#build", "k1"): (1, 0, 0)}
    check = sqlite3.connect(ws.path / ".vx" / "history.db")
    assert check.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3
    # Version 3: a run's results are stored together (appended), not one per task's page.
    primary_key = {row[1]: row[5] for row in check.execute("PRAGMA table_info(task_results)")}
    assert (primary_key["run"], primary_key["task_id"]) == (1, 2)


# -- replay -----------------------------------------------------------------------------

_AUDITED = """
import json, sys
spawned = []
def hook(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.forkpty", "os.exec",
                 "os.system", "os.spawn", "pty.spawn"):
        spawned.append(event)
sys.addaudithook(hook)
from vx.__main__ import main
try:
    code = main(sys.argv[2:])
finally:
    with open(sys.argv[1], "w") as f:
        json.dump(spawned, f)
sys.exit(code)
"""


def _audited_vx(ws: VxWorkspace, *args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run vx in a child whose audit hook lists every process it starts."""
    log = ws.path.parent / f"{ws.path.name}-spawned.json"
    completed = subprocess.run(
        [sys.executable, "-c", _AUDITED, str(log), *args],
        cwd=ws.path,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    return completed, json.loads(log.read_text())


def test_the_audit_hook_sees_the_processes_a_run_starts(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    completed, spawned = _audited_vx(ws, "run", "build", "--force")
    assert completed.returncode == 0, completed.stderr
    assert spawned  # the check below would notice a replay that runs a command


def test_replay_renders_the_run_and_touches_nothing(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    run_id = _mixed_run(ws)
    with _store(ws) as store:
        runs_before = store.runs()
        results_before = store.task_results()
    tree_before = snapshot_tree(ws.path)
    completed, spawned = _audited_vx(ws, "replay", run_id[:-2])  # a unique prefix works
    assert completed.returncode == 0, completed.stderr
    assert spawned == []
    out = completed.stdout
    assert f"replay of run {run_id}" in out
    assert "core#build: cache hit, replaying logs" in out
    assert "core#fail: boom" in out
    assert "Failed:   core#fail" in out
    assert "1 cached" in out
    original = _events_of(ws, run_id)[-1]["duration_ms"] / 1000
    assert f"Time:     {original:.2f}s" in out  # the original run's time
    assert snapshot_tree(ws.path) == tree_before  # outputs, cache entries and index, history
    with _store(ws) as store:
        assert store.runs() == runs_before
        assert store.task_results() == results_before


def test_replay_to_one_plugin_regenerates_the_summary(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    run_id = _mixed_run(ws)
    original = json.loads(next((ws.path / ".vx" / "testing").glob("summary-2.json")).read_text())
    result = ws.run("replay", run_id, "--to", "summary", "--summarize=again.json")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""  # the terminal reporter was not a target
    again = json.loads((ws.path / "again.json").read_text())
    assert again == original
    wrong = ws.run("replay", run_id, "--to", "nosuchplugin")
    assert wrong.exit_code == 2
    assert "nosuchplugin" in wrong.stderr
    assert "terminalreporter" in wrong.stderr


class _Observer:
    """A third-party observer: what a replay looks like from the outside."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.outputs: dict[str, bytes] = {}

    def vx_run_start(self, run: Any) -> None:
        self.calls.append(("run_start", (run.run_id, run.started_at, run.replay)))

    def vx_task_finish(self, result: Any, run: Any) -> None:
        self.calls.append(("task_finish", (result.task.id, result.start_ms, result.task.hash)))
        self.outputs[result.task.id] = result.output

    def vx_run_finish(self, run: Any) -> None:
        self.calls.append(("run_finish", (run.exit_code, run.replay)))


def test_an_observer_gets_the_replay_marker_and_original_timings(vx_workspace: Make) -> None:
    import vx

    ws = vx_workspace(FILES)
    run_id = _mixed_run(ws)
    live = _events_of(ws, run_id)
    observer = _Observer()
    for name in ("vx_run_start", "vx_task_finish", "vx_run_finish"):
        vx.hookimpl(getattr(_Observer, name))
    module = type(sys)("replay_observer_plugin")
    module.observer = observer  # type: ignore[attr-defined]
    module.vx_configure = vx.hookimpl(  # type: ignore[attr-defined]
        lambda config: config.pluginmanager.register(observer, "observer")
    )
    sys.modules["replay_observer_plugin"] = module
    try:
        result = ws.run("-p", "replay_observer_plugin", "replay", run_id)
    finally:
        del sys.modules["replay_observer_plugin"]
    assert result.exit_code == 0, result.output
    start = next(e for e in live if e["event"] == "run_start")
    assert observer.calls[0] == ("run_start", (run_id, start["started_at"], True))
    finishes = {e["task"]: e for e in live if e["event"] == "task_finish"}
    for _, (task_id, start_ms, key) in (c for c in observer.calls if c[0] == "task_finish"):
        assert start_ms == finishes[task_id]["start_ms"]
        assert key == finishes[task_id]["key"]
    assert observer.calls[-1] == ("run_finish", (4, True))
    assert b"boom" in observer.outputs["core#fail"]  # the result carries the task's output
    assert observer.outputs["app#test"] == b""


def _events_of(ws: VxWorkspace, run_id: str) -> list[dict[str, Any]]:
    with _store(ws) as store:
        stored = store.events(run_id)
    assert stored is not None
    return [json.loads(line) for line in stored.ndjson.splitlines()]


def _store_record(ws: VxWorkspace, run_id: str, events: list[dict[str, Any]]) -> None:
    """Replace the stored event record of ``run_id`` (a damaged or hand-edited store)."""
    import zlib

    ndjson = "".join(json.dumps(event) + "\n" for event in events).encode()
    db = sqlite3.connect(ws.path / ".vx" / "history.db")
    with db:
        db.execute(
            "UPDATE run_events SET data = ?, size = ? "
            "WHERE run = (SELECT id FROM runs WHERE run_id = ?)",
            (zlib.compress(ndjson), len(ndjson), run_id),
        )
    db.close()


def _damaged(events: list[dict[str, Any]], how: str) -> list[dict[str, Any]]:
    events = json.loads(json.dumps(events))
    finish = next(e for e in events if e["event"] == "task_finish")
    if how == "no task":
        del finish["task"]
    elif how == "unknown task":
        finish["task"] = "ghost#build"
    elif how == "bad status":
        finish["status"] = "exploded"
    elif how == "cache not an object":
        finish["cache"] = "hit"
    elif how == "no tasks":
        del events[0]["tasks"]
    elif how == "undeclared dependency":
        events[0]["tasks"][0]["dependencies"] = ["nowhere#build"]
    elif how == "no run_start":
        events = events[1:]
    return events


@pytest.mark.parametrize(
    "how",
    [
        "no task",
        "unknown task",
        "bad status",
        "cache not an object",
        "no tasks",
        "undeclared dependency",
        "no run_start",
    ],
)
def test_a_damaged_event_record_is_one_clear_error(vx_workspace: Make, how: str) -> None:
    ws = vx_workspace(FILES)
    run_id = _mixed_run(ws)
    _store_record(ws, run_id, _damaged(_events_of(ws, run_id), how))
    for command in ("replay", "report"):
        result = ws.run_subprocess(command, run_id)
        assert result.exit_code == 2, (how, command, result.output)
        assert "Traceback" not in result.stderr, result.stderr
        assert f"run {run_id}" in result.stderr
        assert "the stored record is damaged" in result.stderr


# -- the cost on a warm full hit --------------------------------------------------------


def test_a_warm_full_hit_stores_its_record_without_heavy_imports(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    assert ws.run_subprocess("run", "build").exit_code == 0
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "vx", "run", "build"],
        cwd=ws.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    imported = {line.rpartition("|")[2].strip() for line in completed.stderr.splitlines()}
    assert "vx_records.events" in imported
    for heavy in ("vx_records.replay", "vx_records.report", "pydantic", "asyncio"):
        assert heavy not in imported, heavy
    with _store(ws) as store:
        newest = store.runs(limit=1)[0]
        assert isinstance(store.events(newest.run_id), StoredEvents)


# -- the report -------------------------------------------------------------------------


def test_report_is_one_self_contained_file(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    run_id = _mixed_run(ws)
    result = ws.run("report", "-o", "out/report.html")
    assert result.exit_code == 0, result.output
    assert run_id in result.stdout
    page = (ws.path / "out" / "report.html").read_text()
    lowered = page.lower()
    assert "<script src" not in lowered
    assert "<link" not in lowered
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in page
    data = json.loads(page.split('type="application/json">', 1)[1].split("</script>", 1)[0])
    assert data["run"]["run_id"] == run_id
    statuses = {t["id"]: t["status"] for t in data["tasks"]}
    assert statuses == {
        "core#build": "cached",
        "core#fail": "failed",
        "core#slow": "cancelled",
        "app#test": "skipped",
    }
    assert data["totals"]["hits"] == 1
    assert data["totals"]["time_saved_ms"] > 0
    assert data["critical_path"][0] == "core#build"
    fail = next(t for t in data["tasks"] if t["id"] == "core#fail")
    assert fail["p50_ms"] is None  # its history before this run: none (the run is excluded)
    assert "boom" in fail["log"]
    assert fail["cache"]["reason"]


def test_report_of_a_task_output_cannot_break_out_of_the_page(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": "[tool.vx]\n\n[tool.vx.tasks.evil]\n"
            "cmd = \"echo '</script><script>document.title=1</script>'\"\n"
        }
    )
    assert ws.run("run", "evil").exit_code == 0
    assert ws.run("report", "-o", "r.html").exit_code == 0
    page = (ws.path / "r.html").read_text()
    assert page.count("</script>") == 2  # the data block and the page's script
    assert "\\u003c/script>" in page


def test_report_errors_name_the_fix(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    result = ws.run("report")
    assert result.exit_code == 2
    assert "run history" in result.stderr
    assert "Traceback" not in result.stderr
    # With the history plugin blocked, a stored run is still drawn (without p50s).
    assert ws.run("run", "build").exit_code == 0
    blocked = ws.run("-p", "no:history", "report", "-o", "blocked.html")
    assert blocked.exit_code == 0, blocked.output
    assert (ws.path / "blocked.html").is_file()
    assert not list(ws.path.glob(".blocked.html.*.tmp"))


# -- the report in a real browser -------------------------------------------------------


def _synthetic_store(ws: VxWorkspace, count: int) -> str:
    """A stored run of ``count`` tasks on 8 slots, with every status (written through the
    store's own API, as vx would)."""
    from vx_history.store import RunRecord, TaskRecord

    statuses = ["success", "cached", "cached", "failed", "flaky", "cancelled", "skipped"]
    tasks, lines, results = [], [], []
    clock = [0.0] * 8
    run_id = "20261130T120000-abcdef"
    for index in range(count):
        task_id = f"p{index // 50:03d}#t{index % 50:02d}"
        deps = [f"p{index // 50:03d}#t{index % 50 - 1:02d}"] if index % 50 else []
        tasks.append(
            {
                "id": task_id,
                "project": task_id.split("#")[0],
                "project_path": f"packages/{task_id.split('#')[0]}",
                "name": task_id.split("#")[1],
                "command": "true",
                "cwd": ".",
                "dependencies": deps,
                "outputs": [],
                "cache": True,
            }
        )
        status = statuses[index % len(statuses)]
        slot = index % 8
        duration = 0.0 if status == "skipped" else 5.0 + (index * 7919) % 400
        start = None if status == "skipped" else clock[slot]
        if start is not None:
            clock[slot] += duration
        cache = (
            {
                "status": "hit",
                "source": "remote" if index % 3 else "local",
                "key": "k" * 64,
                "time_saved_ms": 900.0,
            }
            if status == "cached"
            else {
                "status": "miss",
                "key": "k" * 64,
                "reason": "src/a.py changed",
                "changes": ["src/a.py changed"],
            }
        )
        lines.append(
            {
                "v": 1,
                "event": "task_output",
                "t_ms": 1.0,
                "task": task_id,
                "text": f"output of {task_id}\n",
            }
        )
        lines.append(
            {
                "v": 1,
                "event": "task_finish",
                "t_ms": 1.0,
                "task": task_id,
                "status": status,
                "exit_code": 1 if status == "failed" else 0,
                "duration_ms": duration,
                "start_ms": start,
                "slot": None if start is None else slot,
                "attempts": 1,
                "key": "k" * 64,
                "cache": cache,
            }
        )
        results.append(
            TaskRecord(
                run_id,
                task_id,
                "k" * 64,
                status,
                cache["status"],
                None,
                0,
                duration,
                1,
                start,
                None,
                slot,
            )
        )
    head = {
        "v": 1,
        "event": "run_start",
        "t_ms": 0.0,
        "run_id": run_id,
        "started_at": 1796040000.0,
        "vx_version": "0.1.0",
        "root": str(ws.path),
        "argv": ["vx", "run", "build"],
        "task_names": ["build"],
        "concurrency": 8,
        "tasks": tasks,
    }
    tail = {
        "v": 1,
        "event": "run_finish",
        "t_ms": max(clock),
        "run_id": run_id,
        "exit_code": 1,
        "duration_ms": max(clock),
        "interrupted": False,
        "counts": {},
    }
    ndjson = "\n".join(json.dumps(e) for e in [head, *lines, tail]).encode()
    record = RunRecord(
        run_id,
        1796040000.0,
        max(clock),
        1,
        False,
        ["vx", "run", "build"],
        ["build"],
        None,
        None,
        8,
        "ci",
        "0.1.0",
    )
    with HistoryStore.open(ws.path, create=True) as store:
        store.record(record, results, events=StoredEvents(1, ndjson))
    return run_id


@pytest.fixture
def browser(tmp_path: Path) -> Any:
    from chromium import chromium_page

    with chromium_page(tmp_path / "chromium-profile") as page:
        yield page


def test_report_in_chromium(vx_workspace: Make, browser: Any, tmp_path: Path) -> None:
    ws = vx_workspace(FILES)
    run_id = _mixed_run(ws)
    assert ws.run("report", run_id, "-o", "report.html").exit_code == 0
    browser.open((ws.path / "report.html").as_uri())
    assert browser.console_errors() == []
    assert browser.evaluate("document.querySelectorAll('#timeline .bar').length") == 4
    assert browser.evaluate("document.querySelectorAll('#timeline .bar.s-skipped').length") == 1
    assert browser.evaluate("document.querySelectorAll('#timeline .bar.s-cancelled').length") == 1
    assert browser.evaluate("document.querySelectorAll('#timeline .bar.s-cached').length") == 1
    assert browser.evaluate("document.querySelectorAll('#graph-wrap .node').length") == 4
    assert "core#fail" in browser.evaluate("document.querySelector('.bar.s-failed').textContent")
    assert browser.evaluate("document.querySelectorAll('.bar.critical').length") >= 2
    browser.click('.bar[data-id="core#fail"]')
    details = browser.evaluate("document.getElementById('details').innerText")
    assert browser.evaluate("document.getElementById('task-details').dataset.id") == "core#fail"
    assert "failed (exit 4)" in details
    assert "boom" in details
    assert "never ran before" in details or "changed" in details  # why it missed
    # The hit's bar may be 3 px wide: click its node in the graph (a real click there too).
    index = browser.evaluate("document.querySelector('.bar[data-id=\"core#build\"]').dataset.i")
    browser.click(f'#graph-wrap .node[data-i="{index}"]')
    assert browser.evaluate("document.getElementById('task-details').dataset.id") == "core#build"
    details = browser.evaluate("document.getElementById('details').innerText")
    assert "hit from local" in details
    header = browser.evaluate("document.querySelector('header').innerText")
    assert "saved by the cache" in header
    assert "4\ntasks" in header
    shot = tmp_path / "report.png"
    browser.screenshot(shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 10_000
    assert browser.console_errors() == []


def test_a_report_of_2000_tasks_stays_usable(
    vx_workspace: Make, browser: Any, tmp_path: Path
) -> None:
    ws = vx_workspace(FILES)
    run_id = _synthetic_store(ws, 2000)
    assert ws.run("report", run_id, "-o", "big.html").exit_code == 0
    browser.open((ws.path / "big.html").as_uri())
    assert browser.console_errors() == []
    assert browser.evaluate("document.querySelectorAll('#timeline .bar').length") == 2000
    assert browser.evaluate("document.querySelectorAll('#graph-wrap .node').length") == 2000
    # Scroll both panes to the end, zoom in, then click a task near the end.
    browser.evaluate(
        "(() => { for (const id of ['timeline-wrap', 'graph-wrap']) {"
        " const e = document.getElementById(id); e.scrollTop = e.scrollHeight; }"
        " const z = document.getElementById('zoom'); z.value = 20;"
        " z.dispatchEvent(new Event('input')); return 0; })()"
    )
    browser.click('.bar[data-id="p039#t48"]')
    assert browser.evaluate("document.getElementById('task-details').dataset.id") == "p039#t48"
    assert "output of p039#t48" in browser.evaluate("document.getElementById('details').innerText")
    browser.screenshot(tmp_path / "big.png")
    assert (tmp_path / "big.png").stat().st_size > 10_000
    assert browser.console_errors() == []


def test_stored_output_is_bounded_per_task(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": "[tool.vx]\n\n[tool.vx.records]\nmax_task_output = 10\n\n"
            '[tool.vx.tasks.talk]\ncmd = "echo 0123456789abcdefghij"\n',
        }
    )
    run = ws.run("run", "talk", "--events=full.ndjson")
    assert run.exit_code == 0
    streamed = _events(ws.path / "full.ndjson")
    assert "".join(e.get("text", "") for e in streamed) == "0123456789abcdefghij\n"
    stored = _events_of(ws, run.summary["run_id"])  # type: ignore[index]
    assert "".join(e.get("text", "") for e in stored) == "0123456789"
    finish = next(e for e in stored if e["event"] == "task_finish")
    assert finish["output_bytes"] == 21
    assert finish["output_dropped"] == 11
    replay = ws.run("replay", run.summary["run_id"], "--to", "terminal")  # type: ignore[index]
    assert replay.exit_code == 0
    assert "talk: 0123456789" in replay.stdout
    assert "abcdefghij" not in replay.stdout
