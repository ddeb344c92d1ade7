"""The task cache, end to end: real temporary workspaces, ``vx run`` as a user would.

Hits and restores, exact invalidation, ``^`` inputs, env secrets, dry-run predictions,
``kill -9`` during saves, corrupt and hostile artifacts, concurrent runs on one cache,
``vx cache stats|prune|clear``, the cache flags and the stat cache.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import sqlite3
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import blake3
import pytest
import zstandard
from vx_cache.store import LocalCache

from vx import Artifact
from vx.artifacts import read_meta
from vx.filehash import FileHasher, digest_text
from vx.keys import CACHE_FORMAT
from vx.testing import RunResult, VxWorkspace
from vx.testing import snapshot_tree as snapshot

Make = Callable[[dict[str, Any]], VxWorkspace]

ROOT = {"tool": {"vx": {"members": ["packages/*"]}}}


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GITHUB_ACTIONS", "FORCE_COLOR", "VX_CONCURRENCY", "VX_CACHE_DIR", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)


def project(name: str, tasks: dict[str, Any], *, deps: tuple[str, ...] = ()) -> dict[str, Any]:
    table: dict[str, Any] = {"name": name}
    if deps:
        table["dependencies"] = list(deps)
    return {"project": table, "tool": {"vx": {"tasks": tasks}}}


def warnings(result: RunResult) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("vx: warning:")]


def statuses(result: RunResult) -> dict[str, str]:
    """``{task_id: cache status}`` from the run summary."""
    assert result.summary is not None, result.output
    return {task["id"]: task["cache"].get("status") for task in result.summary["tasks"]}


def dry_run(ws: VxWorkspace, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    result = ws.run("run", *args, "--dry=json", env=env)
    assert result.exit_code == 0, result.output
    return {task["id"]: task for task in json.loads(result.stdout)["tasks"]}


def index_rows(cache_dir: Path) -> list[dict[str, Any]]:
    db = sqlite3.connect(cache_dir / "index.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(row) for row in db.execute("SELECT * FROM entries ORDER BY key")]
    finally:
        db.close()


def set_accessed(cache_dir: Path, task_id: str, accessed_at: float) -> None:
    db = sqlite3.connect(cache_dir / "index.sqlite")
    try:
        with db:
            db.execute(
                "UPDATE entries SET accessed_at = ? WHERE task_id = ?", (accessed_at, task_id)
            )
    finally:
        db.close()


def assert_index_whole(cache_dir: Path, *, orphans: bool = False) -> list[dict[str, Any]]:
    """Every indexed entry is on disk, matches its digest and has readable metadata; every
    other artifact file is a temporary file (never read as an entry) or, with ``orphans``
    (a kill between rename and index insert), a whole file named after its digest, which
    prune collects. Returns the rows."""
    rows = index_rows(cache_dir)
    keys = [row["key"] for row in rows]
    assert len(keys) == len(set(keys))
    artifacts = cache_dir / "artifacts"
    indexed = set()
    for row in rows:
        data = (artifacts / row["file"]).read_bytes()
        assert blake3.blake3(data).hexdigest() == row["digest"]
        assert len(data) == row["size"]
        meta = read_meta(data)
        assert meta["key"] == row["key"]
        assert meta["task"] == row["task_id"]
        indexed.add(row["file"])
    for path in artifacts.glob("*/*") if artifacts.is_dir() else []:
        name = path.relative_to(artifacts).as_posix()
        if name in indexed or path.name.startswith(".tmp-"):
            continue
        assert orphans, f"{name} is not in the index"
        _, digest, *_ = path.name.split(".")
        assert blake3.blake3(path.read_bytes()).hexdigest().startswith(digest), name
    return rows


def outputs_snapshot(ws: VxWorkspace) -> dict[str, Any]:
    tree = snapshot(ws.path, skip=(".vx",))
    return {name: entry for name, entry in tree.items() if "/dist/" in f"/{name}"}


def vx_files_bytes(ws: VxWorkspace) -> Iterator[tuple[Path, bytes]]:
    """Every file vx wrote under .vx/, artifacts decompressed too."""
    for path in sorted((ws.path / ".vx").rglob("*")):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            yield path, data
            if path.name.endswith(".tar.zst"):
                reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
                yield path, reader.read()


# -- the standard workspace ----------------------------------------------------------------

BUILD = (
    "mkdir -p dist && cat src/*.txt {extra} > dist/{name}.txt && "
    "printf '#!/bin/sh\\necho {name}\\n' > dist/run.sh && chmod 775 dist/run.sh && "
    "rm -f dist/ro.txt && echo ro > dist/ro.txt && chmod 400 dist/ro.txt && "
    "chmod 600 dist/{name}.txt && ln -sf {name}.txt dist/latest && "
    "mkdir -p dist/sub && echo nested > dist/sub/n.txt && ln -sfn sub dist/sublink && "
    "ln -f dist/{name}.txt dist/hard.txt && echo built {name}"
)


def standard(make: Make) -> VxWorkspace:
    """core <- api <- web, plus an unrelated ``other``; each has build (and api a test)."""
    return make(
        {
            "pyproject.toml": ROOT,
            "packages/core/pyproject.toml": project(
                "core",
                {"build": {"cmd": BUILD.format(name="core", extra=""), "outputs": ["dist/**"]}},
            ),
            "packages/core/src/a.txt": "core a\n",
            "packages/core/src/b.txt": "core b\n",
            "packages/api/pyproject.toml": project(
                "api",
                {
                    "build": {
                        "cmd": BUILD.format(name="api", extra="../core/dist/core.txt"),
                        "outputs": ["dist/**"],
                        "depends_on": ["^build"],
                    },
                    "test": {
                        "cmd": "cat dist/api.txt > /dev/null && echo api ok",
                        "depends_on": ["build"],
                    },
                },
                deps=("core",),
            ),
            "packages/api/src/a.txt": "api a\n",
            "packages/web/pyproject.toml": project(
                "web",
                {
                    "build": {
                        "cmd": BUILD.format(name="web", extra="../api/dist/api.txt"),
                        "outputs": ["dist/**"],
                        "depends_on": ["^build"],
                    }
                },
                deps=("api",),
            ),
            "packages/web/src/a.txt": "web a\n",
            "packages/other/pyproject.toml": project(
                "other",
                {"build": {"cmd": BUILD.format(name="other", extra=""), "outputs": ["dist/**"]}},
            ),
            "packages/other/src/a.txt": "other a\n",
        }
    )


ALL = {"core#build", "api#build", "api#test", "web#build", "other#build"}


def test_second_run_hits_and_restores_byte_identical_outputs(vx_workspace: Make) -> None:
    ws = standard(vx_workspace)
    first = ws.run("run", "build", "test")
    assert first.exit_code == 0, first.output
    assert set(first.outcomes) == ALL
    assert set(first.outcomes.values()) == {"success"}
    built = outputs_snapshot(ws)
    core_inode = (ws.path / "packages/core/dist/core.txt").stat().st_ino
    assert built["packages/api/dist/run.sh"][1] == 0o775
    assert built["packages/api/dist/ro.txt"][1] == 0o400
    assert built["packages/api/dist/api.txt"][1] == 0o600
    assert built["packages/api/dist/latest"] == ("link", "api.txt")
    assert built["packages/web/dist/sublink"] == ("link", "sub")
    assert built["packages/web/dist/web.txt"][2] == b"web a\napi a\ncore a\ncore b\n"

    # Unchanged: every task is a hit, outputs already current are left alone.
    second = ws.run("run", "build", "test")
    assert second.exit_code == 0, second.output
    assert set(second.outcomes.values()) == {"cached"}
    for id in ALL - {"api#test"}:
        assert second.task(id)["cache"]["restored_outputs"] is False, id
    assert outputs_snapshot(ws) == built
    assert (ws.path / "packages/core/dist/core.txt").stat().st_ino == core_inode
    assert "cache hit, replaying logs" in second.stdout
    assert "web#build: built web" in second.stdout

    # Outputs deleted (and one tampered with): restored byte for byte, modes and links kept.
    for name in ("core", "api", "web", "other"):
        dist = ws.path / "packages" / name / "dist"
        for path in sorted(dist.rglob("*"), reverse=True):
            path.unlink() if path.is_symlink() or path.is_file() else path.rmdir()
    (ws.path / "packages/web/dist").rmdir()
    (ws.path / "packages/api/dist/api.txt").write_text("tampered")
    (ws.path / "packages/api/dist/stray.txt").write_text("not an output of this run")
    third = ws.run("run", "build", "test")
    assert third.exit_code == 0, third.output
    assert set(third.outcomes.values()) == {"cached"}
    for id in ALL - {"api#test"}:
        assert third.task(id)["cache"]["restored_outputs"] is True, id
    assert outputs_snapshot(ws) == built
    api = ws.path / "packages/api/dist"
    assert (api / "hard.txt").stat().st_ino == (api / "api.txt").stat().st_ino  # still linked
    assert not list((ws.path / ".vx" / "tmp").glob("*"))
    fourth = ws.run("run", "build")
    assert all(fourth.task(id)["cache"]["restored_outputs"] is False for id in fourth.outcomes)


def test_one_changed_file_reruns_its_task_and_transitive_dependents(vx_workspace: Make) -> None:
    ws = standard(vx_workspace)
    assert ws.run("run", "build", "test").exit_code == 0
    (ws.path / "packages/api/src/a.txt").write_text("api A\n")
    result = ws.run("run", "build", "test")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {
        "core#build": "cached",
        "other#build": "cached",
        "api#build": "success",
        "api#test": "success",
        "web#build": "success",
    }
    assert result.task("api#build")["cache"]["reason"] == "file modified: packages/api/src/a.txt"
    assert result.task("web#build")["cache"]["reason"] == "dependency changed: api#build"
    assert (ws.path / "packages/web/dist/web.txt").read_text().startswith("web a\napi A\n")

    (ws.path / "packages/core/src/c.txt").write_text("core c\n")
    result = ws.run("run", "build", "test")
    assert {id for id, status in result.outcomes.items() if status == "success"} == ALL - {
        "other#build"
    }
    assert result.task("core#build")["cache"]["reason"] == "file added: packages/core/src/c.txt"

    (ws.path / "packages/core/src/c.txt").unlink()
    result = ws.run("run", "build", "test")
    # Back to an earlier state: all of those keys are in the cache already.
    assert set(result.outcomes.values()) == {"cached"}


def test_default_inputs_honour_gitignore_and_global_inputs_invalidate_all(
    vx_workspace: Make,
) -> None:
    tasks = {"build": {"cmd": "echo built", "outputs": ["dist/**"]}}
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "tool": {"vx": {"members": ["packages/*"], "global_inputs": ["tooling.cfg"]}}
            },
            ".gitignore": "*.log\n",
            "tooling.cfg": "v1",
            "packages/a/pyproject.toml": project("a", tasks),
            "packages/a/.gitignore": "scratch/\n",
            "packages/a/src.py": "",
            "packages/b/pyproject.toml": project("b", tasks),
        }
    )
    assert set(ws.run("run", "build").outcomes.values()) == {"success"}
    (ws.path / "packages/a/debug.log").write_text("ignored by the root .gitignore")
    (ws.path / "packages/a/scratch").mkdir()
    (ws.path / "packages/a/scratch/x.py").write_text("ignored by the project's .gitignore")
    (ws.path / "packages/a/__pycache__").mkdir()
    (ws.path / "packages/a/__pycache__/src.cpython-311.pyc").write_bytes(b"\0")
    (ws.path / "packages/a/dist").mkdir()
    (ws.path / "packages/a/dist/stale.txt").write_text("an output, not an input")
    assert set(ws.run("run", "build").outcomes.values()) == {"cached"}
    assert set(dry_run(ws, "build")["a#build"]["inputs"]) == {
        "packages/a/.gitignore",
        "packages/a/pyproject.toml",
        "packages/a/src.py",
    }

    (ws.path / "tooling.cfg").write_text("v2")
    result = ws.run("run", "build")
    assert result.outcomes == {"a#build": "success", "b#build": "success"}
    assert result.task("b#build")["cache"]["reason"] == "global input modified: tooling.cfg"


def test_caret_inputs_invalidate_across_projects(vx_workspace: Make) -> None:
    # 'lib' has no build task at all: only ^src/** makes app#test depend on its sources.
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/lib/pyproject.toml": project("lib", {}),
            "packages/lib/src/lib/__init__.py": "VALUE = 1\n",
            "packages/lib/README.md": "lib\n",
            "packages/mid/pyproject.toml": project("mid", {}, deps=("lib",)),
            "packages/mid/src/mid.py": "",
            "packages/app/pyproject.toml": project(
                "app",
                {"test": {"cmd": "echo testing", "inputs": ["tests/**", "^src/**"]}},
                deps=("mid",),
            ),
            "packages/app/tests/test_app.py": "",
            "packages/app/notes.txt": "not an input",
        }
    )
    assert ws.run("run", "test").outcomes == {"app#test": "success"}
    assert ws.run("run", "test").outcomes == {"app#test": "cached"}
    inputs = dry_run(ws, "test")["app#test"]["inputs"]
    assert set(inputs) == {
        "packages/app/tests/test_app.py",
        "packages/lib/src/lib/__init__.py",
        "packages/mid/src/mid.py",
    }

    (ws.path / "packages/lib/src/lib/__init__.py").write_text("VALUE = 2\n")
    result = ws.run("run", "test")
    assert result.outcomes == {"app#test": "success"}
    assert result.task("app#test")["cache"]["reason"] == (
        "file modified: packages/lib/src/lib/__init__.py"
    )
    # Outside the ^ glob (or outside the inputs): no effect.
    (ws.path / "packages/lib/README.md").write_text("changed\n")
    (ws.path / "packages/app/notes.txt").write_text("changed\n")
    assert ws.run("run", "test").outcomes == {"app#test": "cached"}


def test_env_change_is_a_miss_naming_the_variable_never_its_value(vx_workspace: Make) -> None:
    secret_1, secret_2 = f"s3cr3t-{os.urandom(8).hex()}", f"s3cr3t-{os.urandom(8).hex()}"
    global_1, global_2 = f"glob4l-{os.urandom(8).hex()}", f"glob4l-{os.urandom(8).hex()}"
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "tool": {"vx": {"members": ["packages/*"], "global_env": ["GLOBAL_TOKEN"]}}
            },
            "packages/app/pyproject.toml": project(
                "app",
                {
                    "deploy": {
                        "cmd": 'test -n "$DEPLOY_TOKEN" && echo deploying',
                        "env": ["DEPLOY_TOKEN", "OPTIONAL_*"],
                    }
                },
            ),
        }
    )
    env = {"DEPLOY_TOKEN": secret_1, "GLOBAL_TOKEN": global_1}
    assert ws.run("run", "deploy", env=env).outcomes == {"app#deploy": "success"}
    assert ws.run("run", "deploy", env=env).outcomes == {"app#deploy": "cached"}

    changed = {**env, "DEPLOY_TOKEN": secret_2}
    result = ws.run("run", "deploy", env=changed)
    assert result.outcomes == {"app#deploy": "success"}
    assert result.task("app#deploy")["cache"]["reason"] == "env changed: DEPLOY_TOKEN"

    changed["GLOBAL_TOKEN"] = global_2
    why = ws.run("why", "app#deploy", env=changed)
    assert why.exit_code == 0, why.output
    assert "cache miss" in why.stdout
    assert "global env changed: GLOBAL_TOKEN" in why.stdout
    why_json = json.loads(ws.run("why", "app#deploy", "--json", env=changed).stdout)
    assert why_json["status"] == "miss"
    assert why_json["changes"] == ["global env changed: GLOBAL_TOKEN"]
    assert ws.run("run", "deploy", env=changed).outcomes == {"app#deploy": "success"}

    changed["OPTIONAL_FLAG"] = "1"
    result = ws.run("run", "deploy", env=changed)
    assert result.outcomes == {"app#deploy": "success"}
    assert result.task("app#deploy")["cache"]["reason"] == "env changed: OPTIONAL_FLAG"
    assert ws.run("why", "app#deploy", env=changed).stdout.startswith("app#deploy: cache hit")

    checked = []
    for path, data in vx_files_bytes(ws):
        for value in (secret_1, secret_2, global_1, global_2):
            assert value.encode() not in data, f"{value} found in {path}"
        checked.append(data)
    assert any(b"deploying" in data for data in checked)  # archives were looked into
    assert any(b"DEPLOY_TOKEN" in data for data in checked)  # manifests were too


def test_dry_run_predicts_the_real_runs_hits(vx_workspace: Make) -> None:
    ws = standard(vx_workspace)
    predicted = dry_run(ws, "build", "test")
    assert {id: t["cache"]["status"] for id, t in predicted.items()} == dict.fromkeys(ALL, "miss")
    assert predicted["core#build"]["cache"]["reason"] == "never ran before"
    first = ws.run("run", "build", "test")
    assert {id: t["hash"] for id, t in predicted.items()} == {
        t["id"]: t["hash"]
        for t in first.summary["tasks"]  # type: ignore[index]
    }

    (ws.path / "packages/api/src/a.txt").write_text("api changed\n")
    (ws.path / "packages/other/src/new.txt").write_text("new\n")
    set_accessed(ws.path / ".vx/cache", "core#build", time.time() - 3600)  # (minute resolution)
    rows_before = {row["task_id"]: row["accessed_at"] for row in index_rows(ws.path / ".vx/cache")}
    predicted = dry_run(ws, "build", "test")
    rows_after = {row["task_id"]: row["accessed_at"] for row in index_rows(ws.path / ".vx/cache")}
    predicted_hits = {id for id, t in predicted.items() if t["cache"]["status"] == "hit"}
    assert predicted_hits == {"core#build"}
    assert rows_after["core#build"] > rows_before["core#build"]  # a probed hit is a use
    assert rows_after["web#build"] == rows_before["web#build"]
    assert predicted["web#build"]["cache"]["reason"] == "dependency changed: api#build"
    assert predicted["other#build"]["cache"]["reason"] == "file added: packages/other/src/new.txt"

    real = ws.run("run", "build", "test")
    assert {id for id, status in statuses(real).items() if status == "hit"} == predicted_hits
    assert {id: t["hash"] for id, t in predicted.items()} == {
        t["id"]: t["hash"]
        for t in real.summary["tasks"]  # type: ignore[index]
    }
    predicted = dry_run(ws, "build", "test")
    assert {t["cache"]["status"] for t in predicted.values()} == {"hit"}


# -- crash safety and concurrency ----------------------------------------------------------

BIG = (
    "mkdir -p dist && for i in 1 2 3 4 5 6; do "
    "head -c 1500000 /dev/urandom > dist/blob$i.bin; done && cat src/seed.txt > dist/seed.txt"
)


def test_kill_9_during_saves_never_leaves_a_corrupt_entry(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/big/pyproject.toml": project(
                "big", {"build": {"cmd": BIG, "outputs": ["dist/**"]}}
            ),
            "packages/big/src/seed.txt": "0",
        }
    )
    cache_dir = ws.path / ".vx" / "cache"
    assert ws.run("run", "build").exit_code == 0
    seed_out = ws.path / "packages/big/dist/seed.txt"
    rng = random.Random(os.getpid())
    killed_while_saving = 0
    for attempt in range(1, 11):
        seed = str(attempt)
        (ws.path / "packages/big/src/seed.txt").write_text(seed)
        process = ws.popen("run", "build")
        # The task writes seed.txt last: from then on vx archives (~9 MB) and saves it.
        deadline = time.monotonic() + 30
        while process.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if seed_out.read_text() == seed:
                    break
            time.sleep(0.002)
        time.sleep(rng.uniform(0.0, 0.12))
        killed_while_saving += process.poll() is None
        process.kill()
        process.communicate(timeout=30)
    assert killed_while_saving >= 4, "the kills landed after vx had finished"

    rows = assert_index_whole(cache_dir, orphans=True)
    assert len(rows) >= 1
    stats = ws.run("cache", "stats", "--json")
    assert stats.exit_code == 0, stats.output
    assert json.loads(stats.stdout)["entries"] == len(rows)
    # A normal run afterwards succeeds and finds nothing corrupt.
    (ws.path / "packages/big/src/seed.txt").write_text("0")
    result = ws.run("run", "build")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"big#build": "cached"}
    assert warnings(result) == []
    assert (ws.path / "packages/big/dist/seed.txt").read_text() == "0"
    for attempt in range(1, 11):
        (ws.path / "packages/big/src/seed.txt").write_text(str(attempt))
        result = ws.run("run", "build")
        assert result.exit_code == 0, result.output
        assert warnings(result) == [], result.output
        assert (ws.path / "packages/big/dist/seed.txt").read_text() == str(attempt)
    assert len(assert_index_whole(cache_dir, orphans=True)) == 11
    # Files a kill left behind (temporary, or renamed but not indexed) are garbage-collected
    # by prune once they are an hour old (younger ones may belong to a running vx).
    old = time.time() - 7200
    for path in (cache_dir / "artifacts").glob("*/*"):
        os.utime(path, (old, old))
    assert ws.run("cache", "prune", "--max-size", "10GB").exit_code == 0
    assert not list((cache_dir / "artifacts").glob("*/.tmp-*"))
    assert len(assert_index_whole(cache_dir)) == 11


def test_four_concurrent_runs_share_one_cache(vx_workspace: Make, tmp_path: Path) -> None:
    cache_dir = tmp_path / "shared-cache"
    tasks = {
        f"t{i}": {
            "cmd": f"sleep 0.2 && mkdir -p dist && echo t{i} > dist/t{i}.txt",
            "outputs": [f"dist/t{i}.txt"],
        }
        for i in range(6)
    }
    files = {
        "pyproject.toml": ROOT,
        "packages/a/pyproject.toml": project("a", tasks),
        "packages/a/src/x.txt": "x",
    }
    workspaces = [vx_workspace(files) for _ in range(4)]
    env = {"VX_CACHE_DIR": str(cache_dir)}
    names = [f"t{i}" for i in range(6)]
    processes = [w.popen("run", *names, "-j", "3", env=env) for w in workspaces]
    results = [p.communicate(timeout=60) for p in processes]
    for process, (out, err) in zip(processes, results, strict=True):
        assert process.returncode == 0, out + err
        assert "warning" not in err, err
    rows = assert_index_whole(cache_dir)
    assert sorted(row["task_id"] for row in rows) == sorted(f"a#{name}" for name in names)
    assert len(list((cache_dir / "artifacts").glob("*/*.tar.zst"))) == len(rows)
    assert not list((cache_dir / "artifacts").glob("*/.tmp-*"))
    again = workspaces[0].run("run", *names, env=env)
    assert set(again.outcomes.values()) == {"cached"}
    assert not (workspaces[0].path / ".vx" / "cache").exists()


def _flip(data: bytes) -> bytes:
    damaged = bytearray(data)
    for offset in (len(data) // 3, len(data) // 2, len(data) - 5):
        damaged[offset] ^= 0xFF
    return bytes(damaged)


DAMAGES: dict[str, Callable[[bytes], bytes]] = {
    "flip": _flip,
    "truncate": lambda data: data[: len(data) // 2],
    "empty": lambda data: b"",
}
#: Indexed under their own digest, as a buggy remote or disk might serve them: only zstd and
#: tar decoding can tell.
DAMAGES_WITH_VALID_DIGEST: dict[str, Callable[[bytes], bytes]] = {
    "cut-tail": lambda data: data[:-40],
    "cut-middle": lambda data: data[: len(data) * 2 // 3],
    "flip": _flip,
    "not-zstd": lambda data: os.urandom(len(data)),
}


@pytest.mark.parametrize(
    ("damage", "valid_digest"),
    [(name, False) for name in DAMAGES] + [(name, True) for name in DAMAGES_WITH_VALID_DIGEST],
)
def test_corrupt_artifact_is_detected_evicted_and_rerun(
    vx_workspace: Make, damage: str, valid_digest: bool
) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a",
                {
                    "build": {
                        "cmd": "mkdir -p dist && seq 1 200000 > dist/n.txt && echo ran",
                        "outputs": ["dist/**"],
                    }
                },
            ),
        }
    )
    cache_dir = ws.path / ".vx" / "cache"
    assert ws.run("run", "build").outcomes == {"a#build": "success"}
    (row,) = index_rows(cache_dir)
    path = cache_dir / "artifacts" / row["file"]
    if valid_digest:
        store = LocalCache(cache_dir)
        data = DAMAGES_WITH_VALID_DIGEST[damage](path.read_bytes())
        store.put(row["key"], Artifact(key=row["key"], data=data, task_id="a#build"))
        store.close()
        assert not path.exists()
    else:
        path.write_bytes(DAMAGES[damage](path.read_bytes()))
    (ws.path / "packages/a/dist/n.txt").unlink()

    result = ws.run("run", "build")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"a#build": "success"}
    (warning,) = warnings(result)
    assert "a#build" in warning
    assert row["key"][:16] in warning
    assert "a#build: ran" in result.stdout
    assert (ws.path / "packages/a/dist/n.txt").read_text().startswith("1\n2\n3\n")
    (new_row,) = assert_index_whole(cache_dir)
    assert new_row["key"] == row["key"]

    (ws.path / "packages/a/dist/n.txt").unlink()
    again = ws.run("run", "build")
    assert again.outcomes == {"a#build": "cached"}
    assert warnings(again) == []
    assert (ws.path / "packages/a/dist/n.txt").read_text().startswith("1\n2\n3\n")


def test_highly_compressible_outputs_round_trip(vx_workspace: Make) -> None:
    """zstd squeezes zeros ~30000:1; a legitimate artifact must not look like a zip bomb."""
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a",
                {
                    "build": {
                        "cmd": "mkdir -p dist && head -c 24000000 /dev/zero > dist/zeros.img",
                        "outputs": ["dist/**"],
                    }
                },
            ),
        }
    )
    assert ws.run("run", "build").outcomes == {"a#build": "success"}
    (ws.path / "packages/a/dist/zeros.img").unlink()
    result = ws.run("run", "build")
    assert warnings(result) == [], result.output
    assert result.outcomes == {"a#build": "cached"}
    assert (ws.path / "packages/a/dist/zeros.img").stat().st_size == 24000000


# -- hostile archives ----------------------------------------------------------------------

APP_BUILD = "mkdir -p dist && cp src/main.txt dist/out.txt && echo built app"


def hostile_workspace(make: Make, tmp_path: Path) -> VxWorkspace:
    outside = tmp_path / "outside"
    outside.mkdir(exist_ok=True)
    (outside / "secret.txt").write_text("outside secret\n")
    return make(
        {
            "pyproject.toml": ROOT,
            "packages/app/pyproject.toml": project(
                "app", {"build": {"cmd": APP_BUILD, "outputs": ["dist/**"]}}
            ),
            "packages/app/src/main.txt": "the real output\n",
            "packages/other/pyproject.toml": project("other", {}),
            "packages/other/keep.txt": "other\n",
        }
    )


def _info(name: str, kind: bytes = tarfile.REGTYPE, **attrs: Any) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = attrs.pop("mode", 0o644)
    info.mtime = int(time.time())
    for attr, value in attrs.items():
        setattr(info, attr, value)
    return info


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        count = min(len(buffer), self.left)
        buffer[:count] = b"\0" * count
        self.left -= count
        return count


def build_archive(
    key: str,
    members: list[tuple[tarfile.TarInfo, bytes | io.RawIOBase | None]],
    *,
    expanded_size: int | None = None,
) -> bytes:
    """A zstd tar in the artifact layout whose metadata vouches for every member."""
    outputs: dict[str, Any] = {}
    for info, _ in members:
        if info.issym():
            outputs[info.name] = {"type": "symlink", "target": info.linkname}
        else:
            outputs[info.name] = {
                "type": "file",
                "size": info.size,
                "mtime_ns": 0,
                "mode": 0o644,
                "digest": "0" * 64,
            }
    declared = sum(info.size for info, _ in members) if expanded_size is None else expanded_size
    meta = {
        "format": CACHE_FORMAT,
        "key": key,
        "task": "app#build",
        "exit_code": 0,
        "duration_ms": 1.0,
        "created_at": time.time(),
        "manifest": {},
        "outputs": outputs,
        "expanded_size": declared,
    }
    raw = io.BytesIO()
    compressor = zstandard.ZstdCompressor(level=3, write_checksum=True)
    with (
        compressor.stream_writer(raw, closefd=False) as writer,
        tarfile.open(fileobj=writer, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for name, content in (
            (".vx-artifact/meta.json", json.dumps(meta).encode()),
            (".vx-artifact/log", b"hostile log\n"),
        ):
            tar.addfile(_info(name, size=len(content)), io.BytesIO(content))
        for info, payload in members:
            if isinstance(payload, bytes):
                tar.addfile(info, io.BytesIO(payload))
            else:
                tar.addfile(info, payload)
    return raw.getvalue()


def _cases(outside: Path) -> dict[str, list[tuple[tarfile.TarInfo, Any]]]:
    dist = "packages/app/dist"
    up = "../../../../outside"  # from packages/app/dist to tmp_path/outside
    loop = [(_info(f"{dist}/a/s", tarfile.SYMTYPE, linkname="."), None)]
    deep = "/".join(["s"] * 12) + "/" + "/".join([".."] * 12)
    payload = b"pwned\n"
    return {
        "absolute-path": [(_info(str(outside / "pwned.txt"), size=6), payload)],
        "dotdot-path": [(_info(f"{dist}/../../../../outside/pwned.txt", size=6), payload)],
        "leading-dotdot": [(_info("../outside/pwned.txt", size=6), payload)],
        "outside-declared-outputs": [(_info("packages/app/src/main.txt", size=6), payload)],
        "other-project": [(_info("packages/other/keep.txt", size=6), payload)],
        "symlink-absolute": [
            (_info(f"{dist}/out.txt", tarfile.SYMTYPE, linkname=str(outside / "secret.txt")), None)
        ],
        "symlink-relative-escape": [
            (_info(f"{dist}/out.txt", tarfile.SYMTYPE, linkname=f"{up}/secret.txt"), None)
        ],
        "symlink-to-project-sources": [
            (_info(f"{dist}/out.txt", tarfile.SYMTYPE, linkname="../src/main.txt"), None)
        ],
        "symlink-escape-through-archived-symlink": [
            (
                _info(f"{dist}/out.txt", tarfile.SYMTYPE, linkname=f"a/{deep}{outside}/secret.txt"),
                None,
            ),
            *loop,
        ],
        "symlink-escape-through-archived-symlink-loop-first": [
            *loop,
            (
                _info(f"{dist}/out.txt", tarfile.SYMTYPE, linkname=f"a/{deep}{outside}/secret.txt"),
                None,
            ),
        ],
        "file-through-archived-symlink": [
            (_info(f"{dist}/d", tarfile.SYMTYPE, linkname=f"a/{deep}{outside}"), None),
            *loop,
            (_info(f"{dist}/d/pwned.txt", size=6), payload),
        ],
        "hardlink-absolute": [
            (_info(f"{dist}/out.txt", tarfile.LNKTYPE, linkname=str(outside / "secret.txt")), None)
        ],
        "hardlink-dotdot": [
            (_info(f"{dist}/out.txt", tarfile.LNKTYPE, linkname=f"{dist}/{up}/secret.txt"), None)
        ],
        "hardlink-to-sources": [
            (_info(f"{dist}/out.txt", tarfile.LNKTYPE, linkname="packages/app/src/main.txt"), None)
        ],
        "char-device": [(_info(f"{dist}/out.txt", tarfile.CHRTYPE, devmajor=1, devminor=3), None)],
        "block-device": [(_info(f"{dist}/out.txt", tarfile.BLKTYPE, devmajor=7, devminor=0), None)],
        "fifo": [(_info(f"{dist}/out.txt", tarfile.FIFOTYPE), None)],
    }


def _hostile_run(ws: VxWorkspace, tmp_path: Path, data_for: Callable[[str], bytes]) -> None:
    key = dry_run(ws, "build")["app#build"]["hash"]
    store = LocalCache(ws.path / ".vx" / "cache")
    store.put(key, Artifact(key=key, data=data_for(key), task_id="app#build"))
    store.close()
    outside_before = snapshot(tmp_path / "outside")
    workspace_before = snapshot(ws.path, skip=(".vx", "packages/app/dist"))

    result = ws.run("run", "build")
    assert result.exit_code == 0, result.output
    assert result.outcomes == {"app#build": "success"}, result.output
    (warning,) = warnings(result)
    assert "unusable" in warning
    assert key[:16] in warning
    assert "hostile log" not in result.stdout
    assert snapshot(tmp_path / "outside") == outside_before
    assert snapshot(ws.path, skip=(".vx", "packages/app/dist")) == workspace_before
    dist = snapshot(ws.path / "packages/app/dist")
    assert list(dist) == ["out.txt"], dist
    assert dist["out.txt"][::2] == ("file", b"the real output\n")
    assert not list((ws.path / ".vx" / "tmp").glob("*"))
    # The hostile entry was evicted and replaced by the real one.
    (row,) = assert_index_whole(ws.path / ".vx" / "cache")
    assert read_meta((ws.path / ".vx/cache/artifacts" / row["file"]).read_bytes())["outputs"]
    (ws.path / "packages/app/dist/out.txt").unlink()
    again = ws.run("run", "build")
    assert again.outcomes == {"app#build": "cached"}
    assert warnings(again) == []
    assert (ws.path / "packages/app/dist/out.txt").read_text() == "the real output\n"


@pytest.mark.parametrize("case", sorted(_cases(Path("/x"))))
def test_hostile_archive_is_refused(vx_workspace: Make, tmp_path: Path, case: str) -> None:
    ws = hostile_workspace(vx_workspace, tmp_path)
    members = _cases(tmp_path / "outside")[case]
    _hostile_run(ws, tmp_path, lambda key: build_archive(key, members))


@pytest.mark.parametrize("variant", ["large-file-small-declared-size", "tiny-payload-huge-claim"])
def test_zip_bomb_is_refused(vx_workspace: Make, tmp_path: Path, variant: str) -> None:
    ws = hostile_workspace(vx_workspace, tmp_path)
    name = "packages/app/dist/out.txt"

    def data_for(key: str) -> bytes:
        if variant == "large-file-small-declared-size":
            size = 64 << 20
            return build_archive(key, [(_info(name, size=size), _Zeros(size))], expanded_size=100)
        return build_archive(key, [(_info(name, size=6), b"small\n")], expanded_size=1 << 40)

    data = data_for("0" * 64)
    assert len(data) < 64 << 10  # the bomb really is small
    _hostile_run(ws, tmp_path, data_for)


def test_hostile_archive_for_a_root_project_task(vx_workspace: Make, tmp_path: Path) -> None:
    """The workspace root as a project: every path is 'inside the project', outputs decide."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("outside secret\n")
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "project": {"name": "root"},
                "tool": {
                    "vx": {"tasks": {"build": {"cmd": "echo real > out.txt", "outputs": ["*.txt"]}}}
                },
            },
        }
    )
    cases: list[list[tuple[tarfile.TarInfo, bytes | io.RawIOBase | None]]] = [
        [(_info(str(outside / "pwned.txt"), size=6), b"pwned\n")],
        [(_info("out.txt", tarfile.LNKTYPE, linkname=str(outside / "secret.txt")), None)],
        [(_info("out.txt", tarfile.SYMTYPE, linkname="../outside/secret.txt"), None)],
    ]
    for members in cases:
        key = dry_run(ws, "build")["root#build"]["hash"]
        store = LocalCache(ws.path / ".vx" / "cache")
        store.delete(key)
        store.put(key, Artifact(key=key, data=build_archive(key, members), task_id="root#build"))
        store.close()
        before = snapshot(outside)
        result = ws.run("run", "build")
        assert result.exit_code == 0, result.output
        assert result.outcomes == {"root#build": "success"}
        assert len(warnings(result)) == 1, result.output
        assert snapshot(outside) == before
        assert (ws.path / "out.txt").read_text() == "real\n"
        assert not (ws.path / "out.txt").is_symlink()


