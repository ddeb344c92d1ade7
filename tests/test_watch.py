"""``vx watch`` as a user runs it: a child process on a real workspace, edited on disk while
its output is read line by line (with generous timeouts; nothing here measures speed).

Each cycle of the watcher ends with "waiting for changes"; a cycle starts with "changed: ..."
naming the paths. A *sentinel* edit (a file only one task reads) proves a negative: if an
earlier write had been noticed, it would show up before or with the sentinel's cycle.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers import Child, free_port, kill_all, processes_with, vx_argv, wait_gone

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

PYTHON = shlex.quote(sys.executable)
WAITING = "vx watch: waiting for changes"
CACHEDIR_TAG = b"Signature: 8a477f597d28d172789f06886806bc55\n# a cache directory\n"

FILES: dict[str, Any] = {
    "pyproject.toml": '[tool.vx]\nmembers = ["packages/*"]\n',
    ".gitignore": "*.log\nscratch/\n",
    "packages/core/pyproject.toml": (
        '[project]\nname = "core"\n\n[tool.vx.tasks.build]\n'
        'cmd = "mkdir -p dist && cat src/*.txt > dist/out.txt && echo core-built"\n'
        'outputs = ["dist/**"]\n'
    ),
    "packages/core/src/a.txt": "a\n",
    "packages/app/pyproject.toml": (
        '[project]\nname = "app"\ndependencies = ["core"]\n\n[tool.vx.tasks.build]\n'
        'cmd = "echo app-built"\ndepends_on = ["^build"]\n'
    ),
    "packages/app/main.txt": "main\n",
    "packages/other/pyproject.toml": (
        '[project]\nname = "other"\n\n[tool.vx.tasks.build]\ncmd = "echo other-built"\n'
    ),
    "packages/other/sentinel.txt": "0\n",
}


class Watch(Child):
    def cycle(self) -> str:
        """The output of the next complete cycle (up to "waiting for changes")."""
        return "\n".join(self.wait_for(WAITING))


@pytest.fixture
def watch(vx_workspace: Make) -> Iterator[Callable[..., Watch]]:
    started: list[Watch] = []

    def start(*args: str, files: dict[str, Any] | None = None) -> Watch:
        ws = vx_workspace(files or FILES)
        child = Watch(vx_argv("watch", *args), ws.path)
        child.root = ws.path  # type: ignore[attr-defined]
        started.append(child)
        return child

    yield start
    for child in started:
        if child.process.poll() is None:
            child.process.kill()
            child.process.wait()


def edit(path: Path, text: str) -> None:
    path.write_text(text)


def ran(output: str) -> set[str]:
    """Task ids that executed in a cycle's output."""
    return {
        line.split(":", 1)[0]
        for line in output.splitlines()
        if line.endswith(("-built",)) and ":" in line
    }


def test_an_edit_reruns_exactly_the_affected_tasks(watch: Callable[..., Watch]) -> None:
    w = watch("build", "--debounce", "300ms")
    root: Path = w.root  # type: ignore[attr-defined]
    first = w.cycle()
    assert ran(first) == {"core#build", "app#build", "other#build"}

    edit(root / "packages/app/main.txt", "main v2\n")
    second = w.cycle()
    assert "changed: packages/app/main.txt" in second
    assert "running app#build (2 unchanged)" in second
    assert ran(second) == {"app#build"}

    edit(root / "packages/core/src/a.txt", "a v2\n")
    third = w.cycle()
    assert ran(third) == {"core#build", "app#build"}  # core and its dependent
    assert (root / "packages/core/dist/out.txt").read_text() == "a v2\n"
    assert w.stop() == 130


def test_a_burst_of_saves_gives_one_run(watch: Callable[..., Watch]) -> None:
    w = watch("build", "--debounce", "1.5s")
    root: Path = w.root  # type: ignore[attr-defined]
    w.cycle()
    for index in range(10):
        edit(root / "packages/app/main.txt", f"save {index}\n")
        time.sleep(0.02)
    burst = w.cycle()
    assert burst.count("vx watch: running") == 1
    assert ran(burst) == {"app#build"}
    edit(root / "packages/other/sentinel.txt", "1\n")
    after = w.cycle()
    assert "changed: packages/other/sentinel.txt" in after  # no second run of the burst first
    assert ran(after) == {"other#build"}
    w.stop()


