"""Scaling of the Dask executor: one real ``dask scheduler``, 1, 2 and 4 ``dask worker``s (one
thread each, each in its own git clone), the real ``turborepo-remote-cache`` server, and a wide
graph of tasks that wait (``sleep``), so that this 2-core machine is not the bottleneck.

    python benchmarks/dask_scaling.py                  # 60 tasks x 1 s, workers 1 2 4
    python benchmarks/dask_scaling.py --tasks 80 --sleep 1 --workers 1 2 4 8

Reported per worker count: makespan (wall time of ``vx run`` on the client, including its
start-up and the import of ``distributed``; the minimum of ``--repeat`` runs, since other
work on a shared machine only ever adds time), speedup against one worker, efficiency
(speedup / workers), CPU seconds per task spent by the client, the scheduler, the workers
and the remote cache server (process CPU time over the run divided by the tasks, so idle
heartbeats are included), and the wall time and client CPU of the same run repeated (all
cache hits). A trivial-command graph (``true``) run on one worker and locally (``-j 1``) gives
the per-task overhead of distributed execution. Results go to
``benchmarks/results/dask-scaling.json``. Nothing here asserts anything about time.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# Every vx this script starts runs in its own process, as before the warm server
# (benchmarks/run.py --daemon measures the server).
os.environ.setdefault("VX_DAEMON", "0")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from remote_servers import TurboLauncher, free_port, install_turbo_server  # noqa: E402

DASK = Path(sys.executable).parent / "dask"
GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.invalid",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.invalid",
}


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, env={**os.environ, **GIT_ENV}, check=True)


def make_repo(path: Path, tasks: int, sleep: float) -> None:
    """``tasks`` projects, each with ``work`` (sleeps, writes one output) and ``noop``."""
    (path / "packages").mkdir(parents=True)
    (path / "pyproject.toml").write_text('[tool.vx]\nmembers = ["packages/*"]\n')
    (path / ".gitignore").write_text("out/\n.vx/\n")
    for index in range(tasks):
        project = path / "packages" / f"p{index:04d}"
        project.mkdir()
        (project / "pyproject.toml").write_text(
            f'[project]\nname = "p{index:04d}"\n\n'
            "[tool.vx.tasks.work]\n"
            f'cmd = "sleep {sleep} && mkdir -p out && echo {index} > out/result.txt"\n'
            'outputs = ["out/**"]\n\n'
            "[tool.vx.tasks.noop]\n"
            'cmd = "true"\n'
        )
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "bench")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process and its reaped children."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(value) for value in fields[11:15])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass
class Cluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def worker_pids(self) -> list[int]:
        """The worker processes (children of the nannies)."""
        nannies = {nanny.pid for nanny in self.workers}
        pids = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                except (OSError, IndexError, ValueError):
                    continue
                if ppid in nannies:
                    pids.append(int(entry.name))
        return pids

    def close(self) -> None:
        for process in [*self.workers, self.scheduler]:
            if process.poll() is None:
                process.terminate()
        for process in [*self.workers, self.scheduler]:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()


def start_cluster(base: Path, origin: Path, count: int, token: str) -> Cluster:
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    common = ["--dashboard-address", "127.0.0.1:0"]
    scheduler = subprocess.Popen(
        [str(DASK), "scheduler", "--host", "127.0.0.1", "--port", str(port), *common],
        cwd=base,
        **quiet,  # type: ignore[call-overload]
    )
    cluster = Cluster(address, scheduler)
    for index in range(count):
        checkout = base / f"worker{index}"
        if not checkout.exists():
            git(base, "clone", "-q", str(origin), str(checkout))
        argv = [str(DASK), "worker", address, "--nthreads", "1", "--name", f"w{index}"]
        argv += [*common, "--local-directory", str(base / f"worker{index}-dask")]
        argv += ["--host", "127.0.0.1"]
        cluster.workers.append(
            subprocess.Popen(
                argv,
                cwd=checkout,
                env={**os.environ, "VX_REMOTE_CACHE_TOKEN": token},
                **quiet,  # type: ignore[call-overload]
            )
        )
    try:
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(count, timeout=120)
    except BaseException:
        cluster.close()
        raise
    return cluster


def run_vx(
    client: Path, task: str, env: dict[str, str], *extra: str
) -> tuple[float, float, dict[str, Any]]:
    """Wall seconds, CPU seconds of the vx process, and its run summary."""
    summary = client / ".vx" / f"bench-{secrets.token_hex(4)}.json"
    argv = [sys.executable, "-m", "vx", "run", task, f"--summarize={summary}", *extra]
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        cwd=client,
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read().decode() if process.stderr else ""
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"vx {' '.join(argv[3:])} failed ({process.returncode}):\n{stderr}")
    return wall, usage.ru_utime + usage.ru_stime, json.loads(summary.read_text())


def _artifact_bytes(directory: Path) -> int:
    sizes = [p.stat().st_size for p in directory.iterdir() if not p.name.endswith(".tag")]
    return round(sum(sizes) / len(sizes)) if sizes else 0


def _import_cpu() -> float:
    """CPU seconds a fresh interpreter spends importing ``distributed`` (minus a bare start)."""

    def cpu(code: str) -> float:
        process = subprocess.Popen([sys.executable, "-c", code])
        _, _, usage = os.wait4(process.pid, 0)
        return usage.ru_utime + usage.ru_stime

    return round(
        min(cpu("import distributed") for _ in range(3)) - min(cpu("pass") for _ in range(3)), 3
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=60)
    parser.add_argument("--sleep", type=float, default=1.0)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=2, help="runs per worker count (min kept)")
    default_output = ROOT / "benchmarks/results/dask-scaling.json"
    parser.add_argument("--output", type=Path, default=default_output)
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="vx-dask-bench-"))
    origin = base / "origin"
    make_repo(origin, args.tasks, args.sleep)
    launcher = TurboLauncher(install_turbo_server(), base / "turbo")
    server = launcher.take(signed=False)
    rounds: list[dict[str, Any]] = []
    overhead: dict[str, Any] = {}
    try:
        for count in args.workers:
            cluster = start_cluster(base, origin, count, server.token)
            try:
                client = base / f"client-{count}"
                git(base, "clone", "-q", str(origin), str(client))
                team = f"bench{count}{secrets.token_hex(3)}"
                env = {
                    "VX_REMOTE_CACHE_URL": server.url,
                    "VX_REMOTE_CACHE_TEAM": team,
                    "VX_REMOTE_CACHE_TOKEN": server.token,
                }
                executor = f"--executor=dask://{cluster.address.removeprefix('tcp://')}"
                walls = []
                for attempt in range(args.repeat):
                    if attempt:  # a fresh client and cache namespace: every task runs again
                        team = f"bench{count}{secrets.token_hex(3)}"
                        env["VX_REMOTE_CACHE_TEAM"] = team
                        client = base / f"client-{count}-{attempt}"
                        git(base, "clone", "-q", str(origin), str(client))
                    load = os.getloadavg()[0]
                    server_before = cpu_seconds(server.process.pid)
                    before = [cpu_seconds(cluster.scheduler.pid)]
                    before += [cpu_seconds(pid) for pid in cluster.worker_pids()]
                    wall, client_cpu, summary = run_vx(client, "work", env, executor)
                    server_cpu = cpu_seconds(server.process.pid) - server_before
                    after = [cpu_seconds(cluster.scheduler.pid)]
                    after += [cpu_seconds(pid) for pid in cluster.worker_pids()]
                    walls.append(round(wall, 3))
                    print(f"  {count} worker(s): {wall:.2f}s (load average {load:.1f})", flush=True)
                # The same run again: all hits, restored locally, no contact with the cluster.
                hit_wall, hit_cpu, hit_summary = run_vx(client, "work", env, executor)
                assert hit_summary["counts"]["cached"] == args.tasks, hit_summary["counts"]
                ran = [t for t in summary["tasks"] if t["status"] == "success"]
                assert len(ran) == args.tasks, summary["counts"]
                per_worker: dict[str, int] = {}
                for entry in ran:
                    per_worker[entry["worker"]] = per_worker.get(entry["worker"], 0) + 1
                rounds.append(
                    {
                        "workers": count,
                        "makespan_s": min(walls),
                        "makespans_s": walls,
                        "load_average_at_start": round(load, 1),
                        "run_duration_s": round(summary["duration_ms"] / 1000, 3),
                        "client_cpu_s_per_task": round(client_cpu / args.tasks, 4),
                        "scheduler_cpu_s_per_task": round((after[0] - before[0]) / args.tasks, 4),
                        "worker_cpu_s_per_task": round(
                            (sum(after[1:]) - sum(before[1:])) / args.tasks, 4
                        ),
                        "tasks_per_worker": dict(sorted(per_worker.items())),
                        "remote_cache_cpu_s_per_task": round(server_cpu / args.tasks, 4),
                        "artifact_bytes_mean": _artifact_bytes(server.storage / team),
                        "all_hits_rerun_s": round(hit_wall, 3),
                        "all_hits_rerun_client_cpu_s": round(hit_cpu, 3),
                    }
                )
                print(json.dumps(rounds[-1]), flush=True)
                if count == 1:
                    # Per-task overhead: the same number of trivial tasks, one at a time.
                    remote, _, _ = run_vx(client, "noop", env, executor)
                    local_client = base / "client-local"
                    git(base, "clone", "-q", str(origin), str(local_client))
                    local, _, _ = run_vx(local_client, "noop", {}, "-j", "1")
                    overhead = {
                        "tasks": args.tasks,
                        "one_worker_s": round(remote, 3),
                        "local_j1_s": round(local, 3),
                        "overhead_ms_per_task": round((remote - local) / args.tasks * 1000, 1),
                    }
                    print(json.dumps(overhead), flush=True)
            finally:
                cluster.close()
    finally:
        server.stop()
        launcher.close()
        shutil.rmtree(base, ignore_errors=True)

    first = rounds[0]["makespan_s"]
    for entry in rounds:
        speedup = first / entry["makespan_s"]
        entry["speedup"] = round(speedup, 2)
        entry["efficiency"] = round(speedup / (entry["workers"] / rounds[0]["workers"]), 2)
    import_cpu = _import_cpu()
    ideal = args.tasks * args.sleep
    result = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "python": platform.python_version(),
        "tasks": args.tasks,
        "sleep_s": args.sleep,
        "serial_work_s": ideal,
        "rounds": rounds,
        "overhead": overhead,
        "import_distributed_cpu_s": import_cpu,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\n{args.tasks} tasks x {args.sleep}s (serial work {ideal:g}s)")
    print("workers  makespan  speedup  efficiency  sched-cpu/task  client-cpu/task")
    for entry in rounds:
        print(
            f"{entry['workers']:>7}  {entry['makespan_s']:>7.2f}s  {entry['speedup']:>6.2f}x"
            f"  {entry['efficiency']:>10.2f}  {entry['scheduler_cpu_s_per_task'] * 1000:>11.1f}ms"
            f"  {entry['client_cpu_s_per_task'] * 1000:>12.1f}ms"
        )
    if overhead:
        print(f"per-task overhead vs local -j1: {overhead['overhead_ms_per_task']} ms")
    print(f"importing distributed: {import_cpu} CPU-s")


if __name__ == "__main__":
    main()