# -- vx cache stats | prune | clear, locations ----------------------------------------------


def _sized_workspace(make: Make, extra: dict[str, Any] | None = None) -> VxWorkspace:
    """Three tasks whose artifacts are ~100, ~200 and ~300 KB (incompressible)."""
    tasks = {
        name: {
            "cmd": f"mkdir -p dist && head -c {size} /dev/urandom > dist/{name}.bin",
            "outputs": [f"dist/{name}.bin"],
        }
        for name, size in (("small", 100_000), ("medium", 200_000), ("large", 300_000))
    }
    root: dict[str, Any] = {"tool": {"vx": {"members": ["packages/*"], **(extra or {})}}}
    return make({"pyproject.toml": root, "packages/a/pyproject.toml": project("a", tasks)})


def _sizes(cache_dir: Path) -> dict[str, int]:
    return {row["task_id"].partition("#")[2]: row["size"] for row in index_rows(cache_dir)}


def test_prune_by_size_is_lru_by_accessed_at(vx_workspace: Make) -> None:
    ws = _sized_workspace(vx_workspace)
    cache_dir = ws.path / ".vx" / "cache"
    assert ws.run("run", "small", "medium", "large").exit_code == 0
    sizes = _sizes(cache_dir)
    assert set(sizes) == {"small", "medium", "large"}
    assert sizes["small"] > 100_000
    now = time.time()
    # The large entry is the most recently used; small is the least.
    for name, age in (("small", 300), ("medium", 200), ("large", 100)):
        set_accessed(cache_dir, f"a#{name}", now - age)
    bound = sizes["large"] + sizes["small"] + 1000

    result = ws.run("cache", "prune", "--max-size", f"{bound / 1024:.0f}KB")
    assert result.exit_code == 0, result.output
    assert "evicted 2 entries" in result.stdout
    assert set(_sizes(cache_dir)) == {"large"}
    assert "evicted, cleared, or never saved" in ws.run("why", "a#small").stdout
    assert sum(_sizes(cache_dir).values()) <= bound
    assert len(list((cache_dir / "artifacts").glob("*/*.tar.zst"))) == 1

    # A hit counts as a use: 'small' is re-used after 'large', so 'large' goes first.
    assert ws.run("run", "small", "medium").exit_code == 0
    set_accessed(cache_dir, "a#large", time.time() - 1000)
    set_accessed(cache_dir, "a#small", time.time() - 2000)
    set_accessed(cache_dir, "a#medium", time.time() - 10)
    assert ws.run("run", "small").outcomes == {"a#small": "cached"}
    sizes = _sizes(cache_dir)  # re-run: new random bytes, sizes may differ by a few bytes
    keep = str(sizes["small"] + sizes["medium"])
    assert ws.run("cache", "prune", "--max-size", keep).exit_code == 0
    assert set(_sizes(cache_dir)) == {"small", "medium"}


