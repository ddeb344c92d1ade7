"""The remote cache plugin (``plugins/vx_remote``), end to end.

Integration tests run the real ``turborepo-remote-cache`` server from npm (see
``remote_servers.py``): what one clone of a workspace built is restored, byte for byte and
without executing anything, in a second clone with an empty local cache; signing round-trips
and a tampered stored artifact is refused; ``write = false``, ``--cache`` and the ``TURBO_*``
fallbacks behave.

Fault tests run a fault-injecting fake of the protocol: a server that is down, answers 500,
is slower than ``timeout``, truncates bodies, rejects the token, refuses uploads, serves
tampered or hostile artifacts. Every such run succeeds, runs its tasks, writes nothing
outside the declared outputs, prints exactly one warning, and never shows the token.
"""

from __future__ import annotations

import io
import json
import os
import secrets
import tarfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard

pytest.register_assert_rewrite("remote_servers")
from remote_servers import (  # noqa: E402
    FakeRemote,
    Reply,
    Request,
    TurboServer,
    artifact_tag,
    closed_port_url,
)

from vx.keys import CACHE_FORMAT  # noqa: E402
from vx.testing import RunResult, VxWorkspace, snapshot_tree  # noqa: E402

# Fixtures: turbo_server, turbo_server_signed, fake_remote.
pytest_plugins = ["remote_servers"]

Make = Callable[[dict[str, Any]], VxWorkspace]

_ENV = (
    "VX_REMOTE_CACHE_URL",
    "VX_REMOTE_CACHE_TEAM",
    "VX_REMOTE_CACHE_TOKEN",
    "VX_REMOTE_CACHE_SIGNATURE_KEY",
    "TURBO_API",
    "TURBO_TEAM",
    "TURBO_TOKEN",
    "TURBO_REMOTE_CACHE_SIGNATURE_KEY",
    "VX_CACHE_DIR",
    "VX_CONCURRENCY",
    "GITHUB_ACTIONS",
    "FORCE_COLOR",
)


@pytest.fixture(autouse=True)
def _plain_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in _ENV:
        monkeypatch.delenv(name, raising=False)
    yield  # noqa: PT022


# -- the workspace: lib#build -> app#build -> app#test ---------------------------------------

TASK_IDS = ("lib#build", "app#build", "app#test")
OUTPUT_DIRS = ("packages/lib/dist", "packages/app/dist", "packages/app/reports")
MARK = 'echo ran >> "$VX_TEST_MARKERS/{}"'

LIB_BUILD = (
    "mkdir -p dist/sub && cat src/lib.py > dist/lib.txt && "
    # Random bytes: a restore must bring back what the first clone built, not rebuild it.
    "head -c 4096 /dev/urandom > dist/sub/blob.bin && chmod 600 dist/sub/blob.bin && "
    "echo built lib && " + MARK.format("lib-build")
)
APP_BUILD = (
    "mkdir -p dist && cat ../lib/dist/lib.txt src/app.py > dist/app.txt && "
    "printf '#!/bin/sh\\necho app\\n' > dist/run.sh && chmod 755 dist/run.sh && "
    "ln -sf app.txt dist/latest && echo built app && " + MARK.format("app-build")
)
APP_TEST = (
    "mkdir -p reports && od -An -N8 -tx8 /dev/urandom > reports/junit.xml && "
    "echo tested app && " + MARK.format("app-test")
)


def project(name: str, tasks: dict[str, Any], deps: tuple[str, ...] = ()) -> dict[str, Any]:
    table: dict[str, Any] = {"name": name}
    if deps:
        table["dependencies"] = list(deps)
    return {"project": table, "tool": {"vx": {"tasks": tasks}}}


def files(remote: dict[str, Any] | None) -> dict[str, Any]:
    vx: dict[str, Any] = {"members": ["packages/*"]}
    if remote is not None:
        vx["remote"] = remote
    task = {"pass_env": ["VX_TEST_MARKERS"]}
    return {
        "pyproject.toml": {"tool": {"vx": vx}},
        "packages/lib/pyproject.toml": project(
            "lib", {"build": {**task, "cmd": LIB_BUILD, "outputs": ["dist/**"]}}
        ),
        "packages/lib/src/lib.py": "VALUE = 1\n",
        "packages/app/pyproject.toml": project(
            "app",
            {
                "build": {
                    **task,
                    "cmd": APP_BUILD,
                    "outputs": ["dist/**"],
                    "depends_on": ["^build"],
                },
                "test": {
                    **task,
                    "cmd": APP_TEST,
                    "outputs": ["reports/**"],
                    "depends_on": ["build"],
                },
            },
            deps=("lib",),
        ),
        "packages/app/src/app.py": "from lib import VALUE\n",
    }


