"""Ctrl-C and SIGTERM: ``vx run`` stops every task's process group (SIGKILL after the grace
period), leaves no orphan, says "interrupted" and exits 130."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vx.testing import VxWorkspace

Make = Callable[[dict[str, Any]], VxWorkspace]

EXIT_INTERRUPTED = 130


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaps counts as dead)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - pid reused by another user's process
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


class Processes:
    """The vx process under test and the task pids it reported; all killed at teardown."""

    def __init__(self) -> None:
        self.vx: subprocess.Popen[str] | None = None
        self.pids: list[int] = []

    def read_pids(self, directory: Path, count: int, timeout: float = 20.0) -> list[int]:
        """Wait until ``count`` pid files exist in ``directory``; return their pids."""
        deadline = time.monotonic() + timeout
        while True:
            files = sorted(directory.glob("*.pid"))
            if len(files) >= count:
                break
            if self.vx is not None and self.vx.poll() is not None:
                out, err = self.vx.communicate()
                pytest.fail(f"vx exited early with {self.vx.returncode}:\n{out}\n{err}")
            if time.monotonic() > deadline:
                pytest.fail(f"only {len(files)} of {count} pid files after {timeout}s")
            time.sleep(0.02)
        self.pids = [int(path.read_text()) for path in files]
        return self.pids

    def survivors(self, timeout: float = 3.0) -> list[int]:
        deadline = time.monotonic() + timeout
        while True:
            left = [pid for pid in self.pids if alive(pid)]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.05)

    def cleanup(self) -> None:
        if self.vx is not None and self.vx.poll() is None:
            self.vx.kill()
            self.vx.communicate()
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def processes() -> Iterator[Processes]:
    tracked = Processes()
    yield tracked
    tracked.cleanup()


def write_pid(name: str, pid: str) -> str:
    """Shell that writes ``pid`` to ``$VX_WORKSPACE_ROOT/pids/<task id>.<name>.pid`` atomically."""
    target = f'"$VX_WORKSPACE_ROOT/pids/$VX_TASK_ID.{name}'
    return f'echo {pid} > {target}.tmp"; mv {target}.tmp" {target}.pid"; '


# Each task: the shell, two background children, and a grandchild behind another shell.
FAMILY = (
    write_pid("shell", "$$")
    + "sleep 1000 & "
    + write_pid("child1", "$!")
    + "sleep 1000 & "
    + write_pid("child2", "$!")
    + 'sh -c \'sleep 1000 & echo $! > "$VX_WORKSPACE_ROOT/pids/$VX_TASK_ID.grandchild.tmp"; '
    'mv "$VX_WORKSPACE_ROOT/pids/$VX_TASK_ID.grandchild.tmp" '
    '"$VX_WORKSPACE_ROOT/pids/$VX_TASK_ID.grandchild.pid"; wait\' & '
    "wait; touch finished"
)
PIDS_PER_TASK = 4


def family_workspace(vx_workspace: Make, **vx: Any) -> VxWorkspace:
    def project(name: str, tasks: dict[str, Any]) -> dict[str, Any]:
        return {"project": {"name": name}, "tool": {"vx": {"tasks": tasks}}}

    ws = vx_workspace(
        {
            "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"], **vx}}},
            "packages/a/pyproject.toml": project("a", {"serve": {"cmd": FAMILY}}),
            "packages/b/pyproject.toml": project("b", {"serve": {"cmd": FAMILY}}),
            # Not started while a and b hold both slots (-j 2).
            "packages/c/pyproject.toml": project("c", {"serve": {"cmd": "touch finished"}}),
            # Depends on a task that never finishes.
            "packages/d/pyproject.toml": project(
                "d", {"serve": {"cmd": "touch finished", "depends_on": ["a#serve"]}}
            ),
        }
    )
    (ws.path / "pids").mkdir()
    return ws


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupt_stops_every_process_and_reports_it(
    vx_workspace: Make, processes: Processes, signum: signal.Signals
) -> None:
    ws = family_workspace(vx_workspace)
    summary = ws.path / "summary.json"
    processes.vx = ws.popen("run", "serve", "-j", "2", f"--summarize={summary}")
    pids = processes.read_pids(ws.path / "pids", 2 * PIDS_PER_TASK)
    assert all(alive(pid) for pid in pids)

    processes.vx.send_signal(signum)
    out, err = processes.vx.communicate(timeout=30)

    assert processes.vx.returncode == EXIT_INTERRUPTED, out + err
    assert processes.survivors() == [], "task processes outlived vx"
    assert "Traceback" not in out + err
    assert "Interrupted" in out
    document = json.loads(summary.read_text())
    assert document["interrupted"] is True
    assert document["exit_code"] == EXIT_INTERRUPTED
    statuses = {task["id"]: task["status"] for task in document["tasks"]}
    assert statuses == {
        "a#serve": "cancelled",
        "b#serve": "cancelled",
        "c#serve": "skipped",
        "d#serve": "skipped",
    }
    assert not list(ws.path.rglob("finished"))  # nothing completed or started afterwards


def test_task_ignoring_sigterm_is_killed_after_the_grace_period(
    vx_workspace: Make, processes: Processes
) -> None:
    stubborn = "trap '' TERM; " + FAMILY
    ws = vx_workspace(
        {
            "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"], "grace_period": 1}}},
            "packages/a/pyproject.toml": {
                "project": {"name": "a"},
                "tool": {"vx": {"tasks": {"serve": {"cmd": stubborn}}}},
            },
        }
    )
    (ws.path / "pids").mkdir()
    summary = ws.path / "summary.json"
    processes.vx = ws.popen("run", "serve", f"--summarize={summary}")
    processes.read_pids(ws.path / "pids", PIDS_PER_TASK)

    start = time.monotonic()
    processes.vx.send_signal(signal.SIGTERM)
    out, err = processes.vx.communicate(timeout=30)
    took = time.monotonic() - start

    assert processes.vx.returncode == EXIT_INTERRUPTED, out + err
    assert processes.survivors() == [], "a SIGTERM-ignoring task survived"
    assert took >= 0.9, "vx must give the task its grace period before SIGKILL"
    assert json.loads(summary.read_text())["tasks"][0]["status"] == "cancelled"


def test_task_handling_sigterm_gets_to_clean_up(vx_workspace: Make, processes: Processes) -> None:
    graceful = (
        "trap 'touch cleaned; exit 3' TERM; "
        + write_pid("shell", "$$")
        + "while :; do sleep 0.05; done"
    )
    ws = vx_workspace(
        {
            "pyproject.toml": {"tool": {"vx": {"members": ["packages/*"], "grace_period": 5}}},
            "packages/a/pyproject.toml": {
                "project": {"name": "a"},
                "tool": {"vx": {"tasks": {"serve": {"cmd": graceful}}}},
            },
        }
    )
    (ws.path / "pids").mkdir()
    processes.vx = ws.popen("run", "serve")
    processes.read_pids(ws.path / "pids", 1)
    processes.vx.send_signal(signal.SIGINT)
    out, err = processes.vx.communicate(timeout=30)
    assert processes.vx.returncode == EXIT_INTERRUPTED, out + err
    assert (ws.path / "packages/a/cleaned").exists()
    assert processes.survivors() == []
    assert "a#serve: cancelled" in out