def test_prune_by_age_and_both_bounds(vx_workspace: Make) -> None:
    ws = _sized_workspace(vx_workspace)
    cache_dir = ws.path / ".vx" / "cache"
    assert ws.run("run", "small", "medium", "large").exit_code == 0
    sizes = _sizes(cache_dir)
    now = time.time()
    set_accessed(cache_dir, "a#small", now - 3 * 86400)
    set_accessed(cache_dir, "a#medium", now - 2 * 3600)
    set_accessed(cache_dir, "a#large", now - 60)

    assert ws.run("cache", "prune", "--max-age", "1d").exit_code == 0
    assert set(_sizes(cache_dir)) == {"medium", "large"}
    # Age keeps both; size then evicts the least recently used of what is left.
    result = ws.run("cache", "prune", "--max-age", "7d", "--max-size", str(sizes["large"]))
    assert result.exit_code == 0
    assert set(_sizes(cache_dir)) == {"large"}
    assert ws.run("cache", "prune", "--max-age", "30s").exit_code == 0
    assert _sizes(cache_dir) == {}

    bad = ws.run("cache", "prune", "--max-size", "lots")
    assert bad.exit_code != 0
    assert "5GB" in bad.stderr
    assert ws.run("cache", "prune").exit_code != 0


def test_prune_dry_only_lists(vx_workspace: Make) -> None:
    ws = _sized_workspace(vx_workspace)
    cache_dir = ws.path / ".vx" / "cache"
    assert ws.run("run", "small", "medium", "large").exit_code == 0
    now = time.time()
    for name, age in (("small", 3 * 86400), ("medium", 200), ("large", 100)):
        set_accessed(cache_dir, f"a#{name}", now - age)
    sizes = _sizes(cache_dir)
    dry = ws.run("cache", "prune", "--max-age", "1d", "--dry")
    assert dry.exit_code == 0, dry.output
    assert [line.split()[3] for line in dry.stdout.splitlines()[:-1]] == ["a#small"]
    bound = sizes["large"] + 1000
    dry = ws.run("cache", "prune", "--max-size", str(bound), "--dry")
    assert dry.exit_code == 0, dry.output
    assert "would evict 2 entries" in dry.stdout
    assert "a#medium" in dry.stdout
    assert "a#large" not in dry.stdout
    assert _sizes(cache_dir) == sizes
    assert len(list((cache_dir / "artifacts").glob("*/*.tar.zst"))) == 3