class Clones:
    """Identical copies of the workspace (as on two machines) sharing one marker directory,
    which tasks append to when they really execute."""

    def __init__(self, make: Make, tmp_path: Path) -> None:
        self.make = make
        self.markers = tmp_path / "markers"
        self.markers.mkdir()

    def new(self, remote: dict[str, Any] | None) -> VxWorkspace:
        return self.make(files(remote))

    def run(self, ws: VxWorkspace, *args: str, env: dict[str, str] | None = None) -> RunResult:
        return ws.run(*args, env={"VX_TEST_MARKERS": str(self.markers), **(env or {})})

    def executions(self) -> dict[str, int]:
        return {path.name: len(path.read_text().splitlines()) for path in self.markers.iterdir()}


@pytest.fixture
def clones(vx_workspace: Make, tmp_path: Path) -> Clones:
    return Clones(vx_workspace, tmp_path)


def remote_config(
    server: TurboServer | FakeRemote, team: str = "acme", **extra: Any
) -> dict[str, Any]:
    return {"url": server.url, "team": getattr(server, "team", team), **extra}


def token_env(token: str) -> dict[str, str]:
    return {"VX_REMOTE_CACHE_TOKEN": token}


# -- assertions ---------------------------------------------------------------------------


def warning_lines(result: RunResult) -> list[str]:
    return [line for line in result.output.splitlines() if "warning" in line.lower()]


def remote_warnings(result: RunResult) -> list[str]:
    return [line for line in warning_lines(result) if "remote" in line.lower()]


def cache_of(result: RunResult) -> dict[str, dict[str, Any]]:
    assert result.summary is not None, result.output
    return {task["id"]: task["cache"] for task in result.summary["tasks"]}


def assert_token_absent(result: RunResult, ws: VxWorkspace, token: str) -> None:
    """Not in stdout, stderr, the summary, or any file under ``.vx/`` (artifacts decompressed)."""
    secret = token.encode()
    assert token not in result.stdout
    assert token not in result.stderr
    assert token not in json.dumps(result.summary)
    for path in sorted((ws.path / ".vx").rglob("*")):
        if not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        assert secret not in data, f"the token leaked into {path}"
        if path.name.endswith(".tar.zst"):
            reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data))
            assert secret not in reader.read(), f"the token leaked into {path}"


def tree(root: Path, *, skip: tuple[str, ...] = (".vx",)) -> dict[str, Any]:
    """Type, mode and content (or link target) of everything under ``root``."""
    return snapshot_tree(root, skip=skip)


def outputs(ws: VxWorkspace) -> dict[str, Any]:
    every = tree(ws.path)
    return {
        name: entry
        for name, entry in every.items()
        if any(name == d or name.startswith(d + "/") for d in OUTPUT_DIRS)
    }


def assert_only_outputs_changed(before: dict[str, Any], ws: VxWorkspace) -> None:
    after = tree(ws.path)
    changed = {name for name in before.keys() | after.keys() if before.get(name) != after.get(name)}
    stray = {
        name
        for name in changed
        if not any(name == d or name.startswith(d + "/") for d in OUTPUT_DIRS)
    }
    assert not stray, f"written outside the declared outputs: {sorted(stray)}"


# -- the real server ------------------------------------------------------------------------


def test_second_clone_is_fully_restored_from_the_remote(
    turbo_server: TurboServer, clones: Clones
) -> None:
    config = remote_config(turbo_server)
    env = token_env(turbo_server.token)
    a = clones.new(config)
    first = clones.run(a, "run", "build", "test", env=env)
    assert first.exit_code == 0, first.output
    assert first.outcomes == dict.fromkeys(TASK_IDS, "success")
    assert not warning_lines(first), first.output
    # Uploads are awaited before vx exits: every task is on the server now.
    hashes = {task["id"]: task["hash"] for task in first.summary["tasks"]}
    assert turbo_server.stored_keys() == sorted(hashes.values())
    assert clones.executions() == dict.fromkeys(("lib-build", "app-build", "app-test"), 1)

    b = clones.new(config)
    assert b.path != a.path
    assert not (b.path / ".vx").exists()
    dry = b.run("run", "build", "test", "--dry=json", env=env)
    assert dry.exit_code == 0, dry.output
    predicted = {task["id"]: task["cache"] for task in json.loads(dry.stdout)["tasks"]}
    assert {id: c["status"] for id, c in predicted.items()} == dict.fromkeys(TASK_IDS, "hit")
    assert {id: c["source"] for id, c in predicted.items()} == dict.fromkeys(TASK_IDS, "remote")

    second = clones.run(b, "run", "build", "test", env=env)
    assert second.exit_code == 0, second.output
    assert second.outcomes == dict.fromkeys(TASK_IDS, "cached")
    cache = cache_of(second)
    assert {id: c["status"] for id, c in cache.items()} == dict.fromkeys(TASK_IDS, "hit")
    assert {id: c["source"] for id, c in cache.items()} == dict.fromkeys(TASK_IDS, "remote")
    assert hashes == {task["id"]: task["hash"] for task in second.summary["tasks"]}
    assert clones.executions() == dict.fromkeys(("lib-build", "app-build", "app-test"), 1)
    assert outputs(b) == outputs(a)
    assert len(outputs(a)) >= 8
    assert "built lib" in second.stdout  # logs are replayed from the artifact
    assert not warning_lines(second), second.output
    assert_token_absent(second, b, turbo_server.token)

    stats = b.run("cache", "stats", "--json")
    assert stats.exit_code == 0, stats.output
    document = json.loads(stats.stdout)
    assert document["remote_hits"] == 3
    assert document["hits"] == 3
    assert document["entries"] == 3  # remote hits were stored in the local layer

    third = clones.run(b, "run", "build", "test", env=env)
    assert third.outcomes == dict.fromkeys(TASK_IDS, "cached")
    assert {id: c["source"] for id, c in cache_of(third).items()} == dict.fromkeys(
        TASK_IDS, "local"
    )
    stats = json.loads(b.run("cache", "stats", "--json").stdout)
    assert (stats["hits"], stats["remote_hits"]) == (6, 3)
    assert clones.executions() == dict.fromkeys(("lib-build", "app-build", "app-test"), 1)
    assert_token_absent(first, a, turbo_server.token)