def test_outputs_ignored_files_and_vx_state_trigger_nothing(watch: Callable[..., Watch]) -> None:
    w = watch("build", "--debounce", "300ms")
    root: Path = w.root  # type: ignore[attr-defined]
    first = w.cycle()  # core#build wrote packages/core/dist/out.txt meanwhile
    assert "core#build" in ran(first)
    (root / "packages/core/dist/extra.txt").write_text("written like an output\n")
    (root / "debug.log").write_text("git-ignored\n")
    (root / "scratch").mkdir()
    (root / "scratch/notes.txt").write_text("git-ignored directory\n")
    (root / ".vx/state.txt").write_text("vx's own state\n")
    cache_dir = root.parent / "cache-dir"  # tagged first, then moved in whole
    cache_dir.mkdir()
    (cache_dir / "CACHEDIR.TAG").write_bytes(CACHEDIR_TAG)
    cache_dir.rename(root / "packages/app/cache-dir")
    (root / "packages/app/cache-dir/entry").write_text("a cache entry\n")
    (root / "packages/app/__pycache__").mkdir()
    (root / "packages/app/__pycache__/m.pyc").write_bytes(b"\0")
    edit(root / "packages/other/sentinel.txt", "1\n")
    cycle = w.cycle()
    changed = [line for line in cycle.splitlines() if "vx watch: changed:" in line]
    assert changed == ["• vx watch: changed: packages/other/sentinel.txt"], cycle
    assert ran(cycle) == {"other#build"}
    w.stop()


def test_a_config_edit_reloads_the_workspace(watch: Callable[..., Watch]) -> None:
    w = watch("build", "--debounce", "300ms")
    root: Path = w.root  # type: ignore[attr-defined]
    w.cycle()
    app = root / "packages/app/pyproject.toml"
    edit(app, app.read_text().replace("echo app-built", "echo app-v2 && echo app-built"))
    cycle = w.cycle()
    assert "configuration reloaded" in cycle
    assert "app#build: app-v2" in cycle
    assert ran(cycle) == {"app#build"}

    # A new project appears (moved in whole: no pyproject.toml event of its own).
    staging = root.parent / "staging-extra"
    staging.mkdir()
    (staging / "pyproject.toml").write_text(
        '[project]\nname = "extra"\n\n[tool.vx.tasks.build]\ncmd = "echo extra-built"\n'
    )
    staging.rename(root / "packages/extra")
    cycle = w.cycle()
    assert "changed: packages/extra" in cycle
    assert ran(cycle) == {"extra#build"}
    w.stop()


def test_a_config_error_is_shown_and_watching_recovers(watch: Callable[..., Watch]) -> None:
    w = watch("build", "--debounce", "300ms")
    root: Path = w.root  # type: ignore[attr-defined]
    w.cycle()
    app = root / "packages/app/pyproject.toml"
    good = app.read_text()
    edit(app, good.replace("[tool.vx.tasks.build]", "[tool.vx.tasks.build]\ncahce = false"))
    broken = w.wait_for("waiting for a fix")
    text = "\n".join(broken)
    assert f"{app}: tool.vx.tasks.build.cahce: unknown key 'cahce'" in text
    assert "did you mean 'cache'" in text
    assert "Traceback" not in w.output
    assert w.process.poll() is None  # still watching

    edit(app, good.replace("echo app-built", "echo app-fixed && echo app-built"))
    fixed = w.cycle()
    assert "app#build: app-fixed" in fixed
    assert ran(fixed) == {"app#build"}
    assert w.stop() == 130


def test_a_syntax_error_in_the_root_pyproject_recovers(watch: Callable[..., Watch]) -> None:
    w = watch("build", "--debounce", "300ms")
    root: Path = w.root  # type: ignore[attr-defined]
    w.cycle()
    edit(root / "pyproject.toml", '[tool.vx]\nmembers = ["packages/*"\n')
    text = "\n".join(w.wait_for("waiting for a fix"))
    assert "pyproject.toml: invalid TOML" in text
    edit(root / "pyproject.toml", FILES["pyproject.toml"])
    recovered = w.cycle()
    assert "configuration reloaded" in recovered
    w.stop()