def test_configured_max_size_prunes_after_each_run(vx_workspace: Make) -> None:
    ws = _sized_workspace(vx_workspace, {"cache": {"max_size": "450KB"}})
    cache_dir = ws.path / ".vx" / "cache"
    result = ws.run("run", "small", "medium", "large")
    assert result.exit_code == 0, result.output
    sizes = _sizes(cache_dir)
    assert 0 < sum(sizes.values()) <= 450 * 1024
    assert len(sizes) < 3


def test_configured_limits_are_validated(vx_workspace: Make) -> None:
    ws = _sized_workspace(vx_workspace, {"cache": {"max_size": "lots", "max_age": "7d"}})
    result = ws.run("run", "small")
    assert result.exit_code == 78
    result.fnmatch_lines(
        [
            "vx: error: *pyproject.toml: tool.vx.cache.max_size: expected a size like 500MB "
            "or 5GB (B, KB, MB, GB, TB), got 'lots'"
        ],
        stream="stderr",
    )
    result.no_fnmatch_line("*max_age*")


def test_stats_and_clear(vx_workspace: Make) -> None:
    ws = _sized_workspace(vx_workspace)
    empty = json.loads(ws.run("cache", "stats", "--json").stdout)
    assert empty["entries"] == 0
    assert empty["hit_rate"] is None
    assert ws.run("run", "small", "medium").exit_code == 0
    assert ws.run("run", "small", "medium", "large").exit_code == 0
    stats = json.loads(ws.run("cache", "stats", "--json").stdout)
    assert stats["directory"] == str(ws.path / ".vx" / "cache")
    assert stats["entries"] == 3
    assert stats["total_size"] == sum(_sizes(ws.path / ".vx" / "cache").values())
    assert stats["total_size"] > 600_000
    assert stats["recent_runs"] == 2
    assert (stats["hits"], stats["remote_hits"], stats["misses"]) == (2, 0, 3)
    assert stats["hit_rate"] == 0.4
    text = ws.run("cache", "stats").stdout
    assert "entries:   3" in text
    assert "40%" in text

    cleared = ws.run("cache", "clear")
    assert cleared.exit_code == 0
    assert "removed 3 cache entries" in cleared.stdout
    assert json.loads(ws.run("cache", "stats", "--json").stdout)["entries"] == 0
    assert not [p for p in (ws.path / ".vx/cache/artifacts").rglob("*") if p.is_file()]
    assert set(ws.run("run", "small").outcomes.values()) == {"success"}