def _tampered(original: bytes) -> bytes:
    """A well-formed archive like ``original`` whose ``dist/lib.txt`` says PWNED."""
    reader = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(original))
    raw = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(reader.read()), mode="r:") as source,
        tarfile.open(fileobj=raw, mode="w:", format=tarfile.PAX_FORMAT) as target,
    ):
        for member in source.getmembers():
            handle = source.extractfile(member) if member.isfile() else None
            data = handle.read() if handle is not None else None
            if member.name.endswith("dist/lib.txt"):
                data = b"PWNED\n"
                member.size = len(data)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    return zstandard.ZstdCompressor().compress(raw.getvalue())


def test_signed_artifacts_round_trip_and_tampering_is_refused(
    turbo_server_signed: TurboServer, clones: Clones
) -> None:
    server = turbo_server_signed
    config = remote_config(server, signature=True)
    key = "vx-signing-key-for-tests"
    env = {**token_env(server.token), "VX_REMOTE_CACHE_SIGNATURE_KEY": key}
    a = clones.new(config)
    first = clones.run(a, "run", "build", "test", env=env)
    assert first.exit_code == 0, first.output
    assert not warning_lines(first), first.output
    hashes = {task["id"]: task["hash"] for task in first.summary["tasks"]}
    for hash in hashes.values():
        body = server.artifact_path(hash).read_bytes()
        assert server.tag_path(hash).read_text() == artifact_tag(key, hash, server.team, body)

    b = clones.new(config)
    second = clones.run(b, "run", "build", "test", env=env)
    assert second.outcomes == dict.fromkeys(TASK_IDS, "cached"), second.output
    assert {c["source"] for c in cache_of(second).values()} == {"remote"}
    assert outputs(b) == outputs(a)
    assert not warning_lines(second), second.output
    assert clones.executions() == dict.fromkeys(("lib-build", "app-build", "app-test"), 1)

    # Someone with write access to the server's disk swaps lib#build's artifact for a
    # well-formed archive with other content: the tag no longer matches.
    stored = server.artifact_path(hashes["lib#build"])
    stored.write_bytes(_tampered(stored.read_bytes()))
    c = clones.new(config)
    before = tree(c.path)
    third = clones.run(c, "run", "build", "test", env=env)
    assert third.exit_code == 0, third.output
    assert third.outcomes == {"lib#build": "success", "app#build": "cached", "app#test": "cached"}
    assert cache_of(third)["lib#build"]["status"] == "miss"
    [warning] = remote_warnings(third)
    assert "invalid signature" in warning
    assert len(warning_lines(third)) == 1
    assert (c.path / "packages/lib/dist/lib.txt").read_bytes() == b"VALUE = 1\n"
    assert b"PWNED" not in (c.path / "packages/app/dist/app.txt").read_bytes()
    assert clones.executions()["lib-build"] == 2
    assert_only_outputs_changed(before, c)
    assert_token_absent(third, c, server.token)

    # A reader with another key trusts nothing.
    d = clones.new(config)
    fourth = clones.run(d, "run", "build", env={**env, "VX_REMOTE_CACHE_SIGNATURE_KEY": "other"})
    assert fourth.outcomes == {"lib#build": "success", "app#build": "success"}, fourth.output
    assert len(remote_warnings(fourth)) == 1, fourth.output
    assert len(warning_lines(fourth)) == 1, fourth.output


def test_write_false_uploads_nothing(turbo_server: TurboServer, clones: Clones) -> None:
    env = token_env(turbo_server.token)
    a = clones.new(remote_config(turbo_server, write=False))
    first = clones.run(a, "run", "build", "test", env=env)
    assert first.outcomes == dict.fromkeys(TASK_IDS, "success"), first.output
    assert not warning_lines(first), first.output
    assert turbo_server.stored_keys() == []
    assert not (turbo_server.storage / turbo_server.team).exists()

    # A read-only laptop reads what CI (write = true) uploaded.
    ci = clones.new(remote_config(turbo_server))
    assert clones.run(ci, "run", "build", "test", env=env).exit_code == 0
    assert len(turbo_server.stored_keys()) == 3
    b = clones.new(remote_config(turbo_server, write=False))
    second = clones.run(b, "run", "build", "test", env=env)
    assert {c["source"] for c in cache_of(second).values()} == {"remote"}, second.output


