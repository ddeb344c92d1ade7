"""vx vs Turborepo on the same synthetic monorepos, as ratios of medians in one run.

    python benchmarks/run.py --quick      # a few minutes on 2 cores
    python benchmarks/run.py              # the full suite (see docs/performance.md)

Each scenario alternates vx and Turborepo runs after a warm-up and reports the median,
min-max and the vx/Turborepo ratio of the medians, plus peak RSS. Results go to
``benchmarks/results/latest.json`` and, with ``--write-docs``, to ``docs/performance.md``.
Nothing here asserts anything about time: benchmarks are not tests.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import blake3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generate import BUILD, TEST, Shape, dependency_graph, generate, leaf_and_root

ROOT = Path(__file__).resolve().parents[1]
TURBO_VERSION = "2.11.11"
TOOLS = Path(os.environ.get("VX_BENCH_TOOLS", Path.home() / ".cache" / "vx-bench"))
QUIET_ENV = {
    # Measure vx as installed by pip (byte-compiled), whatever the calling shell says.
    "PYTHONDONTWRITEBYTECODE": "",
    "TURBO_TELEMETRY_DISABLED": "1",
    "DO_NOT_TRACK": "1",
    "TURBO_NO_UPDATE_NOTIFIER": "1",
    "TURBO_PRINT_VERSION_DISABLED": "1",
}


@dataclass
class Sample:
    seconds: float
    rss_mb: float


@dataclass
class Result:
    scenario: str
    projects: int
    tool: str
    samples: list[Sample] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(s.seconds for s in self.samples)

    @property
    def peak_rss(self) -> float:
        return max(s.rss_mb for s in self.samples)


def install_turbo() -> Path:
    """``turbo`` from npm, pinned, installed once into the tools cache."""
    prefix = TOOLS / f"turbo-{TURBO_VERSION}"
    binary = prefix / "node_modules" / ".bin" / "turbo"
    if not binary.exists():
        if shutil.which("npm") is None:
            sys.exit("benchmarks need npm (Node.js 20+) to install Turborepo")
        prefix.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--silent",
                "--prefix",
                str(prefix),
                f"turbo@{TURBO_VERSION}",
            ],
            check=True,
        )
    return binary


def measure(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> Sample:
    """Wall time and peak RSS of one command (which must succeed)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env={**os.environ, **QUIET_ENV, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code} in {cwd}:\n{stderr[-2000:]}")
    return Sample(elapsed, usage.ru_maxrss / 1024)