def test_cache_dir_from_env_and_settings(vx_workspace: Make, tmp_path: Path) -> None:
    ws = _sized_workspace(vx_workspace, {"cache": {"dir": "build-cache"}})
    assert ws.run("run", "small").exit_code == 0
    assert len(index_rows(ws.path / "build-cache")) == 1
    assert not (ws.path / ".vx" / "cache").exists()

    elsewhere = tmp_path / "elsewhere"
    env = {"VX_CACHE_DIR": str(elsewhere)}
    assert ws.run("run", "small", env=env).outcomes == {"a#small": "success"}
    assert ws.run("run", "small", env=env).outcomes == {"a#small": "cached"}
    assert len(index_rows(elsewhere)) == 1
    assert json.loads(ws.run("cache", "stats", "--json", env=env).stdout)["directory"] == str(
        elsewhere
    )
    assert ws.run("run", "small").outcomes == {"a#small": "cached"}


def test_cache_dir_inside_the_workspace_is_not_an_input(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": {
                "project": {"name": "root"},
                "tool": {
                    "vx": {
                        "cache": {"dir": "build-cache"},
                        "tasks": {"build": {"cmd": "echo hi > out.txt", "outputs": ["out.txt"]}},
                    }
                },
            },
            "src.txt": "source",
        }
    )
    assert ws.run("run", "build").outcomes == {"root#build": "success"}
    assert ws.run("run", "build").outcomes == {"root#build": "cached"}
    inputs = dry_run(ws, "build")["root#build"]["inputs"]
    assert set(inputs) == {"pyproject.toml", "src.txt"}


