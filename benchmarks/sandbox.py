"""Per-task overhead of the sandbox backends on cold runs (sandbox off vs Landlock vs bwrap).

Generates a benchmark tree (benchmarks/generate.py), then times ``vx run build test --force
-j1`` (serial, so that the difference divided by the task count is the per-task cost) with
the sandbox off and with each backend, alternating configurations between repetitions.

    python benchmarks/sandbox.py --projects 50 --reps 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Every vx this script starts runs in its own process, as before the warm server
# (benchmarks/run.py --daemon measures the server).
os.environ.setdefault("VX_DAEMON", "0")

HERE = Path(__file__).resolve().parent
CONFIGS = {
    "off": ["--sandbox=off"],
    "landlock": ["--sandbox=required"],
    "bwrap": ["--sandbox=required"],
}


def run(repo: Path, config: str) -> tuple[float, float]:
    """``(wall seconds, CPU seconds of vx and every task)`` of one cold run."""
    env = {**os.environ, "VX_SANDBOX__BACKEND": "bwrap" if config == "bwrap" else "landlock"}
    argv = [sys.executable, "-m", "vx", "run", "build", "test", "--force", "-j1", "-q"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    completed = subprocess.run(
        [*argv, *CONFIGS[config]], cwd=repo, env=env, capture_output=True, text=True, check=False
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if completed.returncode != 0:
        raise SystemExit(f"{config}: vx failed\n{completed.stdout[-2000:]}{completed.stderr}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=50)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vx-sandbox-bench-") as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run(
            [
                sys.executable,
                str(HERE / "generate.py"),
                str(repo),
                "--projects",
                str(args.projects),
            ],
            check=True,
            capture_output=True,
        )
        tasks = 2 * args.projects
        for config in CONFIGS:  # warm-up: byte-compile, page cache, workspace cache
            run(repo, config)
        walls: dict[str, list[float]] = {config: [] for config in CONFIGS}
        cpus: dict[str, list[float]] = {config: [] for config in CONFIGS}
        for _ in range(args.reps):
            for config in CONFIGS:
                wall, cpu = run(repo, config)
                walls[config].append(wall)
                cpus[config].append(cpu)
        wall_median = {c: statistics.median(t) for c, t in walls.items()}
        cpu_median = {c: statistics.median(t) for c, t in cpus.items()}

        def per_task(medians: dict[str, float]) -> dict[str, float]:
            return {
                c: round((medians[c] - medians["off"]) * 1000 / tasks, 2)
                for c in CONFIGS
                if c != "off"
            }

        result = {
            "projects": args.projects,
            "tasks": tasks,
            "reps": args.reps,
            "wall_median_s": {c: round(m, 3) for c, m in wall_median.items()},
            "cpu_median_s": {c: round(m, 3) for c, m in cpu_median.items()},
            "per_task_overhead_ms": {"wall": per_task(wall_median), "cpu": per_task(cpu_median)},
        }
        print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