class Tool:
    def __init__(
        self,
        name: str,
        repo: Path,
        argv: list[str],
        cache_dir: str,
        env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.repo = repo
        self.argv = argv
        self.cache_dir = cache_dir
        self.env = env or {}

    def run(self, *args: str) -> Sample:
        return measure([*self.argv, *args], self.repo, self.env)

    def clean(self) -> None:
        shutil.rmtree(self.repo / self.cache_dir, ignore_errors=True)
        for dist in (self.repo / "packages").glob("*/dist"):
            shutil.rmtree(dist)


def vx_tool(repo: Path) -> Tool:
    """vx without its warm server (as on CI)."""
    return Tool("vx", repo, [sys.executable, "-m", "vx", "run"], ".vx", {"VX_DAEMON": "0"})


def vx_server_tool(repo: Path) -> Tool:
    """vx answered by its warm server (``vx daemon``), started before the first run."""
    return Tool("vx+server", repo, [sys.executable, "-m", "vx", "run"], ".vx", {"VX_DAEMON": "1"})


def vx_daemon(repo: Path, *args: str) -> str:
    return subprocess.run(
        [sys.executable, "-m", "vx", "daemon", *args],
        cwd=repo,
        env={**os.environ, **QUIET_ENV},
        capture_output=True,
        text=True,
        check=False,
    ).stdout


def turbo_tool(repo: Path, turbo: Path) -> Tool:
    return Tool("turbo", repo, [str(turbo), "run"], ".turbo")


def touch_project(repo: Path, project: str, counter: int) -> None:
    source = repo / "packages" / project / "src" / "m000.py"
    with source.open("a") as handle:
        handle.write(f"edit_{counter} = {counter}\n")


def scenario(
    name: str,
    shape: Shape,
    tools: list[Tool],
    reps: int,
    warmup: bool,
    before: Callable[[Tool, int], None] | None,
    args: tuple[str, ...],
) -> list[Result]:
    results = {tool.name: Result(name, shape.projects, tool.name) for tool in tools}
    for tool in tools:
        if warmup:
            if before:
                before(tool, -1)
            tool.run(*args)
    # Let the kernel write back what the warm-up (or the previous scenario) wrote, so that
    # disk writeback does not land in the measured runs.
    os.sync()
    for rep in range(reps):
        for tool in tools if rep % 2 == 0 else list(reversed(tools)):
            if before:
                before(tool, rep)
            results[tool.name].samples.append(tool.run(*args))
    for tool in tools:
        result = results[tool.name]
        print(
            f"  {name:<12} N={shape.projects:<5} {tool.name:<6} median {result.median:8.3f}s "
            f"range {min(s.seconds for s in result.samples):.3f}-"
            f"{max(s.seconds for s in result.samples):.3f}s rss {result.peak_rss:6.1f} MB",
            flush=True,
        )
    return list(results.values())


def ideal_schedule(repo: Path, shape: Shape, concurrency: int) -> float:
    """Makespan of the commands alone (run directly, timed) under list scheduling."""
    deps = dependency_graph(shape)
    names = [f"p{i:04d}" for i in range(shape.projects)]
    durations: dict[str, float] = {}
    shutil.rmtree(repo / ".vx", ignore_errors=True)
    for dist in (repo / "packages").glob("*/dist"):
        shutil.rmtree(dist)
    for name in names:
        for task, command in (("build", BUILD), ("test", TEST)):
            start = time.perf_counter()
            subprocess.run(["/bin/sh", "-c", command], cwd=repo / "packages" / name, check=True)
            durations[f"{name}#{task}"] = time.perf_counter() - start
    edges = {f"{n}#build": [f"{names[d]}#build" for d in deps[i]] for i, n in enumerate(names)}
    edges.update({f"{n}#test": [f"{n}#build"] for n in names})
    finish: dict[str, float] = {}
    workers = [0.0] * concurrency
    for task in _topological(edges):
        ready = max((finish[d] for d in edges[task]), default=0.0)
        free = heapq.heappop(workers)
        finish[task] = max(free, ready) + durations[task]
        heapq.heappush(workers, finish[task])
    return max(finish.values())


def _topological(edges: dict[str, list[str]]) -> list[str]:
    order: list[str] = []
    seen: set[str] = set()

    def visit(node: str) -> None:
        if node not in seen:
            seen.add(node)
            for dep in edges[node]:
                visit(dep)
            order.append(node)

    for node in sorted(edges):
        visit(node)
    return order


def floors(repo: Path) -> dict[str, float]:
    files = [p for p in (repo / "packages").rglob("*") if p.is_file()]
    start = time.perf_counter()
    for path in files:
        os.stat(path)
    stat_all = time.perf_counter() - start
    start = time.perf_counter()
    for path in files:
        blake3.blake3(path.read_bytes()).digest()
    hash_all = time.perf_counter() - start
    interpreter = statistics.median(
        measure([sys.executable, "-c", "pass"], repo).seconds for _ in range(5)
    )
    return {
        "files": len(files),
        "stat_all_s": stat_all,
        "blake3_all_s": hash_all,
        "interpreter_start_s": interpreter,
    }


def startup(workdir: Path) -> dict[str, float]:
    one = workdir / "one-task"
    one.mkdir(parents=True, exist_ok=True)
    (one / "pyproject.toml").write_text('[tool.vx]\n[tool.vx.tasks.hello]\ncmd = "true"\n')
    version = statistics.median(
        measure([sys.executable, "-m", "vx", "--version"], one).seconds for _ in range(10)
    )
    alone = {"VX_DAEMON": "0"}
    measure([sys.executable, "-m", "vx", "run", "hello"], one, alone)
    run = statistics.median(
        measure([sys.executable, "-m", "vx", "run", "hello"], one, alone).seconds for _ in range(10)
    )
    return {"vx_version_s": version, "vx_run_one_task_s": run}


def run_size(
    shape: Shape,
    turbo: Path | None,
    reps: int,
    workdir: Path,
    scenarios: set[str],
    daemon: bool = False,
) -> tuple[list[Result], dict[str, float]]:
    vx_repo = generate(workdir / f"vx-{shape.projects}", shape)
    tools = [vx_tool(vx_repo)]
    if daemon:
        # The same tree: the server answers what the in-process runs left in the cache.
        tools.append(vx_server_tool(vx_repo))
        vx_daemon(vx_repo, "restart")
    if turbo is not None:
        turbo_repo = generate(workdir / f"turbo-{shape.projects}", shape)
        tools.append(turbo_tool(turbo_repo, turbo))
    leaf, root = leaf_and_root(shape)
    results: list[Result] = []
    extra: dict[str, float] = {}
    if "cold" in scenarios:
        results += scenario(
            "cold", shape, tools, reps, False, lambda tool, rep: tool.clean(), ("build", "test")
        )
        concurrency = os.cpu_count() or 1
        ideal = ideal_schedule(vx_repo, shape, concurrency)
        cold_vx = next(r for r in results if r.tool == "vx" and r.scenario == "cold")
        tasks = 2 * shape.projects
        extra["ideal_schedule_s"] = ideal
        extra["vx_cold_overhead_per_task_ms"] = (cold_vx.median - ideal) / tasks * 1000
        print(
            f"  cold overhead: ideal schedule {ideal:.3f}s, vx "
            f"{extra['vx_cold_overhead_per_task_ms']:.2f} ms/task",
            flush=True,
        )
        for tool in tools:
            tool.clean()
    if "full-hit" in scenarios:
        results += scenario("full-hit", shape, tools, reps, True, None, ("build", "test"))
    if "leaf-change" in scenarios:
        results += scenario(
            "leaf-change",
            shape,
            tools,
            reps,
            True,
            lambda tool, rep: touch_project(tool.repo, leaf, rep + 10),
            ("build", "test"),
        )
    if "root-change" in scenarios:
        results += scenario(
            "root-change",
            shape,
            tools,
            reps,
            True,
            lambda tool, rep: touch_project(tool.repo, root, rep + 1000),
            ("build", "test"),
        )
    if "dry-json" in scenarios:
        results += scenario(
            "dry-json", shape, tools, reps, True, None, ("build", "test", "--dry=json")
        )
    if daemon:
        status = json.loads(vx_daemon(vx_repo, "status", "--json"))
        extra["server_rss_mb"] = status.get("rss_bytes", 0) / 2**20
        print(f"  warm server RSS {extra['server_rss_mb']:.0f} MB", flush=True)
        vx_daemon(vx_repo, "stop")
    return results, extra


def _plan_entry(text: str, all_scenarios: set[str]) -> tuple[int, set[str], bool]:
    size, _, rest = text.partition(":")
    with_turbo = not rest.startswith("vx:") and rest != "vx"
    rest = rest.removeprefix("vx").removeprefix(":")
    scenarios = all_scenarios if rest in ("", "all") else set(rest.split(","))
    unknown = scenarios - all_scenarios
    if unknown:
        sys.exit(f"--plan {text}: unknown scenario(s) {', '.join(sorted(unknown))}")
    return int(size), scenarios, with_turbo


def versions(turbo: Path | None) -> dict[str, str]:
    import vx

    info = {
        "vx": vx.__version__,
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs",
    }
    if turbo is not None:
        info["turbo"] = subprocess.run(
            [str(turbo), "--version"],
            capture_output=True,
            text=True,
            env={**os.environ, **QUIET_ENV},
            check=True,
        ).stdout.strip()
        info["node"] = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
    return info


def table(results: list[Result]) -> list[str]:
    lines = [
        "| scenario | N | vx median (min-max) | Turborepo median (min-max) | vx / Turborepo "
        "| vx peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    served = [r for r in results if r.tool == "vx+server"]
    if served:
        lines[0] = lines[0].replace(
            "| vx peak RSS |",
            "| vx+server median (min-max) | vx+server / Turborepo | vx peak RSS |",
        )
        lines[1] = "|---|---|---|---|---|---|---|---|"
    keys = sorted({(r.scenario, r.projects) for r in results}, key=lambda k: (k[1], k[0]))
    for scenario_name, projects in keys:
        by_tool = {
            r.tool: r for r in results if (r.scenario, r.projects) == (scenario_name, projects)
        }
        vx_r, turbo_r = by_tool.get("vx"), by_tool.get("turbo")

        def cell(r: Result | None) -> str:
            if r is None:
                return "-"
            low = min(s.seconds for s in r.samples)
            high = max(s.seconds for s in r.samples)
            return f"{r.median:.3f}s ({low:.3f}-{high:.3f})"

        ratio = f"{vx_r.median / turbo_r.median:.2f}" if vx_r and turbo_r else "-"
        rss = f"{vx_r.peak_rss:.0f} MB" if vx_r else "-"
        server = ""
        if served:
            server_r = by_tool.get("vx+server")
            server_ratio = (
                f"{server_r.median / turbo_r.median:.2f}" if server_r and turbo_r else "-"
            )
            server = f" {cell(server_r)} | {server_ratio} |"
        lines.append(
            f"| {scenario_name} | {projects} | {cell(vx_r)} | {cell(turbo_r)} | {ratio} |"
            f"{server} {rss} |"
        )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description="vx vs Turborepo benchmarks")
    parser.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    parser.add_argument("--sizes", type=int, nargs="*", help="project counts to run")
    parser.add_argument(
        "--plan",
        nargs="*",
        metavar="N[:vx]:SCENARIOS",
        help="explicit plan, e.g. 50:all 500:full-hit,dry-json 2000:vx:full-hit "
        "(':vx' measures vx alone)",
    )
    parser.add_argument("--reps", type=int, help="measured runs per scenario and tool")
    parser.add_argument("--no-turbo", action="store_true", help="measure vx alone")
    parser.add_argument("--write-docs", action="store_true", help="update docs/performance.md")
    parser.add_argument(
        "--files", type=int, help=f"files per project (default {Shape.files}; 20 at N >= 2000)"
    )
    parser.add_argument("--layers", type=int, help=f"dependency layers (default {Shape.layers})")
    parser.add_argument(
        "--out", default="latest.json", help="results file name in benchmarks/results/"
    )
    parser.add_argument(
        "--daemon",
        action="store_true",
        help="also measure vx answered by its warm server (vx+server; vx alone runs with "
        "VX_DAEMON=0 in every mode)",
    )
    args = parser.parse_args()

    turbo = None if args.no_turbo else install_turbo()
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(ROOT / "vx"), str(ROOT / "plugins")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    all_scenarios = {"cold", "full-hit", "leaf-change", "root-change", "dry-json"}
    if args.quick:
        plan = [(50, all_scenarios, True), (200, {"full-hit", "leaf-change", "dry-json"}, True)]
        reps = args.reps or 3
    else:
        plan = [(n, all_scenarios, True) for n in (50, 200, 500)]
        plan.append((2000, {"full-hit", "leaf-change", "dry-json"}, False))
        reps = args.reps or 5
    if args.sizes:
        plan = [(n, all_scenarios, True) for n in args.sizes]
    if args.plan:
        plan = [_plan_entry(text, all_scenarios) for text in args.plan]
        reps = args.reps or 3

    info = versions(turbo)
    print(f"vx {info['vx']} vs turbo {info.get('turbo', '-')} on {info['machine']}", flush=True)
    results: list[Result] = []
    extras: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="vx-bench-") as tmp:
        workdir = Path(tmp)
        for projects, scenarios, with_turbo in plan:
            # The N = 2000 target is stated for 40,000 files: 20 per project.
            files = args.files or (20 if projects >= 2000 else Shape.files)
            shape = Shape(projects=projects, files=files, layers=args.layers or Shape.layers)
            found, extra = run_size(
                shape, turbo if with_turbo else None, reps, workdir, scenarios, args.daemon
            )
            results += found
            extras[str(projects)] = extra
        start = startup(workdir)
        floor = floors(workdir / f"vx-{plan[-1][0]}")
    document = {
        "versions": info,
        "mode": "quick" if args.quick else "full",
        "shape": {"files": args.files, "layers": args.layers},
        "reps": reps,
        "results": [{**asdict(r), "median": r.median} for r in results],
        "cold_overhead": extras,
        "startup": start,
        "floors": floor,
    }
    out = ROOT / "benchmarks" / "results"
    out.mkdir(exist_ok=True)
    (out / args.out).write_text(json.dumps(document, indent=2) + "\n")
    lines = table(results)
    print("\n".join(lines))
    print(
        f"startup: vx --version {start['vx_version_s'] * 1000:.0f} ms, vx run (one task, "
        f"cached) {start['vx_run_one_task_s'] * 1000:.0f} ms"
    )
    print(
        f"floors ({floor['files']} files): stat {floor['stat_all_s'] * 1000:.0f} ms, "
        f"blake3 {floor['blake3_all_s'] * 1000:.0f} ms, "
        f"interpreter {floor['interpreter_start_s'] * 1000:.0f} ms"
    )
    if args.write_docs:
        write_docs(document, lines)


