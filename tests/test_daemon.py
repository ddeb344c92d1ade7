"""The warm server (docs/daemon.md), with real processes: the server ``vx`` starts, real
sockets, real workspaces. A served answer must equal a run without the server."""

from __future__ import annotations

import json
import os
import pwd
import random
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vx.daemon.client import server_paths
from vx.testing import VxWorkspace

Make = Callable[..., VxWorkspace]

ON = {"VX_DAEMON": "1"}

FILES = {
    "pyproject.toml": '[tool.vx]\nmembers = ["packages/*"]\n',
    "packages/core/pyproject.toml": (
        '[project]\nname = "core"\n\n[tool.vx.tasks.build]\n'
        'cmd = "mkdir -p dist && cp src/a.py dist/a.py && echo built core '
        '&& echo $PPID > ../ppid"\n'
        'outputs = ["dist/**"]\n'
    ),
    "packages/core/src/a.py": "A = 1\n",
    "packages/app/pyproject.toml": (
        '[project]\nname = "app"\ndependencies = ["core"]\n\n[tool.vx.tasks.build]\n'
        'cmd = "echo app built; echo warning >&2"\ndepends_on = ["^build"]\n'
    ),
}


def _status(ws: VxWorkspace) -> dict[str, Any]:
    result = ws.run_subprocess("daemon", "status", "--json")
    return dict(json.loads(result.stdout))


def _wait_for_server(ws: VxWorkspace) -> dict[str, Any]:
    """The server's status once it answers (auto-start happens in the background)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status = _status(ws)
        if status.get("pid"):
            return status
        time.sleep(0.05)
    raise AssertionError("the warm server did not start: " + _log(ws))


def _log(ws: VxWorkspace) -> str:
    return ws.run_subprocess("daemon", "logs").stdout


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return True
    return state == "Z"


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 60
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _gone(pid), f"server {pid} still running"


@pytest.fixture
def workspace(vx_workspace: Make) -> Iterator[VxWorkspace]:
    """The example workspace; whatever server a test starts in it is stopped at the end."""
    ws = vx_workspace(FILES)
    yield ws
    stopped = ws.run_subprocess("daemon", "stop")
    assert stopped.exit_code == 0, stopped.stderr


def _warm(ws: VxWorkspace) -> dict[str, Any]:
    """Run once (misses: runs in the client, starts the server), wait for the server."""
    first = ws.run_subprocess("run", "build", env=ON)
    assert first.exit_code == 0, first.stderr
    assert "2 cached" not in first.stdout
    return _wait_for_server(ws)


def _same_summary(a: dict[str, Any] | None, b: dict[str, Any] | None) -> None:
    assert a is not None
    assert b is not None

    def essentials(summary: dict[str, Any]) -> list[tuple[Any, ...]]:
        return sorted(
            (t["id"], t["hash"], t["status"], t["exit_code"], t["cache"]["status"])
            for t in summary["tasks"]
        )

    assert essentials(a) == essentials(b)
    assert a["exit_code"] == b["exit_code"]


def _without_time(text: str) -> str:
    """The output without the wall time, and with the test's summary files numbered alike."""
    import re

    lines = [line for line in text.splitlines() if not line.startswith(" Time:")]
    return re.sub(r"summary-\d+\.json", "summary-N.json", "\n".join(lines))


