"""Persistent tasks in ``vx run``: a real HTTP server gates an e2e task through each readiness
probe; probe timeouts, early exits and configuration mistakes fail clearly; nothing is left
running afterwards (checked in /proc)."""

from __future__ import annotations

import json
import shlex
import signal
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from servers import Child, free_port, kill_all, processes_with, vx_argv, wait_gone

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

PYTHON = shlex.quote(sys.executable)


def server_cmd(port: int) -> str:
    # -u: unbuffered, so "Serving HTTP on" reaches vx as soon as it is printed.
    return f"{PYTHON} -u -m http.server {port} --bind 127.0.0.1"


def e2e_cmd(port: int) -> str:
    script = (
        "import urllib.request; "
        f"r = urllib.request.urlopen('http://127.0.0.1:{port}/index.html', timeout=10); "
        "print('e2e got', r.status, r.read().decode().strip())"
    )
    return f"{PYTHON} -c {shlex.quote(script)}"


@pytest.fixture
def port() -> Iterator[int]:
    chosen = free_port()
    yield chosen
    kill_all(f"http.server {chosen}")


def workspace(make: Make, port: int, serve: dict[str, Any]) -> VxWorkspace:
    return make(
        {
            "pyproject.toml": {
                "project": {"name": "site"},
                "tool": {
                    "vx": {
                        "tasks": {
                            "serve": {"cmd": server_cmd(port), "persistent": True, **serve},
                            "e2e": {"cmd": e2e_cmd(port), "depends_on": ["serve"]},
                        }
                    }
                },
            },
            "index.html": "hello from the server\n",
        }
    )


@pytest.mark.parametrize("kind", ["port", "log", "http"])
def test_a_server_gates_its_dependent_through_each_probe(
    vx_workspace: Make, port: int, kind: str
) -> None:
    ready = {
        "port": {"port": port},
        "log": {"log": "Serving HTTP on"},
        "http": {"http": f"http://127.0.0.1:{port}/index.html"},
    }[kind]
    ws = workspace(vx_workspace, port, {"ready": ready, "ready_timeout": "60s"})
    result = ws.run_subprocess("run", "e2e")
    assert result.exit_code == 0, result.output
    assert "e2e got 200 hello from the server" in result.stdout
    assert result.outcomes == {"site#serve": "success", "site#e2e": "success"}
    serve = result.task("site#serve")
    assert serve["cache"]["status"] == "disabled"
    assert serve["cache"]["persistent"] == "stopped"
    assert serve["attempts"] == 1
    # The server's own log shows the e2e request: it was up while e2e ran.
    assert 'GET /index.html HTTP/1.1" 200' in result.stdout
    assert wait_gone(f"http.server {port}") == [], "the server outlived the run"


def test_a_persistent_task_is_never_cached(vx_workspace: Make, port: int) -> None:
    ws = workspace(vx_workspace, port, {"ready": {"port": port}, "ready_timeout": "60s"})
    assert ws.run_subprocess("run", "e2e").exit_code == 0
    again = ws.run_subprocess("run", "e2e")
    assert again.exit_code == 0, again.output
    # e2e is cached, but the server it depends on starts again (never restored from cache).
    assert again.outcomes == {"site#serve": "success", "site#e2e": "cached"}
    assert "Serving HTTP on" in again.stdout
    assert wait_gone(f"http.server {port}") == []


def test_the_plan_shows_a_persistent_task_as_never_cached(vx_workspace: Make, port: int) -> None:
    ws = workspace(vx_workspace, port, {"ready": {"port": port}})
    result = ws.run("run", "e2e", "--dry=json")
    assert result.exit_code == 0, result.output
    tasks = {task["id"]: task for task in json.loads(result.stdout)["tasks"]}
    assert tasks["site#serve"]["persistent"] is True
    assert tasks["site#serve"]["cache"]["status"] == "disabled"
    assert tasks["site#e2e"]["persistent"] is False


def test_a_probe_that_times_out_fails_the_server_and_skips_dependents(
    vx_workspace: Make, port: int
) -> None:
    silent = free_port()  # the server listens on `port`; the probe waits for `silent`
    ws = workspace(vx_workspace, port, {"ready": {"port": silent}, "ready_timeout": "1s"})
    result = ws.run_subprocess("run", "e2e")
    assert result.exit_code != 0
    assert result.outcomes == {"site#serve": "failed", "site#e2e": "skipped"}
    assert f"not ready after 1s: nothing accepted a connection on port {silent}" in result.stdout
    assert "its last output lines:" in result.stdout  # the server's log tail
    assert "  | Serving HTTP on" in result.stdout
    assert "e2e got" not in result.stdout
    assert wait_gone(f"http.server {port}") == [], "the timed-out server was not stopped"


def test_a_server_that_exits_early_fails_with_its_log(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "tool": {
                    "vx": {
                        "tasks": {
                            "serve": {
                                "cmd": "echo 'address already in use'; exit 3",
                                "persistent": True,
                                "ready": {"log": "listening"},
                            },
                            "e2e": {"cmd": "echo never", "depends_on": ["serve"]},
                        }
                    }
                }
            }
        }
    )
    result = ws.run_subprocess("run", "e2e")
    assert result.exit_code == 3, result.output
    assert result.outcomes == {"//#serve": "failed", "//#e2e": "skipped"}
    assert "exited with code 3 before it was ready; its last output lines:" in result.stdout
    assert "//#serve:   | address already in use" in result.stdout  # the log tail