def sleeper(marker: str) -> str:
    """A command that runs for ten minutes with ``marker`` in its command line."""
    return f"{PYTHON} -c 'import time; time.sleep(600)' {marker}"


def serving_files(port: int, *, ready: dict[str, Any]) -> dict[str, Any]:
    server = f"{PYTHON} -u -m http.server {port} --bind 127.0.0.1 --directory site"
    e2e = (
        f"{PYTHON} -c \"import urllib.request; print('e2e got', urllib.request.urlopen("
        f"'http://127.0.0.1:{port}/index.html', timeout=10).read().decode().strip())\""
    )
    return {
        "pyproject.toml": {
            "tool": {
                "vx": {
                    "tasks": {
                        "serve": {
                            "cmd": server,
                            "persistent": True,
                            "ready": ready,
                            "ready_timeout": "60s",
                            "inputs": ["site/**"],
                        },
                        "e2e": {
                            "cmd": e2e,
                            "depends_on": ["serve"],
                            "inputs": ["tests/**"],
                            "cache": False,
                        },
                        "slow": {"cmd": sleeper("vx-slow-marker"), "inputs": ["slow/**"]},
                    }
                }
            }
        },
        "site/index.html": "v1\n",
        "tests/e2e.txt": "1\n",
        "slow/input.txt": "1\n",
    }


def server_pids(port: int) -> list[int]:
    return processes_with(f"http.server {port}")


def test_a_persistent_server_stays_up_and_restarts_only_on_its_own_inputs(
    watch: Callable[..., Watch],
) -> None:
    port = free_port()
    try:
        w = watch("e2e", "--debounce", "300ms", files=serving_files(port, ready={"port": port}))
        root: Path = w.root  # type: ignore[attr-defined]
        first = w.cycle()
        assert "e2e got v1" in first
        before = server_pids(port)
        assert before, "the server is not running between runs"

        edit(root / "tests/e2e.txt", "2\n")  # only e2e's input: the server stays up
        second = w.cycle()
        assert "running //#e2e (1 unchanged)" in second
        assert "e2e got v1" in second
        assert server_pids(port) == before

        edit(root / "site/index.html", "v2\n")  # the server's input: restarted, e2e again
        third = w.cycle()
        assert "running //#serve, //#e2e" in third
        assert "e2e got v2" in third
        after = server_pids(port)
        assert after
        assert not set(after) & set(before)
        assert w.stop() == 130
        assert wait_gone(f"http.server {port}") == []
    finally:
        kill_all(f"http.server {port}")


def test_ctrl_c_leaves_no_process_behind(watch: Callable[..., Watch]) -> None:
    port = free_port()
    files = serving_files(port, ready={"http": f"http://127.0.0.1:{port}/index.html"})
    files["pyproject.toml"]["tool"]["vx"]["tasks"]["slow"]["depends_on"] = ["serve"]
    try:
        w = watch("e2e", "slow", "--debounce", "300ms", files=files)
        # The server is up and a slow task (depending on it) is running: interrupt now.
        w.wait_for("e2e got v1")
        deadline = time.monotonic() + 60
        while not processes_with("vx-slow-marker") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert processes_with("vx-slow-marker"), w.output
        assert server_pids(port)
        assert w.stop(signal.SIGINT) == 130
        assert wait_gone("vx-slow-marker") == []
        assert wait_gone(f"http.server {port}") == []
        assert "vx watch: stopping" in w.output
    finally:
        kill_all(f"http.server {port}")
        kill_all("vx-slow-marker")


def test_interrupt_stops_the_run_in_progress(watch: Callable[..., Watch]) -> None:
    files = {
        "pyproject.toml": {
            "tool": {
                "vx": {
                    "tasks": {
                        "slow": {
                            "cmd": "cat input.txt; " + sleeper("vx-interrupt-marker"),
                            "inputs": ["input.txt"],
                        }
                    }
                }
            }
        },
        "input.txt": "first\n",
    }
    try:
        w = watch("slow", "--interrupt", "--debounce", "300ms", files=files)
        root: Path = w.root  # type: ignore[attr-defined]
        w.wait_for("//#slow: first")
        edit(root / "input.txt", "second\n")
        lines = "\n".join(w.wait_for("//#slow: second"))
        assert "vx watch: changed: input.txt: stopping //#slow" in lines
        assert len(processes_with("vx-interrupt-marker")) >= 1
        assert w.stop() == 130
        assert wait_gone("vx-interrupt-marker") == []
    finally:
        kill_all("vx-interrupt-marker")


