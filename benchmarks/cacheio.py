"""Cache I/O benchmarks (issue 16): vx beside Turborepo and beside tar + zstd pipelines.

    python benchmarks/cacheio.py remote --sizes 200 500 --reps 5
    python benchmarks/cacheio.py big --reps 3

``remote``: a fresh CI clone restored from one real ``turborepo-remote-cache`` server shared
by both tools (each with its own team). Both populate the server once; before each measured
run the local caches (``.vx``, ``.turbo``) and every ``dist/`` are wiped; runs alternate; after
each run every output is compared with the one the populating run produced (byte-identical,
mode included) and every task must have been a hit.

``big``: a one-task workspace whose task declares a big output tree. *save* is ``vx run``
archiving the tree into the local cache (the task's command is ``true``: the tree is already
there), minus nothing: vx's start-up is counted against vx. *restore* is ``vx run`` after the
tree was deleted. The references are ``tar -cf - out | zstd -3 -T0 > file`` and
``zstd -dc -T0 file | tar -x`` on vx's own archive. Trees: 489 MB in 5,000 files (a fifth of
each file random, the rest zeros) and 50,000 files of 2 KB (text).

Nothing here asserts anything about time: benchmarks are not tests. Results are printed and
written to ``benchmarks/results/cacheio-latest.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import blake3

# Every vx this script starts runs in its own process, as before the warm server
# (benchmarks/run.py --daemon measures the server).
os.environ.setdefault("VX_DAEMON", "0")

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests"))
from generate import Shape, generate  # noqa: E402
from run import QUIET_ENV, install_turbo  # noqa: E402

TEAM_VX, TEAM_TURBO = "team_vxbench", "team_turbobench"
CACHES = {"vx": ".vx", "turbo": ".turbo"}


# -- shared --------------------------------------------------------------------------------


def timed(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None, shell: bool = False
) -> float:
    start = time.perf_counter()
    before = os.times()
    completed = subprocess.run(
        argv if not shell else argv[0],
        cwd=cwd,
        env={**os.environ, **QUIET_ENV, **(env or {})},
        capture_output=True,
        shell=shell,
    )
    elapsed = time.perf_counter() - start
    after = os.times()
    global last_output, last_cpu
    last_output = completed.stdout.decode(errors="replace")
    last_cpu = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"{argv} exited {completed.returncode} in {cwd}:\n"
            + completed.stderr.decode(errors="replace")[-2000:]
        )
    return elapsed


last_output = ""
"""Standard output of the last :func:`timed` command."""
last_cpu = 0.0
"""CPU seconds (user + system, every process of the command) of the last :func:`timed`
command: steadier than wall time on a shared machine."""

CACHED = re.compile(r"Cached:\s+(\d+) cached, (\d+) total")


def all_cached(output: str) -> bool:
    """Both tools end with ``Cached: N cached, N total``."""
    found = CACHED.search(re.sub(r"\x1b\[[0-9;]*m", "", output))
    return found is not None and found.group(1) == found.group(2)


def summary(samples: list[float]) -> dict[str, float]:
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def fmt(stats: dict[str, float]) -> str:
    return f"{stats['median']:.3f}s ({stats['min']:.3f}-{stats['max']:.3f})"


def tree_digest(directory: Path, pattern: str) -> dict[str, str]:
    """Relative path -> blake3 of content and mode, for every file matching ``pattern``."""
    found: dict[str, str] = {}
    for path in sorted(directory.glob(pattern)):
        if path.is_file():
            mode = oct(path.stat().st_mode & 0o777)
            found[str(path.relative_to(directory))] = (
                blake3.blake3(path.read_bytes()).hexdigest() + mode
            )
    return found


# -- remote: a fresh clone from a shared remote cache -------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One real turborepo-remote-cache with local storage (the test suite's install)."""

    def __init__(self, base: Path) -> None:
        from remote_servers import install_turbo_server

        cli = install_turbo_server()
        storage = base / "storage"
        storage.mkdir(parents=True)
        port = _free_port()
        self.token = f"bench-{secrets.token_hex(8)}"
        self.url = f"http://127.0.0.1:{port}"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": os.environ.get("HOME", str(base)),
            "PORT": str(port),
            "HOST": "127.0.0.1",
            "TURBO_TOKEN": self.token,
            "STORAGE_PROVIDER": "local",
            "STORAGE_PATH": str(storage),
            "STORAGE_PATH_USE_TMP_FOLDER": "false",
            "LOG_LEVEL": "warn",
            "NODE_ENV": "production",
        }
        self.log = base / "server.log"
        with open(self.log, "wb") as handle:
            self.process = subprocess.Popen(
                ["node", str(cli)], env=env, stdout=handle, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit("turborepo-remote-cache exited:\n" + self.log.read_text())
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        sys.exit("turborepo-remote-cache did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def remote(sizes: list[int], reps: int, workdir: Path) -> dict[str, object]:
    turbo = install_turbo()
    server = Server(workdir / "server")
    results: dict[str, object] = {}
    try:
        for projects in sizes:
            shape = Shape(projects=projects)
            repos = {
                "vx": generate(workdir / f"vx-{projects}", shape),
                "turbo": generate(workdir / f"turbo-{projects}", shape),
            }
            envs = {
                "vx": {
                    "VX_REMOTE_CACHE_URL": server.url,
                    "VX_REMOTE_CACHE_TEAM": TEAM_VX,
                    "TURBO_TOKEN": server.token,
                },
                "turbo": {
                    "TURBO_API": server.url,
                    "TURBO_TEAM": TEAM_TURBO,
                    "TURBO_TOKEN": server.token,
                },
            }
            argv = {
                "vx": [sys.executable, "-m", "vx", "run", "build", "test"],
                "turbo": [str(turbo), "run", "build", "test"],
            }

            def wipe(tool: str, repos: dict[str, Path] = repos) -> None:
                repo = repos[tool]
                shutil.rmtree(repo / CACHES[tool], ignore_errors=True)
                for dist in (repo / "packages").glob("*/dist"):
                    shutil.rmtree(dist)

            expected: dict[str, dict[str, str]] = {}
            for tool in repos:  # populate the server
                wipe(tool)
                timed(argv[tool], repos[tool], envs[tool])
                expected[tool] = tree_digest(repos[tool], "packages/*/dist/**/*")
                assert len(expected[tool]) == projects, f"{tool}: {len(expected[tool])} outputs"
            samples: dict[str, list[float]] = {"vx": [], "turbo": []}
            cpu: dict[str, list[float]] = {"vx": [], "turbo": []}
            os.sync()
            for rep in range(reps):
                for tool in ("vx", "turbo") if rep % 2 == 0 else ("turbo", "vx"):
                    wipe(tool)
                    samples[tool].append(timed(argv[tool], repos[tool], envs[tool]))
                    cpu[tool].append(last_cpu)
                    if not all_cached(last_output):
                        sys.exit(f"{tool}: not every task was a cache hit:\n{last_output[-800:]}")
                    got = tree_digest(repos[tool], "packages/*/dist/**/*")
                    if got != expected[tool]:
                        sys.exit(f"{tool}: restored outputs differ from the populating run")
            # Every task was a hit: a run with remote reads off would have had to execute.
            stats = {tool: summary(values) for tool, values in samples.items()}
            ratio = stats["vx"]["median"] / stats["turbo"]["median"]
            cpu_stats = {tool: summary(values) for tool, values in cpu.items()}
            print(
                f"remote-fresh N={projects}: vx {fmt(stats['vx'])}  turbo {fmt(stats['turbo'])}"
                f"  vx/turbo {ratio:.2f}; CPU (user+sys) vx {fmt(cpu_stats['vx'])}"
                f" turbo {fmt(cpu_stats['turbo'])}; load {os.getloadavg()[0]:.1f}",
                flush=True,
            )
            results[str(projects)] = {
                "samples": samples,
                "stats": stats,
                "ratio": ratio,
                "cpu_samples": cpu,
                "cpu_stats": cpu_stats,
                "load": os.getloadavg()[0],
            }
    finally:
        server.stop()
    return results


# -- big outputs ---------------------------------------------------------------------------


def make_big(directory: Path) -> None:
    """489 MB in 5,000 files: a fifth of each file random, the rest zeros."""
    size = 489_000_000 // 5000
    random_part = size // 5
    for index in range(5000):
        sub = directory / f"d{index // 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{index:04d}.bin").write_bytes(os.urandom(random_part) + bytes(size - random_part))


def make_small(directory: Path) -> None:
    """50,000 files of 2 KB of text."""
    import random

    rng = random.Random(5)
    words = ["alpha", "beta", "gamma", "delta", "value", "result", "items", "count"]
    for index in range(50_000):
        sub = directory / f"d{index // 500:03d}"
        if index % 500 == 0:
            sub.mkdir(parents=True, exist_ok=True)
        text = []
        total = 0
        while total < 2048:
            line = f"{rng.choice(words)}_{rng.randint(0, 9999)} = {rng.randint(0, 10**6)}\n"
            text.append(line)
            total += len(line)
        (sub / f"f{index:05d}.txt").write_text("".join(text)[:2048])


def big(reps: int, workdir: Path, trees: list[str]) -> dict[str, object]:
    makers: dict[str, Callable[[Path], None]] = {"489MB-5000": make_big, "50000x2KB": make_small}
    results: dict[str, object] = {}
    for name in trees:
        workspace = workdir / f"big-{name}"
        workspace.mkdir(parents=True)
        (workspace / "pyproject.toml").write_text(
            '[tool.vx]\n[tool.vx.tasks.gen]\ncmd = "true"\noutputs = ["out/**"]\n'
        )
        pristine = workdir / f"pristine-{name}"
        makers[name](pristine / "out")
        expected = tree_digest(pristine, "out/**/*")
        vx = [sys.executable, "-m", "vx", "run", "gen"]
        archive = workdir / "ref.tar.zst"
        samples: dict[str, list[float]] = {
            k: [] for k in ("vx save", "tar|zstd", "vx restore", "zstd|tar")
        }
        cpu: dict[str, list[float]] = {k: [] for k in samples}

        def place(workspace: Path = workspace, pristine: Path = pristine) -> None:
            shutil.rmtree(workspace / "out", ignore_errors=True)
            shutil.rmtree(workspace / ".vx", ignore_errors=True)
            subprocess.run(["cp", "-a", str(pristine / "out"), str(workspace / "out")], check=True)
            os.sync()

        for rep in range(reps):
            # save: vx archives the tree into its local cache; tar | zstd -3 -T0 into a file.
            order = ["vx", "ref"] if rep % 2 == 0 else ["ref", "vx"]
            for which in order:
                if which == "vx":
                    place()
                    samples["vx save"].append(timed([*vx, "--force"], workspace))
                    cpu["vx save"].append(last_cpu)
                else:
                    os.sync()
                    samples["tar|zstd"].append(
                        timed(
                            [f"tar -cf - out | zstd -q -3 -T0 > {archive}"], workspace, shell=True
                        )
                    )
                    cpu["tar|zstd"].append(last_cpu)
            stored = next((workspace / ".vx" / "cache" / "artifacts").glob("*/*.tar.zst"))
            extract = workdir / "extract"
            for which in order:
                if which == "vx":
                    shutil.rmtree(workspace / "out")
                    os.sync()
                    samples["vx restore"].append(timed(vx, workspace))
                    cpu["vx restore"].append(last_cpu)
                    if tree_digest(workspace, "out/**/*") != expected:
                        sys.exit(f"{name}: vx restored a different tree")
                else:
                    shutil.rmtree(extract, ignore_errors=True)
                    extract.mkdir()
                    os.sync()
                    samples["zstd|tar"].append(
                        timed([f"zstd -q -dc -T0 {stored} | tar -x"], extract, shell=True)
                    )
                    cpu["zstd|tar"].append(last_cpu)
        stats = {key: summary(values) for key, values in samples.items()}
        save_ratio = stats["tar|zstd"]["median"] / stats["vx save"]["median"]
        restore_ratio = stats["zstd|tar"]["median"] / stats["vx restore"]["median"]
        cpu_stats = {key: summary(values) for key, values in cpu.items()}
        print(
            f"big {name}: save vx {fmt(stats['vx save'])} tar|zstd {fmt(stats['tar|zstd'])} "
            f"throughput {save_ratio:.2f}x; restore vx {fmt(stats['vx restore'])} "
            f"zstd|tar {fmt(stats['zstd|tar'])} throughput {restore_ratio:.2f}x; CPU (user+sys) "
            + ", ".join(f"{key} {fmt(value)}" for key, value in cpu_stats.items())
            + f"; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        results[name] = {
            "samples": samples,
            "stats": stats,
            "cpu_samples": cpu,
            "cpu_stats": cpu_stats,
            "load": os.getloadavg()[0],
            "save_throughput_vs_pipeline": save_ratio,
            "restore_throughput_vs_pipeline": restore_ratio,
        }
        shutil.rmtree(workspace)
        shutil.rmtree(pristine)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    remote_args = sub.add_parser("remote", help="fresh clone from a remote cache, vs Turborepo")
    remote_args.add_argument("--sizes", type=int, nargs="*", default=[200, 500])
    remote_args.add_argument("--reps", type=int, default=5)
    big_args = sub.add_parser("big", help="big outputs, vs tar + zstd -T0")
    big_args.add_argument("--trees", nargs="*", default=["489MB-5000", "50000x2KB"])
    big_args.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("zstd") is None:
        sys.exit("the big-output benchmark needs the zstd command (apt-get install zstd)")
    with tempfile.TemporaryDirectory(prefix="vx-cacheio-") as tmp:
        if args.what == "remote":
            found = remote(args.sizes, args.reps, Path(tmp))
        else:
            found = big(args.reps, Path(tmp), args.trees)
    out = HERE / "results" / f"cacheio-{args.what}-latest.json"
    document = {"when": time.strftime("%Y-%m-%d %H:%M"), "reps": args.reps, "results": found}
    out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