# -- flags --------------------------------------------------------------------------------

NON_HERMETIC = "mkdir -p dist && cat ../../counter > dist/out.txt"


def _flag_workspace(make: Make) -> VxWorkspace:
    ws = make(
        {
            "pyproject.toml": ROOT,
            "counter": "1",
            "packages/a/pyproject.toml": project(
                "a",
                {
                    "build": {"cmd": NON_HERMETIC + " && echo building", "outputs": ["dist/**"]},
                    "lint": {"cmd": "echo linting", "cache": False},
                },
            ),
        }
    )
    return ws


def test_force_reruns_and_still_writes(vx_workspace: Make) -> None:
    ws = _flag_workspace(vx_workspace)
    out = ws.path / "packages/a/dist/out.txt"
    assert ws.run("run", "build").outcomes == {"a#build": "success"}
    (ws.path / "counter").write_text("2")  # not an input: the task is not hermetic
    forced = ws.run("run", "build", "--force")
    assert forced.outcomes == {"a#build": "success"}
    assert forced.task("a#build")["cache"]["reason"] == "--force"
    assert out.read_text() == "2"
    out.unlink()
    # The forced run's result replaced the entry.
    assert ws.run("run", "build").outcomes == {"a#build": "cached"}
    assert out.read_text() == "2"
    assert len(index_rows(ws.path / ".vx" / "cache")) == 1
    assert len(list((ws.path / ".vx/cache/artifacts").glob("*/*.tar.zst"))) == 1