def test_cache_flag_selects_remote_reads_and_writes(
    turbo_server: TurboServer, clones: Clones
) -> None:
    env = token_env(turbo_server.token)
    config = remote_config(turbo_server)
    a = clones.new(config)
    first = clones.run(a, "run", "build", "test", "--cache=local:rw,remote:r", env=env)
    assert first.outcomes == dict.fromkeys(TASK_IDS, "success"), first.output
    assert turbo_server.stored_keys() == []  # remote not writable

    uploader = clones.new(config)
    clones.run(uploader, "run", "build", "test", "--cache=remote:w", env=env)
    assert len(turbo_server.stored_keys()) == 3
    assert json.loads(uploader.run("cache", "stats", "--json").stdout)["entries"] == 0

    b = clones.new(config)
    for _ in range(2):  # local is off: both runs are served by the remote, nothing is kept
        result = clones.run(b, "run", "build", "test", "--cache=remote:r", env=env)
        assert result.outcomes == dict.fromkeys(TASK_IDS, "cached"), result.output
        assert {c["source"] for c in cache_of(result).values()} == {"remote"}
    assert json.loads(b.run("cache", "stats", "--json").stdout)["entries"] == 0
    local_only = clones.run(b, "run", "build", "--cache=local:rw", env=env)
    assert local_only.outcomes == {"lib#build": "success", "app#build": "success"}
    assert clones.executions()["lib-build"] == 3


def test_turbo_environment_fallbacks(turbo_server: TurboServer, clones: Clones) -> None:
    turbo = {
        "TURBO_API": turbo_server.url,
        "TURBO_TEAM": turbo_server.team,
        "TURBO_TOKEN": turbo_server.token,
    }
    a = clones.new(None)  # no [tool.vx.remote] at all
    first = clones.run(a, "run", "build", "test", env=turbo)
    assert first.exit_code == 0, first.output
    assert not warning_lines(first), first.output
    assert len(turbo_server.stored_keys()) == 3

    b = clones.new(None)
    second = clones.run(b, "run", "build", "test", env=turbo)
    assert {c["source"] for c in cache_of(second).values()} == {"remote"}, second.output
    assert_token_absent(second, b, turbo_server.token)

    # VX_REMOTE_CACHE_* win over TURBO_*, which are only fallbacks.
    c = clones.new(None)
    wrong = {
        "TURBO_API": closed_port_url(),
        "TURBO_TEAM": "nobody",
        "TURBO_TOKEN": "wrong-token",
        "VX_REMOTE_CACHE_URL": turbo_server.url,
        "VX_REMOTE_CACHE_TEAM": turbo_server.team,
        "VX_REMOTE_CACHE_TOKEN": turbo_server.token,
    }
    third = clones.run(c, "run", "build", "test", env=wrong)
    assert {c["source"] for c in cache_of(third).values()} == {"remote"}, third.output
    assert not warning_lines(third)


def test_real_server_rejecting_the_token(turbo_server: TurboServer, clones: Clones) -> None:
    a = clones.new(remote_config(turbo_server))
    token = "not-the-servers-token-" + secrets.token_hex(8)
    result = clones.run(a, "run", "build", "test", env=token_env(token))
    assert result.exit_code == 0, result.output
    assert result.outcomes == dict.fromkeys(TASK_IDS, "success")
    [warning] = warning_lines(result)
    assert "remote cache disabled for this run: the server rejected the token" in warning
    assert turbo_server.stored_keys() == []
    assert_token_absent(result, a, token)


# -- faults -----------------------------------------------------------------------------------


def _meta(outputs: dict[str, bytes | str], expanded: int) -> bytes:
    entries: dict[str, Any] = {}
    for name, content in outputs.items():
        if isinstance(content, str):
            entries[name] = {"type": "symlink", "target": content}
        else:
            entries[name] = {
                "type": "file",
                "size": len(content),
                "mtime_ns": 1_700_000_000_000_000_000,
                "mode": 0o644,
                "digest": "0" * 64,
            }
    meta = {
        "format": CACHE_FORMAT,
        "key": "0" * 64,
        "task": "lib#build",
        "exit_code": 0,
        "duration_ms": 1.0,
        "created_at": time.time(),
        "manifest": {},
        "outputs": entries,
        "expanded_size": expanded,
    }
    return json.dumps(meta).encode()


def hostile_archive(members: list[tuple[str, bytes | str]]) -> bytes:
    """A zstd tar with a valid metadata member declaring ``members`` as outputs, a log, then
    the members (bytes: a file; str: a symlink to that target)."""
    outputs = dict(members)
    expanded = sum(len(c) for c in outputs.values() if isinstance(c, bytes)) + 12
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w:", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, content: bytes | str) -> None:
            info = tarfile.TarInfo(name)
            if isinstance(content, str):
                info.type = tarfile.SYMTYPE
                info.linkname = content
                tar.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o644
                tar.addfile(info, io.BytesIO(content))

        add(".vx-artifact/meta.json", _meta(outputs, expanded))
        add(".vx-artifact/log", b"hostile log\n")
        for name, content in members:
            add(name, content)
    return zstandard.ZstdCompressor().compress(raw.getvalue())