def _gated(name: str) -> str:
    """Runs until ``scratch/<name>-gate`` exists (git-ignored: creating it changes nothing)."""
    return (
        f"echo {name}-started; while [ ! -f ../../scratch/{name}-gate ]; do sleep 0.05; done; "
        f"echo {name}-built"
    )


def test_interrupt_stops_only_the_tasks_the_changes_affect(watch: Callable[..., Watch]) -> None:
    files = {
        **FILES,
        "packages/app/pyproject.toml": (
            "[project]\nname = 'app'\n\n[tool.vx.tasks.build]\n"
            f"cmd = 'cat main.txt; {_gated('app')}'\n"
        ),
        "packages/other/pyproject.toml": (
            f"[project]\nname = 'other'\n\n[tool.vx.tasks.build]\ncmd = '{_gated('other')}'\n"
        ),
    }
    w = watch(
        "app#build", "other#build", "--interrupt", "-j", "2", "--debounce", "300ms", files=files
    )
    root: Path = w.root  # type: ignore[attr-defined]
    (root / "scratch").mkdir()
    w.wait_for("(app|other)#build: (app|other)-started")
    w.wait_for("(app|other)#build: (app|other)-started")
    edit(root / "packages/app/main.txt", "v2\n")
    w.wait_for("vx watch: changed: packages/app/main.txt: stopping app#build$")
    (root / "scratch/app-gate").write_text("open\n")  # for the follow-up run
    (root / "scratch/other-gate").write_text("open\n")  # other#build was never stopped
    # The run in progress ends (other#build passes, app#build cancelled), then the follow-up
    # runs app#build alone, without waiting for more changes.
    after = w.cycle()
    stopped, _, follow_up = after.partition("vx watch: running app#build")
    assert "other#build: other-built" in stopped
    assert "app#build: app-built" not in stopped
    assert "1 cancelled" in stopped, stopped
    assert "app#build: v2" in follow_up
    assert "app#build: app-built" in follow_up
    assert "other#build:" not in follow_up  # it finished: settled, not re-run
    assert w.output.count("other#build: other-started") == 1


def test_watch_takes_the_run_options_and_rejects_dry(vx_workspace: Make) -> None:
    ws = vx_workspace(FILES)
    result = ws.run("watch", "build", "--dry")
    assert result.exit_code == 2
    assert "vx watch does not take --dry" in result.stderr
    help_text = ws.run("watch", "--help")
    for option in ("--filter", "--concurrency", "--output-logs", "--interrupt", "--debounce"):
        assert option in help_text.stdout


def test_a_missing_watchfiles_names_the_extra(vx_workspace: Make, tmp_path: Path) -> None:
    blocker = tmp_path / "block" / "watchfiles"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('watchfiles is not installed')\n")
    ws = vx_workspace(FILES)
    path = os.pathsep.join(filter(None, [str(blocker.parent), os.environ.get("PYTHONPATH")]))
    result = ws.run_subprocess("watch", "build", env={"PYTHONPATH": path})
    assert result.exit_code == 78
    assert "pip install 'vx-build[watch]'" in result.stderr
    assert "Traceback" not in result.stderr