def test_cache_read_only_and_disabled_layers(vx_workspace: Make) -> None:
    ws = _flag_workspace(vx_workspace)
    cache_dir = ws.path / ".vx" / "cache"
    assert ws.run("run", "build", "--cache=local:r").outcomes == {"a#build": "success"}
    assert not (cache_dir / "index.sqlite").exists() or index_rows(cache_dir) == []
    assert ws.run("run", "build", "--cache=local:rw").outcomes == {"a#build": "success"}
    assert ws.run("run", "build", "--cache=local:r").outcomes == {"a#build": "cached"}
    assert ws.run("run", "build", "--cache=local:").outcomes == {"a#build": "success"}
    (ws.path / "counter").write_text("3")
    (ws.path / "packages/a/new.txt").write_text("new input")
    assert ws.run("run", "build", "--cache=local:").outcomes == {"a#build": "success"}
    assert len(index_rows(cache_dir)) == 1
    assert ws.run("run", "build", "--cache=local:w").outcomes == {"a#build": "success"}
    assert ws.run("run", "build").outcomes == {"a#build": "cached"}
    assert len(index_rows(cache_dir)) == 2
    bad = ws.run("run", "build", "--cache=local")
    assert bad.exit_code != 0
    assert "LAYER:MODE" in bad.stderr


def test_cache_false_always_runs(vx_workspace: Make) -> None:
    ws = _flag_workspace(vx_workspace)
    for _ in range(2):
        result = ws.run("run", "lint")
        assert result.outcomes == {"a#lint": "success"}
        assert result.task("a#lint")["cache"]["status"] == "disabled"
        assert "a#lint: linting" in result.stdout
    assert dry_run(ws, "lint")["a#lint"]["cache"]["status"] == "disabled"
    assert "not cached (cache = false)" in ws.run("why", "a#lint").stdout
    assert index_rows(ws.path / ".vx" / "cache") == []


def test_output_logs_on_hits(vx_workspace: Make) -> None:
    ws = _flag_workspace(vx_workspace)
    assert ws.run("run", "build").exit_code == 0
    full = ws.run("run", "build", "--output-logs=full")
    assert full.outcomes == {"a#build": "cached"}
    lines = [line for line in full.stdout.splitlines() if line.startswith("a#build: ")]
    assert lines[0].startswith("a#build: cache hit, replaying logs ")
    assert lines[1:] == ["a#build: building"]

    new_only = ws.run("run", "build", "--output-logs=new-only")
    lines = [line for line in new_only.stdout.splitlines() if line.startswith("a#build")]
    assert len(lines) == 1
    assert "cache hit" in lines[0]
    assert "building" not in new_only.stdout
    for mode in ("errors-only", "none"):
        quiet = ws.run("run", "build", f"--output-logs={mode}")
        assert "building" not in quiet.stdout
        assert "cache hit" not in quiet.stdout


# -- why, the stat cache --------------------------------------------------------------------


def test_why_explains_every_kind_of_change(vx_workspace: Make) -> None:
    ws = standard(vx_workspace)
    assert "never ran before" in ws.run("why", "api#build").stdout
    assert ws.run("run", "build").exit_code == 0
    assert ws.run("why", "api#build").stdout.startswith("api#build: cache hit in 'local'")
    (ws.path / "packages/core/src/b.txt").unlink()
    (ws.path / "packages/api/src/new.txt").write_text("n")
    why = ws.run("why", "web#build").stdout
    assert "dependency changed: api#build" in why
    api = json.loads(ws.run("why", "api#build", "--json").stdout)
    assert api["changes"] == [
        "file added: packages/api/src/new.txt",
        "dependency changed: core#build",
    ]
    core = json.loads(ws.run("why", "core#build", "--json").stdout)
    assert core["changes"] == ["file removed: packages/core/src/b.txt"]
    ws.write(
        {
            "packages/other/pyproject.toml": project(
                "other", {"build": {"cmd": "echo changed", "outputs": ["dist/**"]}}
            )
        }
    )
    other = json.loads(ws.run("why", "other#build", "--json").stdout)
    assert "task command changed" in other["changes"]
    assert "file modified: packages/other/pyproject.toml" in other["changes"]


