"""``vx watch`` on a synthetic monorepo: how long from a save to the re-run, and how raw
watchfiles batches a burst of saves (the reason ``vx watch`` debounces on its own).

    python benchmarks/watch.py --projects 200 --edits 10

Prints one JSON document. Nothing here asserts anything about time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# Every vx this script starts runs in its own process, as before the warm server
# (benchmarks/run.py --daemon measures the server).
os.environ.setdefault("VX_DAEMON", "0")

sys.path.insert(0, str(Path(__file__).parent))

from generate import Shape, generate, project_name


def _reader(process: subprocess.Popen[str], lines: queue.Queue[tuple[float, str]]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put((time.perf_counter(), line.rstrip("\n")))


def _until(lines: queue.Queue[tuple[float, str]], text: str, timeout: float = 300) -> float:
    deadline = time.monotonic() + timeout
    while True:
        stamp, line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
        if text in line:
            return stamp


def save_to_run(root: Path, projects: int, edits: int, debounce: str) -> dict[str, object]:
    """Median seconds from a save to the "running" line and to the end of that run."""
    process = subprocess.Popen(
        [sys.executable, "-m", "vx", "watch", "build", "--debounce", debounce, "-q"],
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines: queue.Queue[tuple[float, str]] = queue.Queue()
    threading.Thread(target=_reader, args=(process, lines), daemon=True).start()
    try:
        first_start = time.perf_counter()
        first_end = _until(lines, "waiting for changes")
        # A leaf: the last project (no dependents), so one task runs per edit.
        leaf = root / "packages" / project_name(projects - 1) / "src" / "m000.py"
        to_running: list[float] = []
        to_done: list[float] = []
        for index in range(edits):
            leaf.write_text(leaf.read_text() + f"edit_{index} = {index}\n")
            saved = time.perf_counter()
            to_running.append(_until(lines, "vx watch: running") - saved)
            to_done.append(_until(lines, "waiting for changes") - saved)
        return {
            "projects": projects,
            "debounce": debounce,
            "first_run_s": round(first_end - first_start, 3),
            "save_to_running_s": round(statistics.median(to_running), 3),
            "save_to_done_s": round(statistics.median(to_done), 3),
            "min_max_to_running_s": [round(min(to_running), 3), round(max(to_running), 3)],
        }
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


async def _raw_batches(directory: Path, saves: int, gap: float) -> int:
    import watchfiles

    target = directory / "file.txt"
    target.write_text("0")
    stop = asyncio.Event()
    batches = 0

    async def consume() -> None:
        nonlocal batches
        async for _ in watchfiles.awatch(directory, stop_event=stop, rust_timeout=200):
            batches += 1

    consumer = asyncio.create_task(consume())
    await asyncio.sleep(0.5)
    for index in range(saves):
        target.write_text(str(index))
        await asyncio.sleep(gap)
    await asyncio.sleep(2.0)
    stop.set()
    await consumer
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--projects", type=int, default=200)
    parser.add_argument("--edits", type=int, default=10)
    parser.add_argument("--debounce", default="200ms")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temporary:
        root = generate(Path(temporary) / "tree", Shape(projects=args.projects))
        result: dict[str, object] = {
            "watch": save_to_run(root, args.projects, args.edits, args.debounce)
        }
        raw = Path(temporary) / "raw"
        raw.mkdir()
        result["raw_watchfiles_batches_for_10_saves_30ms_apart"] = asyncio.run(
            _raw_batches(raw, 10, 0.03)
        )
        result["raw_watchfiles_batches_for_10_saves_100ms_apart"] = asyncio.run(
            _raw_batches(raw, 10, 0.1)
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
