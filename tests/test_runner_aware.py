"""Runner-aware tools: tasks report through ``VX_IPC`` (client ``vx_ipc.py``) what they read;
vx keys the cache with the post-run fingerprint. Real vx processes, real task processes, real
sockets; misbehaving clients are real processes too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import vx_ipc

pytest.register_assert_rewrite("remote_servers")
from remote_servers import TurboServer  # noqa: E402

from vx.testing import RunResult, VxWorkspace  # noqa: E402

# Fixtures: turbo_server (a real turborepo-remote-cache).
pytest_plugins = ["remote_servers"]

Make = Callable[[dict[str, Any]], VxWorkspace]

PY = sys.executable
ROOT = {"tool": {"vx": {"members": ["packages/*"]}}}


def project(name: str, tasks: dict[str, Any]) -> dict[str, Any]:
    return {"project": {"name": name}, "tool": {"vx": {"tasks": tasks}}}


def cache_of(result: RunResult, task: str) -> dict[str, Any]:
    return dict(result.task(task)["cache"])


def workspace(
    make: Make, script: str, *, inputs: list[str] | None = None, **task: Any
) -> VxWorkspace:
    definition: dict[str, Any] = {"cmd": f"{PY} tool.py", **task}
    if inputs is not None:
        definition["inputs"] = inputs
    return make(
        {
            "pyproject.toml": ROOT,
            "packages/app/pyproject.toml": project("app", {"check": definition}),
            "packages/app/tool.py": textwrap.dedent(script),
            "shared/data.txt": "one\n",
        }
    )


# -- the client without vx ------------------------------------------------------------------


def test_client_calls_are_no_ops_without_vx(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import os, sys, vx_ipc
        assert not vx_ipc.active()
        assert vx_ipc.add_inputs(["x"]) is False
        assert vx_ipc.ignore_inputs(["x"]) is False
        assert vx_ipc.ignore_outputs("x") is False
        assert vx_ipc.disable_cache("why not") is False
        assert vx_ipc.get_env("HOME") == os.environ.get("HOME")
        assert vx_ipc.get_env("SURELY_UNSET_VAR") is None
        print("quiet")
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "VX_IPC"}
    done = subprocess.run(
        [PY, "-c", script], env=env, capture_output=True, text=True, check=False, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "quiet\n"
    assert done.stderr == ""


def test_client_import_is_stdlib_only(tmp_path: Path) -> None:
    """The client works from an interpreter where vx is not installed (copied file, -I)."""
    (tmp_path / "vx_ipc.py").write_bytes(Path(vx_ipc.__file__).read_bytes())
    code = "import sys, vx_ipc; print(sorted(m for m in sys.modules if m.startswith('vx')))"
    done = subprocess.run(
        [PY, "-E", "-s", "-S", "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.strip() == "['vx_ipc']"


# -- each call under vx ---------------------------------------------------------------------


def test_add_inputs_makes_the_entry_depend_on_the_reported_file(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        """
        import vx_ipc
        assert vx_ipc.active()
        assert vx_ipc.add_inputs(["../../shared/data.txt"])
        print(open("../../shared/data.txt").read().strip())
        """,
        inputs=["tool.py"],
    )
    first = ws.run_subprocess("run", "check")
    assert first.exit_code == 0, first.output
    assert cache_of(first, "app#check")["status"] == "miss"
    again = ws.run_subprocess("run", "check")
    assert cache_of(again, "app#check")["status"] == "hit", again.output
    (ws.path / "shared/data.txt").write_text("two\n")
    dry = ws.run_subprocess("run", "check", "--dry=json")
    predicted = json.loads(dry.stdout)["tasks"][0]["cache"]
    assert predicted["status"] == "miss"
    assert predicted["changes"] == ["tool-reported input shared/data.txt changed"]
    changed = ws.run_subprocess("run", "check")
    assert cache_of(changed, "app#check")["status"] == "miss"
    assert "two" in changed.output
    assert cache_of(changed, "app#check")["changes"] == [
        "tool-reported input shared/data.txt changed"
    ]
    assert cache_of(ws.run_subprocess("run", "check"), "app#check")["status"] == "hit"


def test_a_reported_directory_covers_added_files(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        """
        import vx_ipc
        vx_ipc.add_inputs(["../../shared"])
        """,
        inputs=["tool.py"],
    )
    assert ws.run_subprocess("run", "check").exit_code == 0
    assert cache_of(ws.run_subprocess("run", "check"), "app#check")["status"] == "hit"
    (ws.path / "shared/new.txt").write_text("new\n")
    why = ws.run_subprocess("why", "app#check")
    assert "tool-reported input shared changed" in why.stdout, why.output
    assert cache_of(ws.run_subprocess("run", "check"), "app#check")["status"] == "miss"


def test_ignore_inputs_drops_reported_paths(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        """
        import vx_ipc
        vx_ipc.add_inputs(["../../shared/data.txt", "cache/state"])
        assert vx_ipc.ignore_inputs(["cache"])
        """,
        inputs=["tool.py"],
    )
    (ws.path / "packages/app/cache").mkdir()
    (ws.path / "packages/app/cache/state").write_text("1")
    assert ws.run_subprocess("run", "check").exit_code == 0
    (ws.path / "packages/app/cache/state").write_text("2")
    assert cache_of(ws.run_subprocess("run", "check"), "app#check")["status"] == "hit"


def test_ignore_outputs_leaves_paths_out_of_the_entry(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        """
        import os, vx_ipc
        os.makedirs("build/tmp", exist_ok=True)
        open("build/result.txt", "w").write("result")
        open("build/tmp/scratch", "w").write("scratch")
        assert vx_ipc.ignore_outputs(["build/tmp"])
        """,
        inputs=["tool.py"],
        outputs=["build/**"],
    )
    assert ws.run_subprocess("run", "check").exit_code == 0
    build = ws.path / "packages/app/build"
    (build / "result.txt").unlink()
    (build / "tmp/scratch").unlink()
    hit = ws.run_subprocess("run", "check")
    assert cache_of(hit, "app#check")["status"] == "hit", hit.output
    assert (build / "result.txt").read_text() == "result"
    assert not (build / "tmp/scratch").exists()


def test_get_env_reads_through_vx_and_tracks_the_value(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        """
        import os, vx_ipc
        assert "DEPLOY_STAGE" not in os.environ  # strict mode: not passed to the task
        print("stage", vx_ipc.get_env("DEPLOY_STAGE"))
        print("untracked", vx_ipc.get_env("UNTRACKED_THING", tracked=False))
        """,
        inputs=["tool.py"],
    )
    first = ws.run_subprocess("run", "check", env={"DEPLOY_STAGE": "blue", "UNTRACKED_THING": "a"})
    assert "stage blue" in first.output
    assert "untracked a" in first.output
    same = ws.run_subprocess("run", "check", env={"DEPLOY_STAGE": "blue", "UNTRACKED_THING": "b"})
    assert cache_of(same, "app#check")["status"] == "hit", same.output
    why = ws.run_subprocess("why", "app#check", env={"DEPLOY_STAGE": "green"})
    assert "tracked env DEPLOY_STAGE changed" in why.stdout, why.output
    assert "green" not in why.output
    other = ws.run_subprocess("run", "check", env={"DEPLOY_STAGE": "green"})
    assert cache_of(other, "app#check")["changes"] == ["tracked env DEPLOY_STAGE changed"]
    assert "stage green" in other.output


def test_disable_cache_keeps_the_run_out_of_the_cache(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        """
        import vx_ipc
        assert vx_ipc.disable_cache("talked to the staging database")
        print("ran")
        """,
        inputs=["tool.py"],
    )
    first = ws.run_subprocess("run", "check")
    assert first.exit_code == 0
    assert cache_of(first, "app#check")["uncached"] == "talked to the staging database"
    first.fnmatch_lines(["app#check: not cached: talked to the staging database"])
    second = ws.run_subprocess("run", "check")
    assert cache_of(second, "app#check")["status"] == "miss"
    assert "ran" in second.output
    why = ws.run_subprocess("why", "app#check")
    assert "the last run was not cached: talked to the staging database" in why.stdout


def test_fingerprint_travels_with_the_remote_cache(
    vx_workspace: Make, tmp_path: Path, turbo_server: TurboServer
) -> None:
    """A second clone with its own local cache reads the entry from a real remote cache: the
    fingerprint came with it, so an equal reported file is a hit, a different one a miss."""
    script = """
        import vx_ipc
        vx_ipc.add_inputs(["../../shared/data.txt"])
        print("ran")
    """
    remote = {"url": turbo_server.url, "team": turbo_server.team}

    def clone(name: str) -> tuple[VxWorkspace, dict[str, str]]:
        ws = workspace(vx_workspace, script, inputs=["tool.py"])
        ws.write({"pyproject.toml": {"tool": {"vx": {**ROOT["tool"]["vx"], "remote": remote}}}})
        env = {"VX_REMOTE_CACHE_TOKEN": turbo_server.token, "VX_CACHE_DIR": str(tmp_path / name)}
        return ws, env

    one, env_one = clone("one")
    first = one.run_subprocess("run", "check", env=env_one)
    assert first.exit_code == 0, first.output
    assert turbo_server.stored_keys() == [first.task("app#check")["hash"]]
    two, env_two = clone("two")
    hit = two.run_subprocess("run", "check", env=env_two)
    assert cache_of(hit, "app#check")["status"] == "hit", hit.output
    assert cache_of(hit, "app#check")["source"] == "remote"
    three, env_three = clone("three")
    (three.path / "shared/data.txt").write_text("different\n")
    dry = json.loads(three.run_subprocess("run", "check", "--dry=json", env=env_three).stdout)
    assert dry["tasks"][0]["cache"]["status"] == "miss"
    miss = three.run_subprocess("run", "check", env=env_three)
    assert cache_of(miss, "app#check")["status"] == "miss", miss.output
    assert cache_of(miss, "app#check")["changes"] == ["tool-reported input shared/data.txt changed"]
    assert "ran" in miss.output


# -- misbehaving clients -------------------------------------------------------------------


def test_paths_outside_the_workspace_are_refused(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        """
        import vx_ipc
        assert vx_ipc.add_inputs(["/etc/hostname", "../../shared/data.txt"]) is False
        assert vx_ipc.add_inputs(["../../.vx/anything"]) is False
        assert vx_ipc.add_inputs(["escape"]) is False  # a symlink out of the workspace
        """,
        inputs=["tool.py"],
    )
    (ws.path / "packages/app/escape").symlink_to("/etc/hostname")
    first = ws.run_subprocess("run", "check")
    assert first.exit_code == 0, first.output
    assert "outside the workspace or under .vx/ refused, e.g. /etc/hostname" in first.stderr
    assert "vx refused 1 path(s) of add_inputs" in first.output
    (ws.path / "shared/data.txt").write_text("changed\n")  # the accepted path still counts
    assert cache_of(ws.run_subprocess("run", "check"), "app#check")["status"] == "miss"


def test_too_many_paths_make_the_run_uncacheable(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        """
        import vx_ipc
        assert vx_ipc.add_inputs([f"file-{i}" for i in range(50_001)]) is False
        """,
        inputs=["tool.py"],
    )
    result = ws.run_subprocess("run", "check")
    assert result.exit_code == 0, result.output
    assert "more than 50000 paths reported; this run is not cached" in result.stderr
    assert cache_of(result, "app#check")["uncached"] == "a tool reported more than 50000 paths"
    assert cache_of(ws.run_subprocess("run", "check"), "app#check")["status"] == "miss"


def test_pytest_plugin_is_inactive_without_vx(tmp_path: Path) -> None:
    (tmp_path / "test_x.py").write_text("def test_x():\n    pass\n")
    env = {k: v for k, v in os.environ.items() if k != "VX_IPC"}
    done = subprocess.run(
        [PY, "-m", "pytest", "-q", "--trace-config", "-p", "no:cacheprovider", "test_x.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "vx_ipc_pytest" in done.stdout  # loaded through its pytest11 entry point
    assert "vx_ipc" not in done.stderr


RAW_CLIENT = """
import json, os, socket, sys
def connect():
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    s.connect(os.environ["VX_IPC"])
    return s, s.makefile("rb")
