"""History-aware scheduling vs the default priority, on graphs the default orders badly.

    python benchmarks/scheduling.py             # 3 repetitions, about a minute on 2 cores
    python benchmarks/scheduling.py --reps 1 --slots 4

Tasks sleep (so CPU noise barely matters) and never hit the cache. Each repetition runs
every graph twice with ``-j SLOTS``: with ``VX_HISTORY__SCHEDULING=false`` (the kernel's
default priority: number of transitive dependents; that run also records history), then
with history-aware priorities. The makespan is the run's duration from its summary; the
lower bound ``max(critical path, total work / slots)`` is computed from the durations
measured in the same run (so process start-up inside tasks counts as work, and only
scheduling gaps count against the makespan). Results: ``benchmarks/results/scheduling-latest.json``.
Nothing here asserts anything about time: benchmarks are not tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

# Every vx this script starts runs in its own process, as before the warm server
# (benchmarks/run.py --daemon measures the server).
os.environ.setdefault("VX_DAEMON", "0")

ROOT = Path(__file__).resolve().parents[1]

#: ``{name: {project: (seconds, [dependency projects])}}``
Graph = dict[str, tuple[float, list[str]]]


def chain_behind_wide_layer() -> Graph:
    """A chain of 4 tasks of 0.5 s whose head has 3 dependents, next to 8 wide 0.5 s tasks that have
    4 tiny dependents each: the default starts every wide task before the chain."""
    graph: Graph = {}
    for i in range(8):
        graph[f"wide{i}"] = (0.5, [])
        for j in range(4):
            graph[f"wide{i}-leaf{j}"] = (0.05, [f"wide{i}"])
    previous: list[str] = []
    for i in range(4):
        graph[f"chain{i}"] = (0.5, previous)
        previous = [f"chain{i}"]
    return graph


def few_long_tasks() -> Graph:
    """16 short tasks with one tiny dependent each, and two 1.5 s tasks with none: the
    default runs the long ones last."""
    graph: Graph = {}
    for i in range(16):
        graph[f"short{i}"] = (0.25, [])
        graph[f"short{i}-check"] = (0.05, [f"short{i}"])
    graph["long0"] = (1.5, [])
    graph["long1"] = (1.5, [])
    return graph


GRAPHS = {"chain-behind-wide-layer": chain_behind_wide_layer, "few-long-tasks": few_long_tasks}


def write_workspace(directory: Path, graph: Graph) -> None:
    (directory / "pyproject.toml").write_text('[tool.vx]\nmembers = ["packages/*"]\n')
    for name, (seconds, deps) in graph.items():
        project = directory / "packages" / name
        project.mkdir(parents=True)
        dependencies = ", ".join(f'"{d}"' for d in deps)
        (project / "pyproject.toml").write_text(
            f'[project]\nname = "{name}"\ndependencies = [{dependencies}]\n\n'
            f'[tool.vx.tasks.build]\ncmd = "sleep {seconds}"\ncache = false\n'
            'depends_on = ["^build"]\n'
        )


def run(directory: Path, slots: int, *, history: bool) -> dict[str, Any]:
    summary = directory / ".vx" / "bench-summary.json"
    env = {**os.environ, "VX_HISTORY__SCHEDULING": "true" if history else "false"}
    subprocess.run(
        [sys.executable, "-m", "vx", "run", "build", "-j", str(slots), f"--summarize={summary}"],
        cwd=directory,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    document: dict[str, Any] = json.loads(summary.read_text())
    return document


def lower_bound(summary: dict[str, Any], slots: int) -> float:
    """``max(critical path, total work / slots)`` in ms, from the run's measured durations."""
    tasks = {t["id"]: t for t in summary["tasks"]}
    finish: dict[str, float] = {}
    for task in summary["tasks"]:  # topological order
        start = max((finish[d] for d in task["dependencies"]), default=0.0)
        finish[task["id"]] = start + task["duration_ms"]
    work = sum(t["duration_ms"] for t in tasks.values())
    return max(max(finish.values()), work / slots)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--slots", type=int, default=4)
    options = parser.parse_args()
    results: dict[str, Any] = {"slots": options.slots, "reps": options.reps, "graphs": {}}
    for name, make in GRAPHS.items():
        ratios: dict[str, list[float]] = {"default": [], "history": []}
        makespans: dict[str, list[float]] = {"default": [], "history": []}
        with tempfile.TemporaryDirectory(prefix="vx-sched-") as temporary:
            directory = Path(temporary)
            write_workspace(directory, make())
            for _ in range(options.reps):
                for mode in ("default", "history"):
                    summary = run(directory, options.slots, history=mode == "history")
                    makespan = summary["duration_ms"]
                    makespans[mode].append(makespan)
                    ratios[mode].append(makespan / lower_bound(summary, options.slots))
        entry = {
            mode: {
                "makespan_ms": [round(m, 1) for m in makespans[mode]],
                "ratio_to_lower_bound": [round(r, 3) for r in ratios[mode]],
                "median_ratio": round(statistics.median(ratios[mode]), 3),
            }
            for mode in ratios
        }
        results["graphs"][name] = entry
        print(
            f"{name:<26} default {entry['default']['median_ratio']:.3f}x LB   "
            f"history {entry['history']['median_ratio']:.3f}x LB   "
            f"(makespans {statistics.median(makespans['default']) / 1000:.2f}s -> "
            f"{statistics.median(makespans['history']) / 1000:.2f}s, median of {options.reps})"
        )
    out = ROOT / "benchmarks" / "results" / "scheduling-latest.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"written to {out.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