def test_a_served_full_hit_equals_a_run_without_the_server(workspace: VxWorkspace) -> None:
    status = _warm(workspace)
    assert status["served"] == 0
    served = workspace.run_subprocess("run", "build", env=ON)
    alone = workspace.run_subprocess("run", "build", "--no-daemon")
    assert _status(workspace)["served"] == 1  # the first was answered by the server
    assert served.exit_code == alone.exit_code == 0
    assert "2 cached, 2 total" in served.stdout
    assert _without_time(served.stdout) == _without_time(alone.stdout)
    assert served.stderr == alone.stderr
    _same_summary(served.summary, alone.summary)
    # --dry=json: byte for byte.
    dry_served = workspace.run_subprocess("run", "build", "--dry=json", env=ON)
    dry_alone = workspace.run_subprocess("run", "build", "--dry=json", "--no-daemon")
    assert dry_served.stdout == dry_alone.stdout
    assert dry_served.exit_code == 0
    assert json.loads(dry_served.stdout)["tasks"][0]["cache"]["status"] == "hit"
    # A user error is answered the same way too (message, exit code).
    bad_served = workspace.run_subprocess("run", "nosuchtask", env=ON)
    bad_alone = workspace.run_subprocess("run", "nosuchtask", "--no-daemon")
    assert bad_served.exit_code == bad_alone.exit_code != 0
    assert bad_served.stderr == bad_alone.stderr
    assert "nosuchtask" in bad_served.stderr
    assert _status(workspace)["served"] == 3


def test_a_miss_runs_in_the_client(workspace: VxWorkspace) -> None:
    _warm(workspace)
    (workspace.path / "packages/core/src/a.py").write_text("A = 2\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "vx", "run", "build"],
        cwd=workspace.path,
        env={**os.environ, **ON},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "core#build: cache miss, executing" in out
    assert "0 cached, 2 total" in out
    assert "warning: " not in err  # a fallback is silent
    # The task ran as the client's child, not the server's.
    assert int((workspace.path / "packages/ppid").read_text()) == process.pid
    assert (workspace.path / "packages/core/dist/a.py").read_text() == "A = 2\n"
    assert "core#build is not a hit with its outputs in place" in _log(workspace)
    # Outputs deleted: a hit that must be extracted also runs in the client.
    (workspace.path / "packages/core/dist/a.py").unlink()
    again = workspace.run_subprocess("run", "build", env=ON)
    assert "2 cached" in again.stdout
    assert again.exit_code == 0
    assert (workspace.path / "packages/core/dist/a.py").read_text() == "A = 2\n"


def test_a_killed_server_is_bypassed_with_one_warning(workspace: VxWorkspace) -> None:
    pid = _warm(workspace)["pid"]
    os.kill(pid, signal.SIGKILL)
    _wait_gone(pid)
    result = workspace.run_subprocess("run", "build", env=ON)
    assert result.exit_code == 0
    assert "2 cached, 2 total" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "warm server" in line]
    assert len(warnings) == 1, result.stderr
    assert "gone" in warnings[0]
    # The run started a new server; it answers the next run.
    assert _wait_for_server(workspace)["pid"] != pid
    served = workspace.run_subprocess("run", "build", env=ON)
    assert "warm server" not in served.stderr
    assert _status(workspace)["served"] == 1


def test_a_hung_server_is_bypassed_and_replaced(workspace: VxWorkspace) -> None:
    pid = _warm(workspace)["pid"]
    os.kill(pid, signal.SIGSTOP)
    try:
        result = workspace.run_subprocess("run", "build", env=ON, timeout=60)
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGCONT)
    assert result.exit_code == 0
    assert "2 cached, 2 total" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "warm server" in line]
    assert len(warnings) == 1, result.stderr
    assert "did not answer" in warnings[0]
    _wait_gone(pid)  # the client killed it
    assert _wait_for_server(workspace)["pid"] != pid


def test_a_busy_server_is_left_alone(workspace: VxWorkspace) -> None:
    """Another command holds the server (here: a connection that sends nothing): a second
    client runs without it and does not kill it."""
    status = _warm(workspace)
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    holder.connect(status["socket"])
    try:
        result = workspace.run_subprocess("run", "build", env=ON, timeout=60)
    finally:
        holder.close()
    assert result.exit_code == 0
    assert "2 cached, 2 total" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if "warm server" in line]
    assert warnings == [
        "vx: warning: the warm server is busy with another command; running without it"
    ]
    assert _wait_for_server(workspace)["pid"] == status["pid"]  # still the same server