def test_stat_cache_skips_unchanged_files_and_sees_restored_mtimes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "f.txt"
    path.write_text("AAAA")
    source = str(path)
    cache_file = tmp_path / "stat-cache"
    reads: list[str] = []
    original = FileHasher._digest_one

    def counting(self: FileHasher, item: tuple[str, os.stat_result]) -> str:
        reads.append(item[0])
        return original(self, item)

    monkeypatch.setattr(FileHasher, "_digest_one", counting)

    def hasher() -> FileHasher:
        made = FileHasher(cache_file)
        made._started = time.time() + 60  # nothing counts as "modified just now"
        return made

    first = hasher()
    assert first.digests([source]) == {source: digest_text("AAAA")}
    first.save()
    assert hasher().digests([source]) == {source: digest_text("AAAA")}
    assert reads == [source]  # the second hasher did not read the file

    st = path.stat()
    path.write_text("BBBB")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert hasher().digests([source]) == {source: digest_text("BBBB")}
    assert reads == [source, source]


def test_stat_cache_detects_edits(vx_workspace: Make) -> None:
    """Unchanged files are not re-read (size, mtime, inode, ctime); any edit is detected,
    including one whose size and mtime were put back (``touch -d``): ctime still moves."""
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("a", {"build": {"cmd": "cat src.txt"}}),
            "packages/a/src.txt": "AAAA",
        }
    )
    source = ws.path / "packages/a/src.txt"
    old = time.time() - 3600
    os.utime(source, (old, old))  # outside the racy window: the stat cache keeps it
    assert ws.run("run", "build").outcomes == {"a#build": "success"}
    assert ws.run("run", "build").outcomes == {"a#build": "cached"}

    source.write_text("BBBB")  # same size, new mtime
    result = ws.run("run", "build")
    assert result.outcomes == {"a#build": "success"}
    assert "a#build: BBBB" in result.stdout

    st = source.stat()
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns - 3600 * 10**9))
    assert ws.run("run", "build").outcomes == {"a#build": "cached"}  # re-read, same content
    st = source.stat()
    source.write_text("CCCC")
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))  # size and mtime as before
    assert source.stat().st_mtime_ns == st.st_mtime_ns
    assert source.stat().st_size == st.st_size
    result = ws.run("run", "build")
    assert result.outcomes == {"a#build": "success"}, "stale stat-cache hit"
    assert "a#build: CCCC" in result.stdout


def test_an_input_edited_while_the_task_runs_is_not_cached_under_the_old_key(
    vx_workspace: Make,
) -> None:
    """The key describes the inputs before the run; outputs made from an edit that landed
    during it must not be stored under that key (reverting the edit would restore them)."""
    edit_then_build = "echo v2 > src/a.txt && mkdir -p out && cp src/a.txt out/a.txt"
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project(
                "a",
                {"build": {"cmd": edit_then_build, "inputs": ["src/**"], "outputs": ["out/**"]}},
            ),
            "packages/a/src/a.txt": "v1\n",
        }
    )
    first = ws.run("run", "build")
    assert first.outcomes == {"a#build": "success"}
    assert (
        "a#build: not cached: its input packages/a/src/a.txt changed while it ran" in first.stderr
    ), first.output
    ws.write({"packages/a/src/a.txt": "v1\n"})  # the edit reverted: the key is the first one
    second = ws.run("run", "build")
    assert second.outcomes == {"a#build": "success"}  # not a hit restoring v2 for v1

    stable = "mkdir -p out && cp src/a.txt out/a.txt"
    ws.write(
        {
            "packages/a/pyproject.toml": project(
                "a", {"build": {"cmd": stable, "inputs": ["src/**"], "outputs": ["out/**"]}}
            )
        }
    )
    assert ws.run("run", "build").outcomes == {"a#build": "success"}
    assert ws.run("run", "build").outcomes == {"a#build": "cached"}


def test_root_inputs_put_a_shared_root_file_in_one_tasks_key(vx_workspace: Make) -> None:
    """``//ruff.toml``: a root file (shared tool configuration) in the key of the tasks
    that read it, and only theirs (``global_inputs`` would change every key)."""
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "ruff.toml": "line-length = 100\n",
            "packages/a/pyproject.toml": project(
                "a",
                {
                    "lint": {"cmd": "cat ../../ruff.toml", "inputs": ["**", "//ruff.toml"]},
                    "build": {"cmd": "echo built"},
                },
            ),
            "packages/a/src.txt": "a\n",
        }
    )
    assert ws.run("run", "lint", "build").outcomes == {"a#lint": "success", "a#build": "success"}
    ws.write({"ruff.toml": "line-length = 120\n"})
    changed = ws.run("run", "lint", "build")
    assert changed.outcomes == {"a#lint": "success", "a#build": "cached"}
    assert "a#lint: line-length = 120" in changed.stdout
    ws.write({"ruff.toml": "line-length = 88\n"})
    why = ws.run("why", "a#lint")
    assert "file modified: ruff.toml" in why.stdout, why.output
    ws.write({"ruff.toml": "line-length = 100\n"})
    assert ws.run("run", "lint").outcomes == {"a#lint": "cached"}  # the first key again
    ws.write({"packages/a/src.txt": "b\n"})  # "**" still covers the project's own files
    assert ws.run("run", "lint").outcomes == {"a#lint": "success"}


def test_warm_reruns_do_not_rewrite_access_times_within_a_minute(vx_workspace: Make) -> None:
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("a", {"build": {"cmd": "echo built"}}),
        }
    )
    cache_dir = ws.path / ".vx/cache"
    assert ws.run("run", "build").outcomes == {"a#build": "success"}
    set_accessed(cache_dir, "a#build", time.time() - 30)
    before = {r["task_id"]: r["accessed_at"] for r in index_rows(cache_dir)}["a#build"]
    assert ws.run("run", "build").outcomes == {"a#build": "cached"}
    assert {r["task_id"]: r["accessed_at"] for r in index_rows(cache_dir)}["a#build"] == before
    set_accessed(cache_dir, "a#build", time.time() - 120)
    assert ws.run("run", "build").outcomes == {"a#build": "cached"}
    after = {r["task_id"]: r["accessed_at"] for r in index_rows(cache_dir)}["a#build"]
    assert after > time.time() - 60


def test_concurrent_puts_are_all_indexed(tmp_path: Path) -> None:
    """Puts from many threads at once (a fresh clone stores its remote hits locally from
    several): rows are committed in shared transactions, and every put returns with its own
    entry readable; a key written twice keeps only the last file."""
    import threading

    from vx import ArtifactInfo

    store = LocalCache(tmp_path / "cache")
    payloads = {f"{t:02d}{i:062d}": os.urandom(3000) for t in range(8) for i in range(40)}
    keys = sorted(payloads)
    errors: list[BaseException] = []

    def writer(mine: list[str]) -> None:
        try:
            for key in mine:
                info = ArtifactInfo(outputs={}, log=key.encode(), duration_ms=1.0)
                store.put(key, Artifact(key=key, data=payloads[key], task_id="t", info=info))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(keys[t::8],)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for key in keys:
        artifact = store.get(key)
        assert artifact is not None
        assert artifact.data == payloads[key]
    infos = store.info_many(keys)
    assert {key: info.log for key, info in infos.items()} == {key: key.encode() for key in keys}
    replaced = keys[0]
    store.put(replaced, Artifact(key=replaced, data=b"other", task_id="t"))
    files = sorted(p.name for p in (tmp_path / "cache" / "artifacts").glob("*/*"))
    assert len(files) == len(keys)
    assert not [name for name in files if name.startswith(".tmp-")]
    again = store.get(replaced)
    assert again is not None
    assert again.data == b"other"
    store.close()