EVIL_ABSOLUTE = f"/tmp/vx-remote-evil-{secrets.token_hex(6)}"
# A legitimate-looking member first, so that a partial extraction would show.
DECOY = ("packages/lib/dist/lib.txt", b"HOSTILE\n")
HOSTILE: dict[str, list[tuple[str, bytes | str]]] = {
    "dotdot": [DECOY, ("../evil", b"evil\n")],
    "nested-dotdot": [DECOY, ("packages/lib/dist/../../../../evil", b"evil\n")],
    "absolute": [DECOY, (EVIL_ABSOLUTE, b"evil\n")],
    "escaping-symlink": [
        DECOY,
        ("packages/lib/dist/link", "../../../../evil-dir"),
        ("packages/lib/dist/link/pwned", b"evil\n"),
    ],
    "absolute-symlink": [DECOY, ("packages/lib/dist/link", "/etc")],
    "undeclared-output": [DECOY, ("packages/lib/src/lib.py", b"import os  # planted\n")],
}


def _answer(reply: Reply, *methods: str) -> Callable[[Request, FakeRemote], Reply | None]:
    def behaviour(request: Request, fake: FakeRemote) -> Reply | None:
        return reply if request.method in methods else None

    return behaviour


def populate(fake: FakeRemote, clones: Clones, config: dict[str, Any], env: dict[str, str]) -> None:
    """Fill the fake through an honest run of another clone."""
    honest = clones.new(config)
    result = clones.run(honest, "run", "build", "test", env=env)
    assert result.exit_code == 0, result.output
    assert not warning_lines(result), result.output
    assert len(fake.store) == 3


#: Requests a run makes before the layer disables itself (GET is retried twice on 5xx and
#: broken responses, never on timeouts; PUT is never retried). Uploads run in the background,
#: concurrently with later tasks, so upload faults have no exact count.
BREAKER = {
    "wrong token": Counter(GET=1),
    "HTTP 403": Counter(GET=1),
    "HTTP 500": Counter(GET=3),
    "truncated body": Counter(GET=3),
    "slow read": Counter(GET=1),
    "413 on upload": Counter(GET=3, PUT=3),  # specific to one artifact: keeps going
}

SIGNED_FAULTS = ("tampered body", "signed with another key", "unsigned artifact")


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        ("server down", "connection refused"),
        ("HTTP 500", "HTTP 500"),
        ("slow read", "timed out"),
        ("slow upload", "timed out"),
        ("truncated body", "truncated"),
        ("wrong token", "the server rejected the token"),
        ("HTTP 403", "the server rejected the token"),
        ("413 on upload", "413"),
        ("tampered body", "invalid signature"),
        ("signed with another key", "invalid signature"),
        ("unsigned artifact", "has no signature"),
        ("not an archive", "remote"),
        *((f"hostile: {case}", "remote") for case in HOSTILE),
    ],
)
def test_remote_faults_never_fail_the_run(
    fault: str, expected: str, fake_remote: FakeRemote, clones: Clones, tmp_path: Path
) -> None:
    fake = fake_remote
    config: dict[str, Any] = {"url": fake.url, "team": "acme", "timeout": 0.5}
    token = fake.token
    if fault == "server down":
        config["url"] = closed_port_url()
    elif fault == "HTTP 500":
        fake.behaviour = lambda request, _: Reply(500, b"boom")
    elif fault == "slow read":
        fake.behaviour = _answer(Reply(404, delay=2.0), "GET", "HEAD")
    elif fault == "slow upload":
        config["upload_timeout"] = 0.5
        fake.behaviour = _answer(Reply(200, delay=3.0), "PUT")
    elif fault == "truncated body":
        fake.behaviour = _answer(Reply(200, os.urandom(20_000), truncate_to=100), "GET")
    elif fault == "wrong token":
        token = "vx-wrong-token-" + secrets.token_hex(8)
    elif fault == "HTTP 403":
        fake.behaviour = lambda request, _: Reply(403, b"forbidden")
    elif fault == "413 on upload":
        fake.behaviour = _answer(Reply(413, b"too large"), "PUT")
    elif fault in SIGNED_FAULTS:
        config["signature"] = True
        signer = "attacker" if fault == "signed with another key" else "k3y"
        populate(
            fake,
            clones,
            {**config, "signature": fault != "unsigned artifact"},
            {**token_env(token), "VX_REMOTE_CACHE_SIGNATURE_KEY": signer},
        )
        if fault == "tampered body":  # flip one bit of every stored body, keep the tags
            for key, (body, tag) in list(fake.store.items()):
                assert tag
                fake.store[key] = (body[:-1] + bytes([body[-1] ^ 1]), tag)
    elif fault == "not an archive":
        fake.behaviour = _answer(Reply(200, os.urandom(5000)), "GET")
    elif fault.startswith("hostile: "):
        archive = hostile_archive(HOSTILE[fault.removeprefix("hostile: ")])
        fake.behaviour = _answer(Reply(200, archive), "GET")
    else:  # pragma: no cover
        raise AssertionError(fault)
    env = {**token_env(token)}
    if config.get("signature"):
        env["VX_REMOTE_CACHE_SIGNATURE_KEY"] = "k3y"

    ws = clones.new(config)
    before = tree(ws.path)
    outside = set(os.listdir(tmp_path))
    requests_before = fake.count()
    started = time.monotonic()
    result = clones.run(ws, "run", "build", "test", env=env)
    elapsed = time.monotonic() - started

    assert result.exit_code == 0, result.output
    assert result.outcomes == dict.fromkeys(TASK_IDS, "success"), result.output
    assert_token_absent(result, ws, token)
    assert_only_outputs_changed(before, ws)
    assert (ws.path / "packages/lib/dist/lib.txt").read_bytes() == b"VALUE = 1\n"
    assert (ws.path / "packages/lib/src/lib.py").read_bytes() == b"VALUE = 1\n"
    assert set(os.listdir(tmp_path)) == outside
    assert not Path(EVIL_ABSOLUTE).exists()
    assert "hostile log" not in result.output
    assert elapsed < 15, f"the faulty remote slowed the run to {elapsed:.1f}s"
    requests = [(r.method, r.path[-8:]) for r in fake.requests[requests_before:]]
    if fault in BREAKER:
        # The first 401/403, or a server that proved unreachable, disables the layer:
        # no request after that one (the tasks run one after the other here).
        assert Counter(method for method, _ in requests) == BREAKER[fault], requests
    remote = remote_warnings(result)
    assert remote, result.output
    assert expected.lower() in remote[0].lower(), remote[0]
    assert warning_lines(result) == remote, result.output
    assert len(remote) == 1, result.output