def test_the_socket_is_private_to_the_user(workspace: VxWorkspace, tmp_path: Path) -> None:
    status = _warm(workspace)
    sock = Path(status["socket"])
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(status["log"]).stat().st_mode) == 0o600
    # Another user cannot connect (the unprivileged user of the sandbox tests).
    try:
        nobody = pwd.getpwnam("nobody")
    except KeyError:
        pytest.fail("no user 'nobody' to connect as")
    probe = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_UNIX)\n"
        "try:\n    s.connect(sys.argv[1])\nexcept PermissionError:\n    sys.exit(3)\n"
    )
    attempt = subprocess.run(
        [
            "setpriv",
            f"--reuid={nobody.pw_uid}",
            f"--regid={nobody.pw_gid}",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            probe,
            str(sock),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert attempt.returncode == 3, attempt.stderr
    # A socket directory others can enter is never used, and no server is started there.
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    env = {**ON, "VX_DAEMON_DIR": str(shared)}
    result = workspace.run_subprocess("run", "build", env=env)
    assert result.exit_code == 0
    assert "reachable by other users" in result.stderr
    assert not list(shared.glob("*.sock"))


def test_an_incompatible_server_is_restarted(workspace: VxWorkspace, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    env = {**ON, "PYTHONPATH": str(site)}
    first = workspace.run_subprocess("run", "build", env=env)
    assert first.exit_code == 0
    pid = _wait_for_server(workspace)["pid"]
    assert workspace.run_subprocess("run", "build", env=env).stderr == ""
    # Another import path: the server restarts (one warning), the answer is right.
    other = workspace.run_subprocess("run", "build", env=ON)
    assert other.exit_code == 0
    assert "2 cached" in other.stdout
    assert other.stderr.count("warm server") == 1
    assert "restarted" in other.stderr
    _wait_gone(pid)
    # Something installed on the import path (a new module) also restarts it.
    pid = _wait_for_server(workspace)["pid"]
    assert workspace.run_subprocess("run", "build", env=ON).stderr == ""
    (site / "newplugin.py").write_text("X = 1\n")
    with_site = workspace.run_subprocess("run", "build", env=env)
    assert "restarted" in with_site.stderr
    assert with_site.exit_code == 0
    _wait_gone(pid)
    pid = _wait_for_server(workspace)["pid"]
    served = workspace.run_subprocess("run", "build", env=env)
    assert served.stderr == ""
    assert _status(workspace)["pid"] == pid
    assert "import path" in _log(workspace)


def test_the_server_exits_when_idle(workspace: VxWorkspace) -> None:
    result = workspace.run_subprocess("run", "build", env={**ON, "VX_DAEMON_IDLE_TIMEOUT": "1s"})
    assert result.exit_code == 0
    # Read from its log, not its status: on a loaded machine it may be gone before a status
    # request could reach it.
    log = Path(server_paths(str(workspace.path.resolve())).log)
    deadline = time.monotonic() + 60
    while "idle for" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "the server did not exit when idle: " + _log(workspace)
        time.sleep(0.05)
    text = log.read_text()
    assert "(idle timeout 1 s)" in text
    pid = int(text.split("started (pid ", 1)[1].split(",", 1)[0])
    _wait_gone(pid)
    assert not Path(server_paths(str(workspace.path.resolve())).socket).exists()


def test_daemon_commands(workspace: VxWorkspace) -> None:
    none = workspace.run_subprocess("daemon", "status")
    assert none.exit_code == 1
    assert "no warm server" in none.stdout
    started = workspace.run_subprocess("daemon", "start")
    assert started.exit_code == 0
    assert "warm server running" in started.stdout
    status = workspace.run_subprocess("daemon", "status")
    assert status.exit_code == 0
    assert f"warm server for {workspace.path}" in status.stdout
    assert "MB RSS" in status.stdout
    pid = _status(workspace)["pid"]
    restarted = workspace.run_subprocess("daemon", "restart")
    assert restarted.exit_code == 0
    _wait_gone(pid)
    assert _status(workspace)["pid"] != pid
    assert "started" in workspace.run_subprocess("daemon", "logs").stdout
    stopped = workspace.run_subprocess("daemon", "stop")
    assert stopped.exit_code == 0
    assert "stopped the warm server" in stopped.stdout
    assert _status(workspace) == {"running": False}
    assert "no warm server" in workspace.run_subprocess("daemon", "stop").stdout


def test_a_server_is_not_started_for_a_broken_configuration(workspace: VxWorkspace) -> None:
    pyproject = workspace.path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + 'daemon_idle_timeout = "soon"\n')
    started = workspace.run_subprocess("daemon", "start")
    assert started.exit_code == 1
    assert "did not start" in started.stderr
    assert "daemon_idle_timeout" in _log(workspace) or "soon" in _log(workspace)
    assert not Path(server_paths(str(workspace.path)).pid).exists()


def test_when_a_server_is_started(workspace: VxWorkspace) -> None:
    # CI: not started unless asked; --no-daemon and VX_DAEMON=0 also keep it off.
    for env, args in (({"CI": "true"}, ()), ({"GITLAB_CI": "1"}, ()), (ON, ("--no-daemon",))):
        assert workspace.run_subprocess("run", "build", *args, env=env).exit_code == 0
        assert _status(workspace) == {"running": False}
    assert workspace.run_subprocess("run", "build", "--daemon", env={"CI": "true"}).exit_code == 0
    pid = _wait_for_server(workspace)["pid"]
    # Configured off: the server answers nothing and exits; no new one is started.
    pyproject = workspace.path / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "daemon = false\n")
    off = workspace.run_subprocess("run", "build", env={"VX_DAEMON": "auto"})
    assert off.exit_code == 0
    assert off.stderr == ""
    _wait_gone(pid)
    assert _status(workspace) == {"running": False}
    # A bad value is a configuration error naming the key.
    pyproject.write_text(pyproject.read_text().replace("daemon = false", 'daemon = "yes"'))
    bad = workspace.run_subprocess("run", "build", env={"VX_DAEMON": "auto"})
    assert bad.exit_code == 78
    assert "tool.vx.daemon" in bad.stderr


# -- never wrong: random edits, answers with and without the server ----------------------------

PROPERTY_FILES = {
    "pyproject.toml": '[tool.vx]\nmembers = ["packages/*"]\nglobal_env = ["GLOBAL_MODE"]\n',
    **{
        f"packages/p{i}/pyproject.toml": (
            f'[project]\nname = "p{i}"\n'
            + (f'dependencies = ["p{i - 1}"]\n' if i else "")
            + '\n[tool.vx.tasks.build]\ncmd = "mkdir -p dist && cat src/*.txt > dist/out"\n'
            'outputs = ["dist/**"]\ninputs = ["src/**"]\nenv = ["MODE"]\n'
            + ('depends_on = ["^build"]\n' if i else "")
        )
        for i in range(3)
    },
    **{f"packages/p{i}/src/{n}.txt": f"{i}-{n}\n" for i in range(3) for n in ("a", "b")},
    # Ignored, untracked: listed only once `git add -f` puts it in the index.
    ".gitignore": "*.ign\n",
    **{f"packages/p{i}/src/secret.ign": f"{i}-secret\n" for i in range(3)},
}


def _git(ws: VxWorkspace, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@e", *args],
        cwd=ws.path,
        check=True,
        capture_output=True,
    )


def _edit(ws: VxWorkspace, rng: random.Random, env: dict[str, str]) -> str:
    """Apply one random edit; say what it was."""
    project = ws.path / f"packages/p{rng.randrange(3)}"
    sources = sorted((project / "src").glob("*.txt"))
    kind = rng.choice(
        [
            "edit",
            "edit-same-size",
            "add",
            "delete",
            "rename",
            "branch",
            "pyproject",
            "env",
            "global-env",
            "outputs",
            "nothing",
            "gitignore",
            "git-add-ignored",
            "untrack",
            "replace-dir",
            "subdir",
            "symlink",
        ]
    )
    src = project / "src"
    if kind == "edit" and sources:
        path = rng.choice(sources)
        path.write_text(path.read_text() + f"{rng.random()}\n")
    elif kind == "edit-same-size" and sources:
        path = rng.choice(sources)
        text = path.read_text()
        path.write_text(text[:-2] + rng.choice("xyz") + "\n" if len(text) > 1 else "q\n")
    elif kind == "add":
        (project / "src" / f"n{rng.randrange(1000)}.txt").write_text(f"{rng.random()}\n")
    elif kind == "delete" and len(sources) > 1:
        rng.choice(sources).unlink()
    elif kind == "rename" and sources:
        path = rng.choice(sources)
        path.rename(path.with_name(f"r{rng.randrange(1000)}.txt"))
    elif kind == "branch":
        _git(ws, "add", "-A")
        _git(ws, "commit", "-qm", "step", "--allow-empty")
        branch = f"b{rng.randrange(3)}"
        _git(ws, "checkout", "-q", "-B", branch, rng.choice(["main", "HEAD~1", "HEAD"]))
    elif kind == "pyproject":
        path = project / "pyproject.toml"
        text = path.read_text()
        change = rng.choice(
            [
                ("cat src/*.txt", "cat src/*.txt src/*.txt"),
                ('inputs = ["src/**"]', 'inputs = ["src/a.txt"]'),
                ('env = ["MODE"]', 'env = ["MODE", "OTHER"]'),
            ]
        )
        text = text.replace(*change) if change[0] in text else text.replace(change[1], change[0])
        path.write_text(text)
    elif kind == "env":
        env["MODE"] = rng.choice(["a", "b", ""])
        env["OTHER"] = rng.choice(["1", "2"])
    elif kind == "global-env":
        env["GLOBAL_MODE"] = rng.choice(["x", "y"])
    elif kind == "outputs":
        out = project / "dist" / "out"
        if out.exists():
            out.unlink()
    elif kind == "gitignore":  # ignore (or stop ignoring) the added files: a listing change
        gitignore = ws.path / ".gitignore"
        lines = gitignore.read_text().splitlines()
        rule = "n*.txt"
        lines = [line for line in lines if line != rule] if rule in lines else [*lines, rule]
        gitignore.write_text("".join(f"{line}\n" for line in lines))
    elif kind == "git-add-ignored":  # only .git/index changes, no file in the tree
        _git(ws, "add", "-f", str((src / "secret.ign").relative_to(ws.path)))
    elif kind == "untrack" and sources:  # ignored and out of the index: no longer listed
        path = rng.choice(sources)
        relative = path.relative_to(ws.path).as_posix()
        with (ws.path / ".gitignore").open("a") as gitignore:
            gitignore.write(f"/{relative}\n")
        subprocess.run(
            ["git", "rm", "-q", "--cached", "--ignore-unmatch", relative],
            cwd=ws.path,
            check=True,
            capture_output=True,
        )
    elif kind == "replace-dir":
        # A directory renamed into place: its files bring no event of their own.
        fresh = project / "src.new"
        fresh.mkdir()
        for path in sources:
            text = path.read_text()
            (fresh / path.name).write_text(text[:-2] + rng.choice("xyz") + "\n")
        (fresh / "secret.ign").write_text("replaced\n")
        src.rename(project / "src.old")
        fresh.rename(src)
        shutil.rmtree(project / "src.old")
    elif kind == "subdir":  # a new directory and a file in it, at once
        sub = src / f"d{rng.randrange(100)}"
        sub.mkdir(exist_ok=True)
        (sub / "c.txt").write_text(f"{rng.random()}\n")
    elif kind == "symlink" and sources:  # a link's input is its target's name
        link = src / "link.txt"
        if link.is_symlink():
            link.unlink()
        link.symlink_to(rng.choice(sources).name)
    return kind


def _decisions(summary: dict[str, Any] | None) -> dict[str, tuple[str, str]]:
    assert summary is not None
    return {t["id"]: (t["hash"], t["cache"]["status"]) for t in summary["tasks"]}


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_answers_with_the_server_equal_answers_without_it(vx_workspace: Make, seed: int) -> None:
    rng = random.Random(seed)
    ws = vx_workspace(PROPERTY_FILES)
    _git(ws, "init", "-q", "-b", "main")
    _git(ws, "add", "-A")
    _git(ws, "commit", "-qm", "start")
    env: dict[str, str] = {"MODE": "a", "OTHER": "1", "GLOBAL_MODE": "x"}
    try:
        first = ws.run_subprocess("run", "build", env={**env, **ON})
        assert first.exit_code == 0, first.stderr
        _wait_for_server(ws)
        served = 0
        for step in range(10):
            kind = _edit(ws, rng, env)
            context = f"seed {seed}, step {step} ({kind})"
            with_server = ws.run_subprocess("run", "build", "--dry=json", env={**env, **ON})
            without = ws.run_subprocess("run", "build", "--dry=json", env={**env, "VX_DAEMON": "0"})
            assert with_server.exit_code == without.exit_code == 0, context + with_server.stderr
            assert with_server.stdout == without.stdout, context
            predicted = {
                t["id"]: (t["hash"], t["cache"]["status"])
                for t in json.loads(without.stdout)["tasks"]
            }
            use_server = rng.random() < 0.7
            real = ws.run_subprocess(
                "run", "build", env={**env, "VX_DAEMON": "1" if use_server else "0"}
            )
            assert real.exit_code == 0, context + real.stderr
            assert "warning" not in real.stderr, context + real.stderr
            assert _decisions(real.summary) == predicted, context
            status = _status(ws)
            served = status["served"]
        assert served >= 10  # every dry run at least was answered by the server
        # ... with file state kept between requests (not re-read each time).
        assert status["files"]["state"] == "watching"
        assert status["files"]["files"] > 0
    finally:
        ws.run_subprocess("daemon", "stop")


def test_the_daemon_flags_before_double_dash_only() -> None:
    from vx.daemon.client import explicit_mode

    env = {"VX_DAEMON": "0"}
    assert explicit_mode(["run", "build", "--daemon"], env) is True
    assert explicit_mode(["run", "build", "--", "--daemon"], env) is False  # an argument
    assert explicit_mode(["--no-daemon", "run", "--", "--daemon"], {}) is False


def test_an_empty_vx_daemon_means_not_said(workspace: VxWorkspace) -> None:
    result = workspace.run_subprocess("run", "build", "--no-daemon", env={"VX_DAEMON": ""})
    assert result.exit_code == 0, result.output


def test_a_server_that_cannot_start_leaves_the_run_passing(workspace: VxWorkspace) -> None:
    log = Path(server_paths(str(workspace.path.resolve())).log)
    log.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    log.mkdir()  # its log cannot be opened
    try:
        result = workspace.run_subprocess("run", "build", env=ON)
    finally:
        log.rmdir()
    assert result.exit_code == 0, result.output
    assert "vx: warning: could not start the warm server:" in result.stderr
    assert "Traceback" not in result.stderr
    assert "internal error" not in result.stderr


# -- file state kept warm: what makes the server forget it ---------------------------------


def _same_dry_run(ws: VxWorkspace, context: str = "") -> dict[str, Any]:
    """``--dry=json`` through the server equals it without; the plan, parsed."""
    served = ws.run_subprocess("run", "build", "--dry=json", env=ON)
    alone = ws.run_subprocess("run", "build", "--dry=json", "--no-daemon")
    assert served.exit_code == alone.exit_code == 0, context + served.stderr
    assert served.stdout == alone.stdout, context
    return dict(json.loads(served.stdout))


def _statuses(plan: dict[str, Any]) -> dict[str, str]:
    return {t["id"]: t["cache"]["status"] for t in plan["tasks"]}


def test_file_state_is_kept_and_follows_edits(workspace: VxWorkspace) -> None:
    _git(workspace, "init", "-q", "-b", "main")
    _git(workspace, "add", "-A")
    _git(workspace, "commit", "-qm", "start")
    _warm(workspace)
    assert _statuses(_same_dry_run(workspace)) == {"core#build": "hit", "app#build": "hit"}
    files = _status(workspace)["files"]
    assert files["state"] == "watching"
    assert files["files"] >= 2  # the inputs' digests are kept
    assert files["listing"] is True  # and git's listing (the workspace is a git repository)
    shown = workspace.run_subprocess("daemon", "status").stdout
    assert f"file state   watched, {files['files']} files kept" in shown
    source = workspace.path / "packages/core/src/a.py"
    # Same size, same second, right after a served answer: seen by the sync, not by stat.
    for text in ("A = 2\n", "A = 3\n", "A = 1\n"):
        source.write_text(text)
        expected = "hit" if text == "A = 1\n" else "miss"
        assert _statuses(_same_dry_run(workspace, text))["core#build"] == expected
    # A new file, then its directory renamed away: listed, then not.
    extra = workspace.path / "packages/core/src/new"
    extra.mkdir()
    (extra / "b.py").write_text("B = 1\n")
    assert _statuses(_same_dry_run(workspace))["core#build"] == "miss"
    extra.rename(workspace.path / "packages/core/gone")
    assert _statuses(_same_dry_run(workspace))["core#build"] == "miss"  # gone/ is an input
    shutil.rmtree(workspace.path / "packages/core/gone")
    assert _statuses(_same_dry_run(workspace))["core#build"] == "hit"
    assert _status(workspace)["files"]["rescans"] == 0


def test_a_dead_watcher_drops_the_file_state(workspace: VxWorkspace) -> None:
    from vx.daemon.control import ask

    _warm(workspace)
    _same_dry_run(workspace)
    assert _status(workspace)["files"]["files"] > 0
    assert ask(server_paths(str(workspace.path)), "close-watcher") is not None
    (workspace.path / "packages/core/src/a.py").write_text("A = 9\n")
    assert _statuses(_same_dry_run(workspace))["core#build"] == "miss"
    files = _status(workspace)["files"]
    assert files["state"] == "stopped"
    assert files["files"] == 0
    assert "watcher error" in files["reason"]
    # Without a watcher the server answers like before file state was kept.
    (workspace.path / "packages/core/src/a.py").write_text("A = 1\n")
    assert _statuses(_same_dry_run(workspace))["core#build"] == "hit"
    assert _status(workspace)["files"]["files"] == 0
    assert "file state: rescan (watcher error" in _log(workspace)


def test_a_flood_of_changes_or_no_cookie_rescans(workspace: VxWorkspace) -> None:
    from vx.daemon.filestate import FLOOD

    _warm(workspace)
    _same_dry_run(workspace)
    # More changes at once than the watcher is trusted with (an inotify overflow is silent).
    flood = workspace.path / "packages/core/src/flood"
    flood.mkdir()
    for n in range(FLOOD + 1):
        (flood / f"f{n}.py").write_text("x\n")
    assert _statuses(_same_dry_run(workspace))["core#build"] == "miss"
    assert "changes at once" in _log(workspace)
    shutil.rmtree(flood)
    assert _statuses(_same_dry_run(workspace))["core#build"] == "hit"
    # The sync cookie cannot be written: this request reads everything from disk.
    cookies = workspace.path / ".vx/daemon"
    shutil.rmtree(cookies)
    cookies.write_text("not a directory\n")
    (workspace.path / "packages/core/src/a.py").write_text("A = 5\n")
    assert _statuses(_same_dry_run(workspace))["core#build"] == "miss"
    assert "cannot write the sync cookie" in _log(workspace)
    cookies.unlink()
    # Its directory removed: made again, and this request reads from disk (no 2 s wait for
    # a cookie the watcher may not see yet).
    assert _statuses(_same_dry_run(workspace))["core#build"] == "miss"
    assert "the sync directory was made again" in _log(workspace)
    (workspace.path / "packages/core/src/a.py").write_text("A = 1\n")
    assert _statuses(_same_dry_run(workspace))["core#build"] == "hit"
    assert _status(workspace)["files"]["state"] == "watching"


def test_without_watchfiles_the_server_keeps_no_file_state(
    vx_workspace: Make, tmp_path: Path
) -> None:
    blocker = tmp_path / "block" / "watchfiles"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('watchfiles is not installed')\n")
    path = os.pathsep.join(filter(None, [str(blocker.parent), os.environ.get("PYTHONPATH")]))
    ws = vx_workspace(FILES)
    env = {**ON, "PYTHONPATH": path}
    try:
        first = ws.run_subprocess("run", "build", env=env)
        assert first.exit_code == 0, first.stderr
        _wait_for_server(ws)
        for text in ("A = 2\n", "A = 1\n"):
            (ws.path / "packages/core/src/a.py").write_text(text)
            served = ws.run_subprocess("run", "build", "--dry=json", env=env)
            alone = ws.run_subprocess("run", "build", "--dry=json", "--no-daemon")
            assert served.exit_code == 0, served.stderr
            assert served.stdout == alone.stdout
        status = _status(ws)
        assert status["served"] == 2
        assert status["files"]["state"] == "off"
        assert "watchfiles is not importable" in status["files"]["reason"]
        assert _log(ws).count("file state not kept") == 1
    finally:
        ws.run_subprocess("daemon", "stop")


def test_a_replaced_workspace_root_stops_the_watcher(workspace: VxWorkspace) -> None:
    """A root deleted and made again (a fresh clone in its place) is no longer watched: the
    server must not keep file state for it."""
    _warm(workspace)
    _same_dry_run(workspace)
    old = workspace.path.with_name(workspace.path.name + "-old")
    workspace.path.rename(old)
    shutil.copytree(old, workspace.path, symlinks=True)
    shutil.rmtree(old)
    assert _statuses(_same_dry_run(workspace))["core#build"] == "hit"
    # An edit in the new tree reaches no watcher: nothing may be answered from memory.
    (workspace.path / "packages/core/src/a.py").write_text("A = 7\n")
    assert _statuses(_same_dry_run(workspace))["core#build"] == "miss"
    files = _status(workspace)["files"]
    assert files["state"] == "stopped"
    assert "replaced" in files["reason"]
    (workspace.path / "packages/core/src/a.py").write_text("A = 1\n")
    assert _statuses(_same_dry_run(workspace))["core#build"] == "hit"


def test_a_server_started_first_marks_the_state_directory(workspace: VxWorkspace) -> None:
    """The server's cookie directory may be the first thing in ``.vx``: it is marked like a
    run marks it (git never picks it up)."""
    assert not (workspace.path / ".vx").exists()
    started = workspace.run_subprocess("daemon", "start")
    assert started.exit_code == 0, started.stderr
    assert (workspace.path / ".vx/.gitignore").read_text().endswith("\n*\n")
    assert (workspace.path / ".vx/CACHEDIR.TAG").is_file()
    assert _status(workspace)["files"]["state"] == "watching"