def write_docs(document: dict[str, object], lines: list[str]) -> None:
    path = ROOT / "docs" / "performance.md"
    text = path.read_text() if path.exists() else ""
    begin, end = "<!-- results:begin -->", "<!-- results:end -->"
    info = document["versions"]
    assert isinstance(info, dict)
    start, floor = document["startup"], document["floors"]
    assert isinstance(start, dict)
    assert isinstance(floor, dict)
    block = "\n".join(
        [
            begin,
            f"Measured {time.strftime('%Y-%m-%d')} ({document['mode']} mode, {document['reps']} "
            f"runs per cell): vx {info['vx']}, Turborepo {info.get('turbo', '-')}, Node "
            f"{info.get('node', '-')}, Python {info['python']}, {info['machine']}.",
            "",
            *lines,
            "",
            f"- Startup: `vx --version` {start['vx_version_s'] * 1000:.0f} ms; `vx run` of a "
            f"one-task workspace (cached) {start['vx_run_one_task_s'] * 1000:.0f} ms.",
            "- Cold-run overhead per task: "
            + ", ".join(
                f"N={n}: {v['vx_cold_overhead_per_task_ms']:.2f} ms"
                for n, v in document["cold_overhead"].items()  # type: ignore[attr-defined]
                if "vx_cold_overhead_per_task_ms" in v
            )
            + ".",
            f"- Floors ({floor['files']} files): stat of every file "
            f"{floor['stat_all_s'] * 1000:.0f} ms, blake3 of every source "
            f"{floor['blake3_all_s'] * 1000:.0f} ms, interpreter start "
            f"{floor['interpreter_start_s'] * 1000:.0f} ms.",
            end,
        ]
    )
    if begin in text and end in text:
        text = text[: text.index(begin)] + block + text[text.index(end) + len(end) :]
    else:
        text += "\n" + block + "\n"
    path.write_text(text)


if __name__ == "__main__":
    main()
