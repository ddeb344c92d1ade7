"""Overhead of OpenTelemetry export (``vx_otel``) on a generated workspace, against a live
receiver.

Generates the benchmark monorepo (200 projects = 400 tasks by default, see ``generate.py``),
then alternates runs with export off and on, ``--rounds`` times each, for two scenarios:
``--force`` (every task executes, outputs re-archived) and a full cache hit. Prints as JSON the
medians of the wall time and of the CPU time (user + system, of vx and the tasks it waited
for, from ``wait4``), and the overhead of export on both. On a shared machine the CPU time is
the steadier measure: wall times move with the load of other processes.

    python benchmarks/otel_overhead.py /tmp/otel-bench --phoenix      # start Phoenix (tests'
                                                                      # installer and launcher)
    python benchmarks/otel_overhead.py /tmp/otel-bench --endpoint http://127.0.0.1:4318
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# Every vx this script starts runs in its own process, as before the warm server
# (benchmarks/run.py --daemon measures the server).
os.environ.setdefault("VX_DAEMON", "0")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import Shape, generate


def measure(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one successful run without warnings."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code}:\n{stderr}")
    if "warning" in stderr:
        raise RuntimeError(f"export problem:\n{stderr}")
    return elapsed, usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--projects", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--endpoint", help="OTLP/HTTP base URL of a running receiver")
    parser.add_argument("--phoenix", action="store_true", help="start Arize Phoenix for the run")
    args = parser.parse_args()
    phoenix = None
    if args.phoenix:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
        from otlp_servers import install_phoenix, start_phoenix

        phoenix = start_phoenix(install_phoenix(), args.out.with_name(args.out.name + "-phoenix"))
        endpoint = phoenix.url
    elif args.endpoint:
        endpoint = args.endpoint
    else:
        parser.error("give --endpoint URL or --phoenix")
    try:
        repo = generate(args.out, Shape(projects=args.projects))
        base = {k: v for k, v in os.environ.items() if not k.startswith(("VX_", "OTEL_"))}
        off = {**base, "VX_CACHE_DIR": str(args.out / ".vx-cache")}
        on = {
            **off,
            "VX_OTEL__ENABLED": "1",
            "OTEL_EXPORTER_OTLP_ENDPOINT": endpoint,
            "OTEL_RESOURCE_ATTRIBUTES": "openinference.project.name=vx-overhead",
        }
        argv = [sys.executable, "-m", "vx", "run", "build", "test"]
        measure(argv, repo, off)  # populate the cache and the start-up caches
        measure(argv, repo, on)
        results: dict[str, dict[str, float]] = {}
        for scenario, extra in (("force", ["--force"]), ("full_hit", [])):
            samples: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
            for _ in range(args.rounds):
                samples["off"].append(measure([*argv, *extra], repo, off))
                samples["on"].append(measure([*argv, *extra], repo, on))
            cell: dict[str, float] = {"rounds": args.rounds}
            for index, kind in ((0, "wall"), (1, "cpu")):
                median_off = statistics.median(s[index] for s in samples["off"])
                median_on = statistics.median(s[index] for s in samples["on"])
                cell[f"{kind}_off_s"] = round(median_off, 3)
                cell[f"{kind}_on_s"] = round(median_on, 3)
                cell[f"{kind}_overhead_s"] = round(median_on - median_off, 3)
                cell[f"{kind}_overhead_pct"] = round(100 * (median_on - median_off) / median_off, 1)
            results[scenario] = cell
        document = {"tasks": 2 * args.projects, "endpoint": endpoint, "results": results}
        if phoenix is not None:
            spans = phoenix.wait_spans("vx-overhead", (2 * args.projects + 1) * 2, timeout=30)
            document["spans_stored_in_phoenix"] = len(spans)
        print(json.dumps(document, indent=2))
    finally:
        if phoenix is not None:
            phoenix.stop()


if __name__ == "__main__":
    main()