def test_token_is_sent_as_a_bearer_header_and_the_team_as_slug(
    fake_remote: FakeRemote, clones: Clones
) -> None:
    ws = clones.new({"url": fake_remote.url, "team": "acme"})
    result = clones.run(ws, "run", "build", env=token_env(fake_remote.token))
    assert result.exit_code == 0, result.output
    assert not warning_lines(result), result.output
    methods = [r.method for r in fake_remote.requests]
    assert methods.count("GET") == 2, methods
    assert methods.count("PUT") == 2, methods
    for request in fake_remote.requests:
        assert request.authorization == f"Bearer {fake_remote.token}"
        assert request.query == {"slug": ["acme"]}
        assert request.path.startswith("/v8/artifacts/")
    for put in (r for r in fake_remote.requests if r.method == "PUT"):
        assert put.headers["content-type"] == "application/octet-stream"
        assert put.headers["x-artifact-duration"].isdigit()
        assert "x-artifact-tag" not in put.headers
    # team ids go in teamId
    other = clones.new({"url": fake_remote.url, "team": "team_123"})
    clones.run(other, "run", "build", "--force", env=token_env(fake_remote.token))
    assert fake_remote.requests[-1].query == {"teamId": ["team_123"]}


def test_dry_run_against_a_rejecting_server_never_shows_the_token(
    fake_remote: FakeRemote, clones: Clones
) -> None:
    ws = clones.new({"url": fake_remote.url, "team": "acme"})
    token = "vx-dry-token-" + secrets.token_hex(8)
    result = ws.run("run", "build", "test", "--dry=json", env=token_env(token))
    assert result.exit_code == 0, result.output
    assert token not in result.output
    tasks = json.loads(result.stdout)["tasks"]
    assert {task["cache"]["status"] for task in tasks} == {"miss"}
    assert len(remote_warnings(result)) == 1
    assert fake_remote.count() == 1


def test_inert_without_a_url(fake_remote: FakeRemote, clones: Clones) -> None:
    ws = clones.new(None)
    result = clones.run(ws, "run", "build", env={"VX_REMOTE_CACHE_TOKEN": fake_remote.token})
    assert result.exit_code == 0, result.output
    assert not warning_lines(result), result.output
    assert {c["status"] for c in cache_of(result).values()} == {"miss"}
    assert fake_remote.count() == 0


def test_oversized_download_is_refused_without_reading_it(
    fake_remote: FakeRemote, clones: Clones, monkeypatch: pytest.MonkeyPatch
) -> None:
    import vx_remote.client

    monkeypatch.setattr(vx_remote.client, "MAX_DOWNLOAD", 4096)
    fake_remote.behaviour = _answer(Reply(200, os.urandom(10_000)), "GET")
    ws = clones.new({"url": fake_remote.url, "team": "acme"})
    result = clones.run(ws, "run", "build", "test", env=token_env(fake_remote.token))
    assert result.exit_code == 0, result.output
    assert result.outcomes == dict.fromkeys(TASK_IDS, "success")
    [warning] = warning_lines(result)
    assert "exceeds the 4096 limit" in warning