def test_a_server_that_crashes_while_serving_fails_the_run(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "tool": {
                    "vx": {
                        "tasks": {
                            "serve": {
                                "cmd": "echo listening; sleep 1; echo crashing; exit 4",
                                "persistent": True,
                                "ready": {"log": "listening"},
                            },
                            "e2e": {"cmd": "sleep 60", "depends_on": ["serve"]},
                        }
                    }
                }
            }
        }
    )
    result = ws.run_subprocess("run", "e2e")
    assert result.exit_code == 4, result.output
    assert result.outcomes == {"//#serve": "failed", "//#e2e": "cancelled"}
    assert "exited with code 4 while it was serving" in result.stdout


WORKER = f"{PYTHON} -c 'import time; time.sleep(300)' vx-worker-marker"
# The job sees the worker running (its command line is in /proc; it may take a moment to
# appear, since nothing waits for it).
JOB = (
    "for i in $(seq 600); do grep -qs 'vx-worker-mark[e]r' /proc/[0-9]*/cmdline "
    "&& echo worker seen && exit 0; sleep 0.1; done; exit 1"
)


def test_without_a_probe_dependents_start_at_once(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "tool": {
                    "vx": {
                        "tasks": {
                            "worker": {
                                "cmd": WORKER,
                                "persistent": True,
                            },
                            "job": {"cmd": JOB, "depends_on": ["worker"]},
                        }
                    }
                }
            }
        }
    )
    result = ws.run_subprocess("run", "job")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"//#worker": "success", "//#job": "success"}
    assert "worker seen" in result.stdout
    assert processes_with("vx-worker-marker") == []


@pytest.mark.parametrize(
    ("task", "key", "fix"),
    [
        ({"cache": True}, "tool.vx.tasks.serve.cache", "remove `cache = true`"),
        ({"outputs": ["dist/**"]}, "tool.vx.tasks.serve.outputs", "remove `outputs`"),
    ],
)
def test_persistent_with_cache_or_outputs_is_a_config_error(
    vx_workspace: Make, task: dict[str, Any], key: str, fix: str
) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "tool": {"vx": {"tasks": {"serve": {"cmd": "true", "persistent": True, **task}}}}
            }
        }
    )
    result = ws.run("run", "serve")
    assert result.exit_code == 78
    assert f"pyproject.toml: {key}: " in result.stderr
    assert fix in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("task", "message"),
    [
        ({"persistent": True, "ready": {"port": 1, "log": "x"}}, "set exactly one of port"),
        ({"persistent": True, "ready": {"prot": 1}}, "unknown key 'prot' (did you mean 'port'?)"),
        ({"persistent": True, "ready_timeout": "soon"}, "a duration like '30s'"),
        ({"ready": {"port": 8000}}, "only applies to persistent tasks"),
    ],
)
def test_readiness_mistakes_name_the_key(
    vx_workspace: Make, task: dict[str, Any], message: str
) -> None:
    ws = vx_workspace(
        {"pyproject.toml": {"tool": {"vx": {"tasks": {"serve": {"cmd": "true", **task}}}}}}
    )
    result = ws.run("run", "serve")
    assert result.exit_code == 78, result.output
    assert "tool.vx.tasks.serve.ready" in result.stderr
    assert message in result.stderr


def test_several_servers_keep_prefixed_readable_output(vx_workspace: Make) -> None:
    def noisy(name: str) -> dict[str, Any]:
        script = (
            "import time\n"
            f"print('{name} ready', flush=True)\n"
            f"for i in range(1000): print('{name} line', i, flush=True); time.sleep(0.01)\n"
        )
        return {
            "cmd": [sys.executable, "-c", script],
            "persistent": True,
            "ready": {"log": f"{name} ready"},
        }

    ws = vx_workspace(
        {
            "pyproject.toml": {
                "tool": {
                    "vx": {
                        "tasks": {
                            "api": noisy("api"),
                            "web": noisy("web"),
                            "e2e": {"cmd": "sleep 1; echo e2e done", "depends_on": ["api", "web"]},
                        }
                    }
                }
            }
        }
    )
    result = ws.run_subprocess("run", "e2e")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"//#api": "success", "//#web": "success", "//#e2e": "success"}
    lines = result.stdout.splitlines()
    api = [line for line in lines if "api line" in line]
    web = [line for line in lines if "web line" in line]
    assert api, result.stdout
    assert web, result.stdout
    assert all(line.startswith("//#api: api line ") for line in api)
    assert all(line.startswith("//#web: web line ") for line in web)

    grouped = ws.run_subprocess("run", "e2e", "--log-order=grouped")
    assert grouped.exit_code == 0, grouped.output
    # Each server's whole log comes as one block under its heading, when it is stopped.
    text = grouped.stdout
    assert text.index("── //#api") < text.index("api ready") < text.index("api line 0")
    assert text.index("── //#web") < text.index("web ready") < text.index("web line 0")


def test_a_server_asked_for_itself_runs_until_ctrl_c(vx_workspace: Make, port: int) -> None:
    ws = workspace(vx_workspace, port, {"ready": {"port": port}, "ready_timeout": "60s"})
    run = Child(vx_argv("run", "serve"), ws.path)
    try:
        run.wait_for("Serving HTTP on")
        time.sleep(1)  # nothing needs the server, yet it stays up
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/index.html", timeout=10) as r:
            assert r.read() == b"hello from the server\n"
        assert run.process.poll() is None
        assert run.stop(signal.SIGINT) == 130
        assert "Interrupted" in run.output
        assert wait_gone(f"http.server {port}") == []
    finally:
        if run.process.poll() is None:
            run.process.kill()