def test_changes_during_a_run_collapse_into_one_follow_up_run(
    watch: Callable[..., Watch],
) -> None:
    # The task waits for a gate file (in a git-ignored directory: creating it changes nothing)
    # so that the edits surely happen while it runs.
    gated = "echo started; while [ ! -f ../../scratch/gate ]; do sleep 0.05; done; echo app-built"
    files = {
        **FILES,
        "packages/app/pyproject.toml": (
            f"[project]\nname = 'app'\n\n[tool.vx.tasks.build]\ncmd = '{gated}'\n"
        ),
    }
    w = watch("app#build", "--debounce", "300ms", files=files)
    root: Path = w.root  # type: ignore[attr-defined]
    (root / "scratch").mkdir()
    (root / "scratch/gate").write_text("open\n")
    w.cycle()
    (root / "scratch/gate").unlink()
    edit(root / "packages/app/main.txt", "v2\n")
    w.wait_for("app#build: started")
    edit(root / "packages/app/one.txt", "1\n")
    time.sleep(1)  # longer than the debounce: a separate burst
    edit(root / "packages/app/two.txt", "2\n")
    time.sleep(1)
    (root / "scratch/gate").write_text("open\n")
    w.cycle()  # the run that was in progress
    follow_up = w.cycle()
    assert "changed: packages/app/one.txt, packages/app/two.txt" in follow_up
    assert follow_up.count("vx watch: running") == 1
    edit(root / "packages/other/sentinel.txt", "1\n")
    assert "changed: packages/other/sentinel.txt" in w.cycle()  # nothing else came first
    w.stop()


SERVER = """\
import functools, http.server, os, sys, threading, time
port = int(sys.argv[1])
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory="site")
server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
threading.Thread(target=server.serve_forever, daemon=True).start()
print("serving", flush=True)
while not os.path.exists("scratch/stop"):
    time.sleep(0.05)
print("crashing", flush=True)
os._exit(5)
"""


def test_a_server_that_exits_between_runs_starts_with_the_next_run(
    watch: Callable[..., Watch],
) -> None:
    port = free_port()
    files = serving_files(port, ready={"log": "serving"})
    files["server.py"] = SERVER
    files[".gitignore"] = "scratch/\n"
    serve = files["pyproject.toml"]["tool"]["vx"]["tasks"]["serve"]
    serve["cmd"] = f"{PYTHON} server.py {port} vx-crash-marker"
    serve["inputs"] = ["server.py"]
    try:
        w = watch("e2e", "--debounce", "300ms", files=files)
        root: Path = w.root  # type: ignore[attr-defined]
        assert "e2e got v1" in w.cycle()
        (root / "scratch").mkdir()
        (root / "scratch/stop").write_text("now\n")
        w.wait_for("//#serve exited with code 5; it starts again with the next run")
        assert wait_gone("vx-crash-marker") == []
        (root / "scratch/stop").unlink()
        edit(root / "tests/e2e.txt", "2\n")
        again = w.cycle()
        assert "running //#serve, //#e2e" in again
        assert "e2e got v1" in again
        assert processes_with("vx-crash-marker")
        assert w.stop() == 130
        assert wait_gone("vx-crash-marker") == []
    finally:
        kill_all("vx-crash-marker")


def test_a_long_list_of_tasks_is_shortened(watch: Callable[..., Watch]) -> None:
    files: dict[str, Any] = {"pyproject.toml": '[tool.vx]\nmembers = ["packages/*"]\n'}
    for index in range(10):
        files[f"packages/p{index}/pyproject.toml"] = (
            f'[project]\nname = "p{index}"\n\n[tool.vx.tasks.build]\ncmd = "echo p{index}-built"\n'
        )
    w = watch("build", files=files)
    first = w.cycle()
    assert "vx watch: running p0#build, p1#build" in first
    assert "p7#build and 2 more" in first
    assert len(ran(first)) == 10
    w.stop()


def test_each_cycle_keeps_its_own_event_record(watch: Callable[..., Watch]) -> None:
    from vx_history.store import HistoryStore

    w = watch("build", "--debounce", "300ms")
    root: Path = w.root  # type: ignore[attr-defined]
    w.cycle()
    edit(root / "packages/app/main.txt", "main v2\n")
    w.cycle()
    assert w.stop() == 130
    with HistoryStore.open(root) as store:
        runs = store.runs()
        assert len(runs) == 2
        for run in runs:
            stored = store.events(run.run_id)
            assert stored is not None
            events = [json.loads(line) for line in stored.ndjson.splitlines()]
            assert [e["event"] for e in events].count("run_start") == 1
            assert events[0]["run_id"] == events[-1]["run_id"] == run.run_id
        newest = [json.loads(line) for line in store.events(runs[0].run_id).ndjson.splitlines()]  # type: ignore[union-attr]
    outputs = {e["task"] for e in newest if e["event"] == "task_output"}
    assert "app#build" in outputs