def test_redirects_to_another_host_never_carry_the_token(
    fake_remote: FakeRemote, clones: Clones
) -> None:
    """turborepo-remote-cache can redirect reads to a CDN (TURBO_CACHE_READ_URL): the CDN gets
    the request without the Authorization header."""
    env = token_env(fake_remote.token)
    config = {"url": fake_remote.url, "team": "acme"}
    populate(fake_remote, clones, config, env)
    cdn = FakeRemote("cdn-needs-no-token")
    try:
        cdn.store.update(fake_remote.store)
        # A CDN answers without checking any token.
        cdn.behaviour = lambda request, fake: Reply(
            200, fake.store[request.path.rsplit("/", 1)[-1]][0]
        )
        cdn_host = cdn.url.replace("127.0.0.1", "localhost")  # another origin

        def redirect(request: Request, fake: FakeRemote) -> Reply | None:
            if request.method != "GET":
                return None
            return Reply(302, headers={"Location": f"{cdn_host}{request.path}?slug=acme"})

        fake_remote.behaviour = redirect
        b = clones.new(config)
        result = clones.run(b, "run", "build", "test", env=env)
        assert {c["source"] for c in cache_of(result).values()} == {"remote"}, result.output
        assert cdn.count("GET") == 3
        assert all(r.authorization is None for r in cdn.requests)
    finally:
        cdn.close()


def test_remote_hits_are_indexed_locally_under_their_task(
    fake_remote: FakeRemote, clones: Clones
) -> None:
    env = token_env(fake_remote.token)
    config = {"url": fake_remote.url, "team": "acme"}
    populate(fake_remote, clones, config, env)
    b = clones.new(config)
    result = clones.run(b, "run", "build", "test", env=env)
    assert {c["source"] for c in cache_of(result).values()} == {"remote"}, result.output
    import sqlite3

    db = sqlite3.connect(b.path / ".vx" / "cache" / "index.sqlite")
    try:
        rows = dict(db.execute("SELECT key, task_id FROM entries").fetchall())
    finally:
        db.close()
    hashes = {task["id"]: task["hash"] for task in result.summary["tasks"]}  # type: ignore[index]
    assert set(rows) == set(hashes.values())
    assert {rows[hash] for hash in hashes.values()} == set(TASK_IDS)


def test_ci_turns_uploads_on_with_an_environment_override(
    fake_remote: FakeRemote, clones: Clones
) -> None:
    """Laptops keep ``write = false`` in pyproject.toml; CI sets ``VX_REMOTE__WRITE=true``."""
    env = token_env(fake_remote.token)
    ws = clones.new({"url": fake_remote.url, "team": "acme", "write": False})
    laptop = clones.run(ws, "run", "build", env=env)
    assert laptop.outcomes == {"lib#build": "success", "app#build": "success"}, laptop.output
    assert fake_remote.count("PUT") == 0
    ci = clones.run(ws, "run", "build", "--force", env={**env, "VX_REMOTE__WRITE": "true"})
    assert ci.exit_code == 0, ci.output
    assert fake_remote.count("PUT") == 2
    again = clones.run(ws, "run", "build", "--force", env=env)
    assert again.exit_code == 0, again.output
    assert fake_remote.count("PUT") == 2


def test_credentials_in_the_url_are_never_shown(clones: Clones) -> None:
    url = closed_port_url().replace("http://", "http://user:url-secret-7781@")
    ws = clones.new({"team": "acme", "timeout": 0.5})
    env = {**token_env("vx-token-3319"), "VX_REMOTE_CACHE_URL": url}
    result = clones.run(ws, "run", "build", env=env)
    assert result.exit_code == 0, result.output
    [warning] = warning_lines(result)
    assert "connection refused" in warning
    assert "url-secret-7781" not in result.output
    assert_token_absent(result, ws, "url-secret-7781")
    assert_token_absent(result, ws, "vx-token-3319")


# -- prefetch (vx/prefetch.py) ----------------------------------------------------------
# Remote artifacts are read ahead of their tasks and unpacked outside the concurrency limit:
# one read per artifact, hits kept locally, a refused prefetched artifact runs its task.


def _populate_for_prefetch(
    fake: FakeRemote, clones: Clones
) -> tuple[dict[str, str], dict[str, Any]]:
    honest = clones.new(remote_config(fake))
    result = clones.run(honest, "run", "build", "test", env=token_env(fake.token))
    assert result.exit_code == 0, result.output
    assert len(fake.store) == 3
    return {task["id"]: task["hash"] for task in result.summary["tasks"]}, outputs(honest)