"""


def test_malformed_and_huge_requests_are_refused(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        RAW_CLIENT
        + """
s, f = connect()
for line in [b"not json\\n", b"[1, 2]\\n", b'{"v": 99, "op": "add_inputs"}\\n',
             b'{"v": 1, "op": "explode"}\\n', b'{"v": 1, "op": "add_inputs", "paths": 3}\\n',
             b'{"v": 1, "op": "get_env", "name": ""}\\n']:
    s.sendall(line)
    reply = json.loads(f.readline())
    assert reply["ok"] is False and reply["error"], reply
s.sendall(b'{"v": 1, "id": 7, "op": "get_env", "name": "HOME", "tracked": false}\\n')
assert json.loads(f.readline())["id"] == 7  # still served after the refusals
s.sendall(b'{"v": 1, "op": "add_inputs", "paths": ["/\\ud800"]}\\n')  # no file name
assert json.loads(f.readline())["refused"] == ["/\\ud800"]
try:
    s.sendall(b"x" * (3 << 20) + b"\\n")
    rest = f.read()
except OSError:
    rest = b""
assert b'"ok": true' not in rest
print("client survived")
""",
        inputs=["tool.py"],
    )
    result = ws.run_subprocess("run", "check")
    assert result.exit_code == 0, result.output
    assert "client survived" in result.output
    assert "Traceback" not in result.output
    for message in (
        "a request that is not JSON",
        "add_inputs refused: paths must be a list of strings",
        "get_env refused: name must be a non-empty variable name",
        "protocol version 99 is not supported",
        "unknown operation 'explode'",
        "a request longer than 1048576 bytes",
    ):
        assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_many_connections_are_bounded(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        RAW_CLIENT
        + """
