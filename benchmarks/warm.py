"""A full hit four ways, alternating: this checkout's vx as a new process without the warm
server (``VX_DAEMON=0``), the same through the warm server (``vx daemon``: a new client
process answered by the server; CPU is the client's plus the server's), the same vx
answering in a process that is already running (every module imported, plugins' code
loaded, no client), and, with ``--against DIR``, another vx source tree
(``git archive main | tar -x -C DIR``).

    python benchmarks/warm.py TREE [--reps 8] [--against DIR] [-- run build test]

TREE is a workspace whose tasks already ran (``benchmarks/generate.py`` + one ``vx run``).
Reports wall and CPU (user + sys) medians with min-max: on a shared machine the CPU time
is the steadier of the two. Nothing here asserts anything about time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

SERVER = r"""
import contextlib, io, json, resource, sys, time
import vx.cli
for line in sys.stdin:
    before = resource.getrusage(resource.RUSAGE_SELF)
    with contextlib.redirect_stdout(io.StringIO()):
        code = vx.cli.main(json.loads(line))
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    print(json.dumps([code, cpu, after.ru_maxrss]), flush=True)
"""


def _env(source: Path, daemon: str = "0") -> dict[str, str]:
    path = f"{source}{os.pathsep}{source / 'plugins'}"
    return {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "",
        "PYTHONPATH": path,
        "VX_DAEMON": daemon,
    }


def _cpu_of(pid: int) -> float:
    """User + system CPU seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--against", type=Path, help="another vx source tree to compare")
    parser.add_argument("args", nargs="*", default=["run", "build", "test"])
    options = parser.parse_args()
    argv: list[str] = options.args
    sources = {"this": ROOT}
    if options.against:
        sources["against"] = options.against.resolve()
    for source in sources.values():
        subprocess.run(
            [sys.executable, "-m", "compileall", "-q", str(source)],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    def new_process(source: Path, daemon: str = "0") -> tuple[float, float]:
        start = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "vx", *argv],
            cwd=options.tree,
            env=_env(source, daemon),
            stdout=subprocess.DEVNULL,
        )
        _, status, usage = os.wait4(child.pid, 0)
        if status != 0:
            sys.exit(f"vx {' '.join(argv)} failed in {options.tree}")
        return time.perf_counter() - start, usage.ru_utime + usage.ru_stime

    def vx_daemon(*args: str) -> dict[str, object]:
        done = subprocess.run(
            [sys.executable, "-m", "vx", "daemon", *args],
            cwd=options.tree,
            env=_env(ROOT),
            capture_output=True,
            text=True,
            check=False,
        )
        return dict(json.loads(done.stdout)) if "--json" in args else {}

    vx_daemon("restart")
    daemon_pid = int(str(vx_daemon("status", "--json")["pid"]))

    def served() -> tuple[float, float]:
        before = _cpu_of(daemon_pid)
        wall, cpu = new_process(ROOT, "1")
        return wall, cpu + _cpu_of(daemon_pid) - before

    server = subprocess.Popen(
        [sys.executable, "-c", SERVER],
        cwd=options.tree,
        text=True,
        env=_env(ROOT),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    peak_kb = [0]

    def warm() -> tuple[float, float]:
        assert server.stdin is not None
        assert server.stdout is not None
        start = time.perf_counter()
        server.stdin.write(json.dumps(argv) + "\n")
        server.stdin.flush()
        code, cpu, peak_kb[0] = json.loads(server.stdout.readline())
        if code != 0:
            sys.exit(f"vx {' '.join(argv)} failed in the running process")
        return time.perf_counter() - start, cpu

    variants: dict[str, Callable[[], tuple[float, float]]] = {
        f"{name} (new process)": (lambda source=source: new_process(source))
        for name, source in sources.items()
    }
    variants["this (warm server)"] = served
    variants["this (running process)"] = warm
    for run in variants.values():
        run()  # warm-up
    samples: dict[str, list[tuple[float, float]]] = {name: [] for name in variants}
    for rep in range(options.reps):
        for name in list(variants) if rep % 2 == 0 else list(reversed(variants)):
            samples[name].append(variants[name]())
    for name, values in samples.items():
        wall = [v[0] * 1000 for v in values]
        cpu = [v[1] * 1000 for v in values]
        print(
            f"{name:>24}: wall {statistics.median(wall):6.0f} ms ({min(wall):.0f}-{max(wall):.0f})"
            f"  CPU {statistics.median(cpu):6.0f} ms ({min(cpu):.0f}-{max(cpu):.0f})"
        )
    print(f"running process: peak RSS {peak_kb[0] / 1024:.0f} MB after {options.reps + 1} runs")
    status = vx_daemon("status", "--json")
    print(
        f"warm server: RSS {int(str(status['rss_bytes'])) / 2**20:.0f} MB after "
        f"{status['served']} served requests"
    )
    vx_daemon("stop")
    assert server.stdin is not None
    server.stdin.close()
    server.wait()


if __name__ == "__main__":
    main()
