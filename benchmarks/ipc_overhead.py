"""What the runner-aware channel costs per task (docs/runner-aware.md).

1. In the loop, as the runner does it: open a task's channel (directory + asyncio Unix
   server), then close it; and the same with one client call (``add_inputs``) from a thread.
2. End to end: ``vx run`` of N trivial tasks (``true``, cache off) with the channel on and
   off (``VX_RUNNER_AWARE=false``); the difference divided by N.
3. The client's import time (``python -X importtime -c 'import vx_ipc'``).

    python benchmarks/ipc_overhead.py [--tasks 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from vx.ipc import ChannelServer

# Every vx this script starts runs in its own process, as before the warm server
# (benchmarks/run.py --daemon measures the server).
os.environ.setdefault("VX_DAEMON", "0")


async def _in_loop(count: int, root: Path, call: bool) -> float:
    server = ChannelServer(root)
    task: Any = SimpleNamespace(id="p#t")
    start = time.perf_counter()
    for _ in range(count):
        channel = await server.open(task, 0)
        assert channel is not None
        if call:
            env = {"VX_IPC": channel.address}
            await asyncio.to_thread(_client_call, env, str(root / "x"))
        channel.close()
    elapsed = time.perf_counter() - start
    server.close()
    return elapsed / count * 1000


def _client_call(env: dict[str, str], path: str) -> None:
    import vx_ipc

    os.environ.update(env)
    vx_ipc._state.update(sock=None, file=None, dead=False)
    assert vx_ipc.add_inputs([path])


def _workspace(directory: Path, tasks: int) -> None:
    lines = ['[tool.vx]\nmembers = ["p"]\n']
    (directory / "pyproject.toml").write_text("".join(lines))
    project = directory / "p"
    project.mkdir()
    body = ['[project]\nname = "p"\n']
    for index in range(tasks):
        body.append(f'[tool.vx.tasks.t{index}]\ncmd = "true"\ncache = false\n')
    (project / "pyproject.toml").write_text("".join(body))


def _run(directory: Path, on: bool) -> float:
    env = {**os.environ, "VX_RUNNER_AWARE": "true" if on else "false", "VX_CONCURRENCY": "1"}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "vx", "run", *_task_names(directory)],
        cwd=directory,
        env=env,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def _task_names(directory: Path) -> list[str]:
    text = (directory / "p" / "pyproject.toml").read_text()
    prefix = "[tool.vx.tasks."
    return sorted(line[len(prefix) : -1] for line in text.splitlines() if line.startswith(prefix))


def _import_us(runs: int = 15) -> int:
    """The best of ``runs`` cumulative import times of vx_ipc (a loaded machine only ever
    adds to it)."""
    best = None
    for _ in range(runs):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", "import vx_ipc"],
            capture_output=True,
            text=True,
            check=True,
        )
        for line in done.stderr.splitlines():
            if line.rstrip().endswith("| vx_ipc"):
                cumulative = int(line.split("|")[1])
                best = cumulative if best is None else min(best, cumulative)
    if best is None:
        raise SystemExit("vx_ipc not in the import-time report")
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        root = Path(temp)
        bare = min(asyncio.run(_in_loop(500, root, call=False)) for _ in range(args.rounds))
        called = min(asyncio.run(_in_loop(200, root, call=True)) for _ in range(args.rounds))
    print(f"open+close per task, in the loop:            {bare:.3f} ms")
    print(f"open + one add_inputs call + close per task: {called:.3f} ms")
    with tempfile.TemporaryDirectory() as temp:
        directory = Path(temp)
        _workspace(directory, args.tasks)
        _run(directory, on=False)  # warm the workspace cache
        on, off = [], []
        for _ in range(args.rounds):
            off.append(_run(directory, on=False))
            on.append(_run(directory, on=True))
    difference = (statistics.median(on) - statistics.median(off)) / args.tasks * 1000
    print(
        f"vx run of {args.tasks} 'true' tasks (-j1): median on {statistics.median(on):.3f} s, "
        f"off {statistics.median(off):.3f} s -> {difference:+.3f} ms per task"
    )
    print(f"import vx_ipc (cumulative, best of 15, -X importtime): {_import_us()} us")


if __name__ == "__main__":
    main()
