"""The Dask executor against real processes: a ``dask scheduler`` and ``dask worker``s on
loopback, each worker inside its own git clone of a fixture repository, and the real
``turborepo-remote-cache`` server as the shared cache.

One cluster and one server serve the whole module (start-up is the expensive part); tests
that break a cluster (stopping the scheduler) start their own small one.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

pytest.register_assert_rewrite("remote_servers")
from remote_servers import (  # noqa: E402
    STARTUP_TIMEOUT,
    TurboLauncher,
    TurboServer,
    _accepting,
    closed_port_url,
    free_port,
)

from vx.testing import RunResult, VxWorkspace, snapshot_tree, write_files  # noqa: E402

pytest_plugins = ["remote_servers"]
pytestmark = pytest.mark.slow

DASK = Path(sys.executable).parent / "dask"

ROOT = """\
[tool.vx]
members = ["packages/*"]
"""
LIB = """\
[project]
name = "lib"

[tool.vx.tasks.build]
cmd = "mkdir -p dist && echo lib-$(cat src/lib.txt) > dist/lib.txt && echo built lib"
outputs = ["dist/**"]
env = ["VX_TEST_SALT"]
"""
APP = """\
[project]
name = "app"
dependencies = ["lib"]

[tool.vx.tasks.build]
cmd = "mkdir -p dist && cat ../lib/dist/lib.txt src/app.txt > dist/app.txt && echo built app"
depends_on = ["^build"]
outputs = ["dist/**"]
env = ["VX_TEST_SALT"]

[tool.vx.tasks.test]
cmd = "cat dist/app.txt && echo tested app"
depends_on = ["build"]

[tool.vx.tasks.fast]
cmd = "echo on a fast machine"
requires = ["fast"]

[tool.vx.tasks.channel]
cmd = "echo channel=[$VX_IPC]"

[tool.vx.tasks.gpu]
cmd = "echo never runs"
requires = ["gpu"]

[tool.vx.tasks.hang]
cmd = "echo $$ > $VX_TEST_MARKS/shell.pid && sleep 60"
env = ["VX_TEST_MARKS"]

[tool.vx.tasks.here]
cmd = "pwd > $VX_TEST_MARKS/here.txt"
env = ["VX_TEST_MARKS"]
cache = false

[tool.vx.tasks.flaky]
# The first attempt reports its worker (the shell's parent) and hangs until the test kills
# that worker; the retry finds the marker and completes.
cmd = '''
if [ -e $VX_TEST_MARKS/killed ]; then echo second attempt; else
  echo $$ > $VX_TEST_MARKS/shell.pid; echo $PPID > $VX_TEST_MARKS/worker.pid; sleep 60; fi
mkdir -p dist && echo flaky > dist/flaky.txt
'''
env = ["VX_TEST_MARKS"]
outputs = ["dist/flaky.txt"]
"""
FILES = {
    "pyproject.toml": ROOT,
    ".gitignore": "dist/\n.vx/\n",
    "packages/lib/pyproject.toml": LIB,
    "packages/lib/src/lib.txt": "1\n",
    "packages/app/pyproject.toml": APP,
    "packages/app/src/app.txt": "app\n",
}
GIT_ENV = {
    "GIT_AUTHOR_NAME": "vx",
    "GIT_AUTHOR_EMAIL": "vx@example.invalid",
    "GIT_COMMITTER_NAME": "vx",
    "GIT_COMMITTER_EMAIL": "vx@example.invalid",
}


def git(cwd: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **GIT_ENV},
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def kill_group(pid_file: Path) -> None:
    """Stop a task's shell (it leads its own process group) left running by a dead worker."""
    with contextlib.suppress(OSError, ValueError):
        os.killpg(int(pid_file.read_text()), signal.SIGKILL)


def wait_for_file(path: Path, process: subprocess.Popen[str], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not (path.is_file() and path.read_text().strip()):
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"vx exited early ({process.returncode}):\n{out}\n{err}")
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"{path} did not appear within {timeout}s")
        time.sleep(0.05)


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: Path | None = None

    def close(self) -> None:
        for worker in self.workers.values():
            stop(worker)
        stop(self.scheduler)

    def log(self) -> str:
        assert self.logs is not None
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.logs.glob("*.log"))