held = [connect() for _ in range(64)]
answered = 0
for s, f in held:
    try:
        s.sendall(b'{"v": 1, "op": "get_env", "name": "HOME", "tracked": false}\\n')
        answered += bool(f.readline())
    except OSError:
        pass
print("answered", answered)
assert 0 < answered <= 32
""",
        inputs=["tool.py"],
    )
    result = ws.run_subprocess("run", "check")
    assert result.exit_code == 0, result.output
    assert "more than 32 connections at once" in result.stderr


def test_calls_after_the_task_ended_are_no_ops(vx_workspace: Make, tmp_path: Path) -> None:
    """A grandchild outlives the task and reports afterwards: refused on its side (the socket
    is gone), no effect on vx."""
    marker = tmp_path / "late.txt"
    ended = tmp_path / "run-ended"  # written by the test once vx has exited: no timing guess
    late = tmp_path / "late.py"
    late.write_text(
        "import os, time, vx_ipc\n"
        "deadline = time.monotonic() + 60\n"
        f"while not os.path.exists({str(ended)!r}) and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "ok = vx_ipc.add_inputs(['tool.py'])\n"
        f"open({str(marker)!r}, 'w').write(repr(ok))\n"
    )
    ws = workspace(
        vx_workspace,
        f"""
        import subprocess, sys
        subprocess.Popen([sys.executable, {str(late)!r}], start_new_session=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        """,
        inputs=["tool.py"],
    )
    result = ws.run_subprocess("run", "check")
    assert result.exit_code == 0, result.output
    ended.write_text("")
    deadline = time.monotonic() + 90
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marker.read_text() == "False"


def test_a_hung_client_does_not_hang_the_run(vx_workspace: Make, tmp_path: Path) -> None:
    """A grandchild keeps a half-sent request open after the task's command exits."""
    hang = tmp_path / "hang.py"
    hang.write_text(
        "import os, socket, time\n"
        "s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)\n"
        "s.connect(os.environ['VX_IPC'])\n"
        's.sendall(b\'{"v": 1, "op": "add_in\')\n'
        "time.sleep(60)\n"
    )
    ws = workspace(
        vx_workspace,
        f"""
        import subprocess, sys, time
        child = subprocess.Popen([sys.executable, {str(hang)!r}], start_new_session=True,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        print("hanging client", child.pid)
        """,
        inputs=["tool.py"],
    )
    result = ws.run_subprocess("run", "check", timeout=30)
    assert result.exit_code == 0, result.output
    pid = int(result.output.split("hanging client ")[1].split()[0])
    os.kill(pid, 9)


def test_the_socket_is_private_and_removed(vx_workspace: Make, tmp_path: Path) -> None:
    seen = tmp_path / "seen.json"
    ws = workspace(
        vx_workspace,
        f"""
        import json, os, stat
        address = os.environ["VX_IPC"]
        directory = os.path.dirname(address)
        mode = stat.S_IMODE(os.stat(directory).st_mode)
        open({str(seen)!r}, "w").write(json.dumps([address, mode]))
        """,
        inputs=["tool.py"],
    )
    assert ws.run_subprocess("run", "check").exit_code == 0
    address, mode = json.loads(seen.read_text())
    assert mode == 0o700
    assert not os.path.exists(address)
    assert not os.path.exists(os.path.dirname(address))


def test_the_channel_can_be_turned_off(vx_workspace: Make) -> None:
    ws = workspace(
        vx_workspace,
        """
        import os
        print("channel", "VX_IPC" in os.environ)
        """,
        inputs=["tool.py"],
    )
    result = ws.run_subprocess("run", "check", env={"VX_RUNNER_AWARE": "false"})
    assert "channel False" in result.output
    assert "channel True" in ws.run_subprocess("run", "check", "--force").output


# -- the pytest plugin ---------------------------------------------------------------------


def test_pytest_plugin_narrows_inputs(vx_workspace: Make) -> None:
    """B's tests import a1 of project A but not a2; B#test declares only its own files."""
    ws = vx_workspace(
        {
            "pyproject.toml": ROOT,
            "packages/a/pyproject.toml": project("a", {}),
            "packages/a/src/a1.py": "VALUE = 1\n",
            "packages/a/src/a2.py": "OTHER = 2\n",
            "packages/b/pyproject.toml": project(
                "b",
                {
                    "test": {
                        "cmd": f"{PY} -m pytest -q tests",
                        "inputs": ["tests/**", "src/**"],
                    }
                },
            ),
            "packages/b/tests/conftest.py": (
                "import pathlib, sys\n"
                "sys.path.insert(0, str(pathlib.Path(__file__).parents[2] / 'a' / 'src'))\n"
            ),
            "packages/b/tests/test_b.py": (
                "import a1\n\n\ndef test_value():\n    assert a1.VALUE == 1\n"
            ),
        }
    )
    first = ws.run_subprocess("run", "test")
    assert first.exit_code == 0, first.output
    assert cache_of(first, "b#test")["status"] == "miss"
    (ws.path / "packages/a/src/a2.py").write_text("OTHER = 3\n")
    untouched = ws.run_subprocess("run", "test")
    assert cache_of(untouched, "b#test")["status"] == "hit", untouched.output
    (ws.path / "packages/a/src/a1.py").write_text("VALUE = 1  # edited\n")
    why = ws.run_subprocess("why", "b#test")
    assert "tool-reported input packages/a/src/a1.py changed" in why.stdout, why.output
    rerun = ws.run_subprocess("run", "test")
    assert cache_of(rerun, "b#test")["status"] == "miss"
    assert cache_of(rerun, "b#test")["changes"] == [
        "tool-reported input packages/a/src/a1.py changed"
    ]
    assert "1 passed" in rerun.output
    assert cache_of(ws.run_subprocess("run", "test"), "b#test")["status"] == "hit"