def test_fresh_clone_reads_each_artifact_once_and_keeps_it_locally(
    fake_remote: FakeRemote, clones: Clones
) -> None:
    keys, built = _populate_for_prefetch(fake_remote, clones)
    fresh = clones.new(remote_config(fake_remote))
    before = fake_remote.count()
    result = clones.run(fresh, "run", "build", "test", "-j", "1", env=token_env(fake_remote.token))
    assert result.exit_code == 0, result.output
    assert result.outcomes == dict.fromkeys(TASK_IDS, "cached"), result.output
    assert {c["source"] for c in cache_of(result).values()} == {"remote"}
    assert outputs(fresh) == built
    requests = fake_remote.requests[before:]
    assert Counter(r.method for r in requests) == Counter(GET=3), requests
    assert sorted(r.path.rsplit("/", 1)[1] for r in requests) == sorted(keys.values())
    assert clones.executions() == dict.fromkeys(("lib-build", "app-build", "app-test"), 1)

    # The hits were written to the local layer: with the remote off, all are local hits.
    for directory in ("packages/lib/dist", "packages/app/dist"):
        for path in sorted((fresh.path / directory).rglob("*"), reverse=True):
            path.unlink() if path.is_symlink() or path.is_file() else path.rmdir()
    local = clones.run(fresh, "run", "build", "test", "--cache=local:rw")
    assert local.outcomes == dict.fromkeys(TASK_IDS, "cached"), local.output
    assert {c["source"] for c in cache_of(local).values()} == {"local"}
    assert outputs(fresh) == built


def test_a_refused_prefetched_artifact_runs_its_task_and_the_rest_hit(
    fake_remote: FakeRemote, clones: Clones, tmp_path: Path
) -> None:
    keys, built = _populate_for_prefetch(fake_remote, clones)
    hostile = hostile_archive([("../escaped.txt", "evil")])

    def behaviour(request: Request, fake: FakeRemote) -> Reply | None:
        if request.method == "GET" and request.path.endswith(keys["lib#build"]):
            return Reply(200, hostile)
        return None

    fake_remote.behaviour = behaviour
    fresh = clones.new(remote_config(fake_remote))
    result = clones.run(fresh, "run", "build", "test", env=token_env(fake_remote.token))
    assert result.exit_code == 0, result.output
    assert result.outcomes == {
        "lib#build": "success",
        "app#build": "cached",
        "app#test": "cached",
    }, result.output
    assert len(remote_warnings(result)) == 1, result.output
    assert clones.executions()["lib-build"] == 2
    assert not (fresh.path / "packages" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    restored = outputs(fresh)
    assert {k: v for k, v in restored.items() if "/app/" in k} == {
        k: v for k, v in built.items() if "/app/" in k
    }


# -- dry runs read only the head of remote artifacts ------------------------------------------


def test_dry_run_reads_only_the_head_of_each_remote_artifact(
    fake_remote: FakeRemote, clones: Clones
) -> None:
    """``--dry`` predicts remote hits from the metadata at the head of each archive: one
    ranged GET per task, answered (by a server that honours ``Range``) with 64 KB at most.
    Nothing is downloaded whole, restored, or stored locally; the real run then hits."""
    _, built = _populate_for_prefetch(fake_remote, clones)
    # Pad every stored artifact well past the head: the restore still accepts it (zstd
    # frames of zeros after the archive), so a dry run reading it whole would show here.
    padding = zstandard.ZstdCompressor().compress(bytes(4 << 20)) * 8
    for key, (data, tag) in list(fake_remote.store.items()):
        fake_remote.store[key] = (data + padding, tag)
    sent: list[int] = []

    def ranges(request: Request, fake: FakeRemote) -> Reply | None:
        stored = fake.store.get(request.path.rsplit("/", 1)[-1])
        wanted = request.headers.get("range", "")
        if request.method != "GET" or stored is None or not wanted.startswith("bytes=0-"):
            return None
        body = stored[0][: int(wanted.removeprefix("bytes=0-")) + 1]
        sent.append(len(body))
        return Reply(206, body)

    fake_remote.behaviour = ranges
    fresh = clones.new(remote_config(fake_remote))
    before = fake_remote.count()
    dry = clones.run(fresh, "run", "build", "test", "--dry=json", env=token_env(fake_remote.token))
    assert dry.exit_code == 0, dry.output
    predicted = {task["id"]: task["cache"] for task in json.loads(dry.stdout)["tasks"]}
    assert {task: cache["status"] for task, cache in predicted.items()} == dict.fromkeys(
        TASK_IDS, "hit"
    )
    assert {cache["source"] for cache in predicted.values()} == {"remote"}
    requests = fake_remote.requests[before:]
    assert Counter(r.method for r in requests) == Counter(GET=3), requests
    assert {r.headers.get("range") for r in requests} == {"bytes=0-65535"}
    assert len(sent) == 3
    assert max(sent) <= 65536
    assert not list((fresh.path / ".vx" / "cache" / "artifacts").rglob("*.tar.zst"))
    assert outputs(fresh) == {}
    assert clones.executions() == dict.fromkeys(("lib-build", "app-build", "app-test"), 1)

    run = clones.run(fresh, "run", "build", "test", env=token_env(fake_remote.token))
    assert run.outcomes == dict.fromkeys(TASK_IDS, "cached"), run.output
    assert outputs(fresh) == built