def start_cluster(
    base: Path, origin: Path, workers: dict[str, str], server: TurboServer
) -> Cluster:
    """A scheduler and one worker per ``name -> resources`` ("" for none), each in its own
    clone of ``origin`` with its local directory outside the clone."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    logs = base / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    common = ["--dashboard-address", "127.0.0.1:0"]
    with open(logs / "scheduler.log", "wb") as log:
        scheduler = subprocess.Popen(
            [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), *common],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=base,
        )
    cluster = Cluster(address, scheduler, logs=logs)
    for name, resources in workers.items():
        checkout = base / name
        git(base, "clone", "-q", str(origin), str(checkout))
        argv = [str(DASK), "worker", address, "--name", name, "--nthreads", "1", *common]
        argv += ["--local-directory", str(base / f"{name}-dask"), "--host", "127.0.0.1"]
        if resources:
            argv += ["--resources", resources]
        with open(logs / f"{name}.log", "wb") as log:
            cluster.workers[name] = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=checkout,
                env={**os.environ, "VX_REMOTE_CACHE_TOKEN": server.token},
            )
    from distributed import Client

    try:
        # A loaded machine can take many seconds to import distributed in each process.
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not _accepting(port):
            if scheduler.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"dask scheduler did not start:\n{cluster.log()}", pytrace=False)
            time.sleep(0.1)
        with Client(address, timeout=STARTUP_TIMEOUT) as client:
            client.wait_for_workers(len(workers), timeout=STARTUP_TIMEOUT)
    except BaseException:
        cluster.close()
        raise
    return cluster


@dataclass
class Setup:
    origin: Path
    server: TurboServer
    cluster: Cluster
    base: Path
    clones: int = 0

    def env(self, marks: Path | None = None) -> dict[str, str]:
        env = {
            "VX_REMOTE_CACHE_URL": self.server.url,
            "VX_REMOTE_CACHE_TEAM": self.server.team,
            "VX_REMOTE_CACHE_TOKEN": self.server.token,
        }
        if marks is not None:
            env["VX_TEST_MARKS"] = str(marks)
        return env

    def clone(self, revision: str | None = None) -> VxWorkspace:
        self.clones += 1
        path = self.base / f"client{self.clones}"
        git(self.base, "clone", "-q", str(self.origin), str(path))
        if revision is not None:
            git(path, "checkout", "-q", revision)
        return VxWorkspace(path)


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
    turbo_launcher: TurboLauncher,
) -> Iterator[Setup]:
    base = tmp_path_factory.mktemp("dask")
    origin = base / "origin"
    write_files(origin, FILES)
    git(origin, "init", "-q", "-b", "main")
    git(origin, "add", "-A")
    git(origin, "commit", "-q", "-m", "fixture")
    server = turbo_launcher.take(signed=False)
    try:
        cluster = start_cluster(base, origin, {"w1": "", "w2": "fast=1"}, server)
    except Exception:
        server.stop()
        raise
    yield Setup(origin, server, cluster, base)
    cluster.close()
    server.stop()


def dask_run(setup: Setup, ws: VxWorkspace, *args: str, **env: str) -> RunResult:
    result = ws.run_subprocess(
        "run",
        *args,
        f"--executor=dask://{setup.cluster.address.removeprefix('tcp://')}",
        env={**setup.env(), **env},
        timeout=120,
    )
    return result


def outputs(ws: VxWorkspace) -> dict[str, Any]:
    return {
        name: tree
        for name in ("packages/lib/dist", "packages/app/dist")
        for tree in [snapshot_tree(ws.path / name)]
    }


def test_a_distributed_run_gives_the_outputs_of_a_local_run(setup: Setup) -> None:
    ws = setup.clone()
    result = dask_run(setup, ws, "test")
    assert result.exit_code == 0, result.output + setup.cluster.log()
    assert result.outcomes == dict.fromkeys(["lib#build", "app#build", "app#test"], "success")
    workers = {entry["id"]: entry.get("worker") for entry in result.summary["tasks"]}
    assert set(workers.values()) <= {"w1", "w2"}, workers
    assert "built lib" in result.stdout  # live output from the workers
    assert "tested app" in result.stdout
    local = setup.clone()
    assert local.run_subprocess("run", "test").exit_code == 0
    assert outputs(ws) == outputs(local)
    assert (ws.path / "packages/app/dist/app.txt").read_text() == "lib-1\napp\n"
    # Every executed task's artifact is in the shared cache, keyed like a local run's.
    keys = {entry["hash"] for entry in result.summary["tasks"]}
    assert keys <= set(setup.server.stored_keys())
    # The client adopted them: a second run here is all local hits.
    again = ws.run_subprocess("run", "test", env=setup.env())
    assert again.outcomes == dict.fromkeys(["lib#build", "app#build", "app#test"], "cached")


def test_a_task_on_a_worker_gets_no_runner_aware_channel(setup: Setup) -> None:
    """The channel is a socket on the client's machine: a worker's task must not be handed
    its path (its tools would warn that they cannot reach it)."""
    ws = setup.clone()
    result = dask_run(setup, ws, "channel")
    assert result.exit_code == 0, result.output + setup.cluster.log()
    assert result.summary["tasks"][0].get("worker") in {"w1", "w2"}  # type: ignore[index]
    assert "app#channel: channel=[]" in result.stdout


def test_a_second_run_is_all_hits_without_contacting_the_cluster(setup: Setup) -> None:
    first = setup.clone()
    assert dask_run(setup, first, "build").exit_code == 0
    ws = setup.clone()  # a new machine: empty local cache, outputs absent
    unreachable = closed_port_url().removeprefix("http://")
    result = ws.run_subprocess("run", "build", f"--executor=dask://{unreachable}", env=setup.env())
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"lib#build": "cached", "app#build": "cached"}
    assert (ws.path / "packages/app/dist/app.txt").read_text() == "lib-1\napp\n"


def test_outputs_requested_restores_only_the_named_tasks_outputs(setup: Setup) -> None:
    ws = setup.clone()
    result = dask_run(
        setup, ws, "app#build", VX_TEST_SALT="requested", VX_DASK__OUTPUTS="requested"
    )
    assert result.outcomes == {"lib#build": "success", "app#build": "success"}, result.output
    assert (ws.path / "packages/app/dist/app.txt").read_text() == "lib-1\napp\n"
    assert not (ws.path / "packages/lib/dist").exists()  # stays in the remote cache


def test_an_unknown_executor_is_a_usage_error(setup: Setup) -> None:
    result = setup.clone().run_subprocess("run", "build", "--executor=ssh://box")
    assert result.exit_code == 2, result.output
    assert "'ssh://box' is not a Dask scheduler address" in result.stderr
    assert "Traceback" not in result.output


def test_an_unreachable_scheduler_fails_the_tasks_that_must_run(setup: Setup) -> None:
    unreachable = closed_port_url().removeprefix("http://")
    result = setup.clone().run_subprocess(
        "run",
        "build",
        f"--executor=dask://{unreachable}",
        env={**setup.env(), "VX_DASK__CONNECT_TIMEOUT": "1", "VX_TEST_SALT": "unreachable"},
    )
    assert result.exit_code == 1, result.output
    assert f"cannot reach the Dask scheduler at tcp://{unreachable} within 1s" in result.stdout
    assert result.outcomes == {"lib#build": "failed", "app#build": "skipped"}
    assert "Traceback" not in result.output


def test_uncached_tasks_run_on_the_client(setup: Setup, tmp_path: Path) -> None:
    ws = setup.clone()
    result = dask_run(setup, ws, "app#here", VX_TEST_MARKS=str(tmp_path))
    assert result.exit_code == 0, result.output
    assert "worker" not in result.task("app#here")
    assert (tmp_path / "here.txt").read_text().strip() == str(ws.path / "packages/app")


def test_requires_maps_to_worker_resources(setup: Setup) -> None:
    result = dask_run(setup, setup.clone(), "app#fast")
    assert result.exit_code == 0, result.output
    assert result.task("app#fast")["worker"] == "w2"
    assert "on a fast machine" in result.stdout


def test_a_task_no_worker_can_run_fails_clearly(setup: Setup) -> None:
    result = dask_run(setup, setup.clone(), "app#gpu")
    assert result.exit_code == 1, result.output
    assert "no Dask worker offers the resources this task requires (gpu=1)" in result.output
    assert "w2: fast=1" in result.output


def test_workers_at_another_revision_are_refused(setup: Setup) -> None:
    ws = setup.clone()
    (ws.path / "packages/lib/src/lib.txt").write_text("2\n")
    git(ws.path, "commit", "-q", "-am", "not on the workers")
    result = dask_run(setup, ws, "build")
    assert result.exit_code == 1, result.output
    assert "no Dask worker" in result.output
    head = git(ws.path, "rev-parse", "HEAD")[:12]
    assert f"the client's is {head}" in result.output
    assert "w1" in result.output or "127.0.0.1" in result.output
    assert not (ws.path / "packages/lib/dist").exists()


def test_uncommitted_changes_refuse_a_distributed_run(setup: Setup) -> None:
    ws = setup.clone()
    (ws.path / "packages/lib/src/lib.txt").write_text("dirty\n")
    result = dask_run(setup, ws, "build")
    assert result.exit_code == 78, result.output
    assert "uncommitted changes" in result.stderr
    assert "packages/lib/src/lib.txt" in result.stderr
    assert "Traceback" not in result.output


def test_a_distributed_run_needs_a_writable_remote_cache(setup: Setup) -> None:
    ws = setup.clone()
    address = setup.cluster.address.removeprefix("tcp://")
    result = ws.run_subprocess("run", "build", f"--executor=dask://{address}")
    assert result.exit_code == 78, result.output
    assert "share dependency outputs and results through the remote cache" in result.stderr
    assert "no remote cache URL" in result.stderr
    read_only = ws.run_subprocess(
        "run",
        "build",
        f"--executor=dask://{address}",
        "--cache=local:rw,remote:r",
        env=setup.env(),
    )
    assert read_only.exit_code == 2, read_only.output
    assert "keep remote:rw" in read_only.stderr


def test_a_missing_dask_install_names_the_extra(setup: Setup) -> None:
    ws = setup.clone()
    code = (
        "import sys; sys.modules['distributed'] = None; from vx.__main__ import main; "
        f"sys.exit(main(['-C', {str(ws.path)!r}, 'run', 'build', '--executor=dask://h:1']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, **setup.env()},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 78, done.stdout + done.stderr
    assert "pip install 'vx-build[dask]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_worker_killed_mid_task_is_replaced(setup: Setup, tmp_path: Path) -> None:
    ws = setup.clone()
    address = setup.cluster.address.removeprefix("tcp://")
    process = ws.popen("run", "app#flaky", f"--executor=dask://{address}", env=setup.env(tmp_path))
    try:
        wait_for_file(tmp_path / "worker.pid", process)
        (tmp_path / "killed").touch()
        os.kill(int((tmp_path / "worker.pid").read_text()), signal.SIGKILL)
        out, err = process.communicate(timeout=120)
    finally:
        kill_group(tmp_path / "shell.pid")
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, out + err + setup.cluster.log()
    # The retry ran (its notice, "was lost while running this task", is best-effort: the
    # killed worker's start event can die with it before reaching the scheduler).
    assert "second attempt" in out
    assert (ws.path / "packages/app/dist/flaky.txt").read_text() == "flaky\n"


def test_ctrl_c_cancels_the_remote_task(setup: Setup, tmp_path: Path) -> None:
    ws = setup.clone()
    address = setup.cluster.address.removeprefix("tcp://")
    process = ws.popen("run", "app#hang", f"--executor=dask://{address}", env=setup.env(tmp_path))
    try:
        wait_for_file(tmp_path / "shell.pid", process)
        shell = int((tmp_path / "shell.pid").read_text())
        assert alive(shell)
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=60)
        deadline = time.monotonic() + 15
        while alive(shell) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(shell), "the task kept running on the worker"
    finally:
        kill_group(tmp_path / "shell.pid")
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, out + err


def test_the_scheduler_going_away_fails_the_run_cleanly(setup: Setup, tmp_path: Path) -> None:
    cluster = start_cluster(tmp_path, setup.origin, {"solo": ""}, setup.server)
    try:
        ws = setup.clone()
        address = cluster.address.removeprefix("tcp://")
        marks = tmp_path / "marks"
        marks.mkdir()
        process = ws.popen("run", "app#hang", f"--executor=dask://{address}", env=setup.env(marks))
        try:
            wait_for_file(marks / "shell.pid", process)
            cluster.scheduler.kill()
            out, err = process.communicate(timeout=90)
        finally:
            kill_group(marks / "shell.pid")
            if process.poll() is None:
                process.kill()
    finally:
        cluster.close()
    assert process.returncode == 1, out + err
    assert "lost the connection to the Dask scheduler" in out + err
    assert "Traceback" not in out + err
    assert "app#hang: failed with exit code 1" in out
