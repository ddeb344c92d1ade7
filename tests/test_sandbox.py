"""The sandbox plugin: real tasks on real workspaces try to escape and must fail with a report
naming the target; declared access works. Every case runs with both backends, as root and as
an unprivileged user (created here when missing)."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from vx.testing import VxWorkspace, write_files

Make = Callable[..., VxWorkspace]

TEST_USER = "vx-sandbox-test"
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Runner:
    """How to run vx (and Python tasks) as one user."""

    name: str
    uid: int
    gid: int
    python: str
    """An interpreter that user can execute, with vx importable."""
    prefix: list[str]

    def chown(self, path: Path) -> None:
        if self.uid == os.getuid():
            return
        for directory, dirs, files in os.walk(path):
            for name in (directory, *(os.path.join(directory, n) for n in (*dirs, *files))):
                os.lchown(name, self.uid, self.gid)

    def vx(
        self, cwd: Path, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        base = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "XDG_CACHE_HOME": str(cwd.parent / "xdg"),
            "VX_DAEMON": "0",  # no warm server (docs/daemon.md) in these runs
        }
        return subprocess.run(
            [*self.prefix, *self.vx_argv(), *args],
            cwd=cwd,
            env={**base, **(env or {})},
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def vx_argv(self) -> list[str]:
        if self.python == sys.executable:
            return [self.python, "-m", "vx"]
        # The system interpreter of the same version, with this checkout's site-packages.
        site = next(p for p in sys.path if p.endswith("site-packages"))
        code = (
            f"import site, runpy; site.addsitedir({site!r}); "
            "runpy.run_module('vx', run_name='__main__')"
        )
        return [self.python, "-c", code]


def _required_root(members: str, backend: str) -> str:
    """A root ``pyproject.toml`` with the sandbox required on ``backend``."""
    return (
        f'[tool.vx]\nmembers = ["{members}"]\n\n[tool.vx.sandbox]\n'
        f'mode = "required"\nbackend = "{backend}"\n'
    )


def _usable_by(uid: int, gid: int, path: str) -> bool:
    probe = subprocess.run(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={gid}",
            "--clear-groups",
            path,
            "-c",
            "import pluggy",
        ],
        capture_output=True,
        check=False,
        env={"PYTHONPATH": next(p for p in sys.path if p.endswith("site-packages"))},
    )
    return probe.returncode == 0


def _unprivileged() -> Runner:
    try:
        entry = pwd.getpwnam(TEST_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", TEST_USER],
            check=True,
        )
        entry = pwd.getpwnam(TEST_USER)
    uid, gid = entry.pw_uid, entry.pw_gid
    same_version = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    # The system interpreter first: a venv's interpreter may live under /root.
    python = next(
        (
            p
            for p in (same_version, sys.executable)
            if os.path.exists(p) and _usable_by(uid, gid, p)
        ),
        None,
    )
    if python is None:
        pytest.fail(f"no Python {sys.version_info[:2]} that user {TEST_USER} can run")
    prefix = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    return Runner("unprivileged", uid, gid, python, prefix)


def _let_others_traverse(paths: list[Path]) -> list[tuple[Path, int]]:
    """Add traverse permission for others to each ancestor of ``paths`` that lacks it (a
    checkout in a ``mktemp -d`` directory is 0700), so the test user reaches vx's sources and
    site-packages; returns the original modes to restore."""
    changed: list[tuple[Path, int]] = []
    for path in paths:
        for directory in (path, *path.parents):
            mode = stat.S_IMODE(directory.stat().st_mode)
            if not mode & stat.S_IXOTH and (directory, mode) not in changed:
                os.chmod(directory, mode | stat.S_IXOTH)
                changed.append((directory, mode))
    return changed


@pytest.fixture(scope="session", params=["root", "unprivileged"])
def runner(request: pytest.FixtureRequest) -> Iterator[Runner]:
    if os.getuid() != 0:
        if request.param == "root":
            pytest.skip("the suite is not running as root")
        yield Runner("unprivileged", os.getuid(), os.getgid(), sys.executable, [])
        return
    if request.param == "root":
        yield Runner("root", 0, 0, sys.executable, [])
        return
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    changed = _let_others_traverse([site, Path(__file__).resolve().parent.parent])
    try:
        yield _unprivileged()
    finally:
        for directory, mode in reversed(changed):
            os.chmod(directory, mode)


@pytest.fixture(scope="session")
def backends() -> list[str]:
    return ["landlock", "bwrap"]


@pytest.fixture
def place(runner: Runner) -> Iterator[Path]:
    """A world-traversable directory owned by the runner (``tmp_path`` is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="vx-sandbox-test-", dir="/tmp"))
    os.chmod(base, 0o755)
    (base / "home").mkdir()
    (base / "home" / "secret.txt").write_text("home-secret\n")
    (base / "home" / ".cache").mkdir()
    (base / "shared").mkdir()
    os.chmod(base / "shared", 0o777)
    yield base
    shutil.rmtree(base, ignore_errors=True)


class Listeners:
    """TCP, UDP and Unix-socket listeners on the test's side; they record any contact."""

    def __init__(self, directory: Path) -> None:
        self.tcp = socket.socket()
        self.tcp.bind(("127.0.0.1", 0))
        self.tcp.listen()
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.unix_path = str(directory / "listener.sock")
        self.unix = socket.socket(socket.AF_UNIX)
        self.unix.bind(self.unix_path)
        os.chmod(self.unix_path, 0o777)
        self.unix.listen()
        self.contacts: list[str] = []
        for name, server in (("tcp", self.tcp), ("unix", self.unix)):
            threading.Thread(target=self._accept, args=(name, server), daemon=True).start()

    def _accept(self, name: str, server: socket.socket) -> None:
        try:
            while True:
                connection, _ = server.accept()
                self.contacts.append(name)
                connection.close()
        except OSError:
            return

    def udp_received(self) -> bool:
        self.udp.setblocking(False)
        try:
            self.udp.recv(100)
        except BlockingIOError:
            return False
        return True

    def close(self) -> None:
        for server in (self.tcp, self.udp, self.unix):
            server.close()


def _python(code: str, runner: Runner) -> str:
    return f"{runner.python} -c {json.dumps(code)}"


def _escape_workspace(place: Path, runner: Runner, backend: str, listeners: Listeners) -> Path:
    home = place / "home"
    tcp_port = listeners.tcp.getsockname()[1]
    udp_port = listeners.udp.getsockname()[1]
    py = lambda code: _python(code, runner)  # noqa: E731
    tasks = {
        "read-repo": "cat ../../README.txt",
        "read-home": f"cat {home}/secret.txt",
        "read-symlink": "cat src/escape",
        "read-proc-root": f"cat /proc/self/root{home}/secret.txt",
        "write-repo": "echo x >> src/app.txt",
        "write-home-cache": f"echo x > {home}/.cache/written",
        "write-tmp": f"echo x > {place}/shared/escaped",
        "write-symlink": "ln -s ../src/app.txt out/link && echo x > out/link",
        "write-hardlink": "ln src/app.txt out/hard && echo x >> out/hard",
        "write-next-to-outputs": "echo ok > out/ok.txt && echo x > stray.txt",
        "net-tcp": py(f"import socket; socket.create_connection(('127.0.0.1', {tcp_port}), 5)"),
        "net-udp": py(
            "import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.connect(('127.0.0.1', {udp_port})); s.send(b'x'); s.recv(1)"
        ),
        "net-unix": py(
            f"import socket; socket.socket(socket.AF_UNIX).connect({listeners.unix_path!r})"
        ),
        "net-dns": py("import socket; socket.getaddrinfo('example.com', 80)"),
    }
    app = ['[project]\nname = "app"\ndependencies = ["lib"]\n']
    for name, cmd in tasks.items():
        # each task its own output directory: tasks sharing outputs would race
        cmd = cmd.replace("out/", f"out-{name}/")
        app.append(
            f"[tool.vx.tasks.{name}]\ncmd = {json.dumps(cmd)}\n"
            f'inputs = ["src/**"]\noutputs = ["out-{name}/**"]\n'
        )
    app.append(
        "[tool.vx.tasks.declared]\n"
        'cmd = "mkdir -p dist && cat src/app.txt ../lib/src/lib.txt ../lib/dist/lib.txt '
        '> dist/out.txt && echo tmp > $TMPDIR/t && cat $TMPDIR/t"\n'
        'depends_on = ["^build"]\ninputs = ["src/**", "^src/**"]\noutputs = ["dist/**"]\n'
    )
    app.append(
        "[tool.vx.tasks.loopback]\n"
        "cmd = "
        + json.dumps(
            py(
                "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(); "
                "socket.create_connection(s.getsockname()); print('loopback ok')"
            )
        )
        + '\nsandbox = { network = "loopback" }\n'
    )
    app.append(f'[tool.vx.tasks.opted-out]\ncmd = "cat {home}/secret.txt"\nsandbox = false\n')
    ws = place / "ws"
    write_files(
        ws,
        {
            "pyproject.toml": _required_root("packages/*", backend),
            "README.txt": "repo-secret\n",
            "packages/lib/pyproject.toml": (
                '[project]\nname = "lib"\n\n[tool.vx.tasks.build]\n'
                'cmd = "mkdir -p dist && cp src/lib.txt dist/lib.txt"\n'
                'inputs = ["src/**"]\noutputs = ["dist/**"]\n'
            ),
            "packages/lib/src/lib.txt": "lib-source\n",
            "packages/app/pyproject.toml": "\n".join(app),
            "packages/app/src/app.txt": "app-source\n",
        },
    )
    (ws / "packages/app/src/escape").symlink_to(home / "secret.txt")
    runner.chown(place)
    return ws


def _task_output(stdout: str, task: str) -> str:
    prefix = f"app#{task}: "
    return "\n".join(line[len(prefix) :] for line in stdout.splitlines() if line.startswith(prefix))


#: Every escape and what its report must name.
EXPECTED = {
    "read-repo": "read  README.txt",
    "read-home": "read  {home}/secret.txt",
    "read-symlink": "read  packages/app/src/escape -> {home}/secret.txt",
    "read-proc-root": "read  /proc/self/root{home}/secret.txt -> {home}/secret.txt",
    "write-repo": "write packages/app/src/app.txt",
    "write-home-cache": "write {home}/.cache/written",
    "write-tmp": "write {place}/shared/escaped",
    "write-symlink": "write packages/app/out-write-symlink/link -> packages/app/src/app.txt",
    "write-hardlink": "write packages/app/src/app.txt",
    "write-next-to-outputs": "write packages/app/stray.txt",
    "net-tcp": "net   connect tcp 127.0.0.1:{tcp}",
    "net-udp": "net   connect udp 127.0.0.1:{udp}",
    "net-unix": "net   connect unix {unix}",
    "net-dns": ":53",
}


@pytest.mark.parametrize("backend", ["landlock", "bwrap"])
def test_escapes_fail_with_a_report_naming_the_target(
    runner: Runner, place: Path, backend: str
) -> None:
    listeners = Listeners(place / "shared")
    try:
        ws = _escape_workspace(place, runner, backend, listeners)
        result = runner.vx(
            ws,
            "run",
            *EXPECTED,
            "declared",
            "loopback",
            "opted-out",
            "--continue=always",
            env={"HOME": str(place / "home"), "VX_TEST_SECRET": "env-secret-value"},
        )
        output = result.stdout + result.stderr
        assert result.returncode != 0, output
        values = {
            "home": str(place / "home"),
            "place": str(place),
            "tcp": listeners.tcp.getsockname()[1],
            "udp": listeners.udp.getsockname()[1],
            "unix": listeners.unix_path,
        }
        for task, expected in EXPECTED.items():
            text = _task_output(result.stdout, task)
            assert f"app#{task}: failed" in result.stdout, f"{task} did not fail:\n{text}"
            assert "was denied:" in text, f"{task}: no report\n{text}"
            assert expected.format(**values) in text, f"{task}: report lacks target\n{text}"
        # Nothing escaped.
        escapes = "\n".join(_task_output(result.stdout, task) for task in EXPECTED)
        assert "home-secret" not in escapes
        assert "repo-secret" not in escapes
        assert "env-secret-value" not in output
        assert (ws / "packages/app/src/app.txt").read_text() == "app-source\n"
        assert not (place / "home/.cache/written").exists()
        assert not (place / "shared/escaped").exists()
        assert not (ws / "packages/app/stray.txt").exists()
        assert listeners.contacts == []
        assert not listeners.udp_received()
        # Declared access works: ^ inputs, dependency outputs, the private TMPDIR, loopback.
        assert "app#declared: failed" not in result.stdout, _task_output(result.stdout, "declared")
        out = (ws / "packages/app/dist/out.txt").read_text()
        assert out == "app-source\nlib-source\nlib-source\n"
        assert "loopback ok" in _task_output(result.stdout, "loopback")
        assert "home-secret" in _task_output(result.stdout, "opted-out")  # sandbox = false
        assert "sandbox: denied accesses" in result.stdout  # the end-of-run summary
    finally:
        listeners.close()


@pytest.mark.parametrize("backend", ["landlock", "bwrap"])
def test_an_undeclared_environment_secret_does_not_reach_the_task(
    runner: Runner, place: Path, backend: str
) -> None:
    """Strict environments drop the variable; the copy in vx's own environment
    (/proc/<vx>/environ) is out of reach: Landlock denies it to unprivileged tasks, bwrap's
    PID namespace hides vx altogether."""
    if runner.name == "root" and backend == "landlock":
        pytest.xfail(
            "kernel 6.18: Landlock lets a root task read /proc/<pid>/environ of other root "
            "processes (documented in docs/sandbox.md; use bwrap or run vx unprivileged)"
        )
    ws = place / "ws"
    write_files(
        ws,
        {
            "pyproject.toml": _required_root("app", backend),
            "app/pyproject.toml": (
                '[project]\nname = "app"\n\n[tool.vx.tasks.env-secret]\n'
                "cmd = \"echo var=$VX_TEST_SECRET; tr '\\\\0' '\\\\n' < /proc/$PPID/environ\"\n"
            ),
        },
    )
    runner.chown(place)
    result = runner.vx(ws, "run", "env-secret", env={"VX_TEST_SECRET": "env-secret-value"})
    output = result.stdout + result.stderr
    assert "var=\n" in result.stdout.replace("app#env-secret: ", ""), output
    assert "env-secret-value" not in output
    if backend == "landlock":
        assert result.returncode != 0, output
        assert "was denied:" in output
        assert "read  /proc/" in output
        assert "declare it in env or pass_env" in output


@pytest.mark.parametrize("backend", ["landlock", "bwrap"])
def test_a_python_task_runs_with_its_virtualenv(runner: Runner, place: Path, backend: str) -> None:
    ws = place / "ws"
    write_files(
        ws,
        {
            "pyproject.toml": _required_root("app", backend),
            "app/pyproject.toml": (
                '[project]\nname = "app"\n\n[tool.vx.tasks.test]\n'
                "cmd = \"python -c 'import venvmod, sys; print(venvmod.VALUE, sys.prefix)'\"\n"
                'inputs = ["src/**"]\n'
            ),
            "app/src/placeholder.txt": "",
        },
    )
    venv = ws / "app" / ".venv"
    subprocess.run([runner.python, "-m", "venv", "--without-pip", str(venv)], check=True)
    purelib = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "venvmod.py").write_text("VALUE = 'from-the-venv'\n")
    runner.chown(place)
    env = {"PATH": f"{venv}/bin:/usr/bin:/bin", "VIRTUAL_ENV": str(venv)}
    result = runner.vx(ws, "run", "test", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"from-the-venv {venv}" in result.stdout


@pytest.mark.parametrize("backend", ["landlock", "bwrap"])
def test_runner_aware_tools_reach_vx_from_a_sandbox_without_network(
    runner: Runner, place: Path, backend: str
) -> None:
    """The runner-aware channel works in a confined task (no network: other Unix sockets stay
    unreachable, see the escape test), and what the tool reports keys the cache."""
    ws = place / "ws"
    tool = (
        "import socket, vx_ipc\n"
        "print('reported', vx_ipc.add_inputs(['data.txt']))\n"
        "try:\n"
        f"    socket.socket(socket.AF_UNIX).connect({str(place / 'shared' / 'other.sock')!r})\n"
        "except OSError as exc:\n"
        "    print('other socket', type(exc).__name__)\n"
    )
    write_files(
        ws,
        {
            "pyproject.toml": _required_root("app", backend),
            "app/pyproject.toml": (
                '[project]\nname = "app"\n\n[tool.vx.tasks.test]\n'
                f'cmd = "{runner.python} tool.py"\ninputs = ["tool.py", "vx_ipc.py"]\n'
            ),
            "app/tool.py": tool,
            "app/data.txt": "one\n",
        },
    )
    shutil.copy(ROOT / "vx_ipc.py", ws / "app" / "vx_ipc.py")  # vendored, as documented
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(place / "shared" / "other.sock"))
    os.chmod(place / "shared" / "other.sock", 0o777)
    other.listen()
    runner.chown(place)
    try:
        first = runner.vx(ws, "run", "test")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "app#test: reported True" in first.stdout
        assert "channel is unavailable" not in first.stdout
        assert "app#test: other socket" in first.stdout  # refused or not even visible
        hit = runner.vx(ws, "run", "test")
        assert "app#test: cache hit" in hit.stdout, hit.stdout
        (ws / "app" / "data.txt").write_text("two\n")  # reported, never declared
        changed = runner.vx(ws, "run", "test", "-v")
        assert "tool-reported input app/data.txt changed" in changed.stdout, changed.stdout
        assert "app#test: reported True" in changed.stdout
    finally:
        other.close()


@pytest.mark.parametrize("backend", ["landlock", "bwrap"])
def test_a_root_input_may_be_read_and_other_root_files_may_not(
    runner: Runner, place: Path, backend: str
) -> None:
    ws = place / "ws"
    write_files(
        ws,
        {
            "pyproject.toml": _required_root("packages/*", backend),
            "ruff.toml": "line-length = 100\n",
            "other.cfg": "undeclared\n",
            "packages/app/pyproject.toml": (
                '[project]\nname = "app"\n\n[tool.vx.tasks.lint]\n'
                'cmd = "cat ../../ruff.toml"\ninputs = ["src/**", "//ruff.toml"]\n'
                '[tool.vx.tasks.peek]\ncmd = "cat ../../other.cfg"\n'
            ),
            "packages/app/src/app.py": "",
        },
    )
    runner.chown(place)
    lint = runner.vx(ws, "run", "lint")
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "app#lint: line-length = 100" in lint.stdout
    peek = runner.vx(ws, "run", "peek")
    assert peek.returncode != 0
    file = ws / "packages/app/pyproject.toml"
    assert (
        f'read  other.cfg  (set inputs = ["**", "//other.cfg"] in [tool.vx.tasks.peek] of {file})'
        in peek.stdout
    ), peek.stdout


AUDIT_FILES = {
    "pyproject.toml": '[tool.vx]\nmembers = ["packages/*"]\nglobal_inputs = ["tools/**"]\n',
    "tools/helper.sh": "echo helper\n",
    "notes.txt": "undeclared root file\n",
    "packages/lib/pyproject.toml": (
        '[project]\nname = "lib"\n\n[tool.vx.tasks.build]\n'
        'cmd = "mkdir -p dist && cp src/lib.txt dist/lib.txt"\n'
        'inputs = ["src/**"]\noutputs = ["dist/**"]\n'
    ),
    "packages/lib/src/lib.txt": "lib\n",
    "packages/app/pyproject.toml": (
        '[project]\nname = "app"\ndependencies = ["lib"]\n\n[tool.vx.tasks.build]\n'
        # declared: src, ^src, the dependency's dist, global tools/; undeclared: data/extra.txt,
        # ../../notes.txt; writes dist (declared) and report.txt (not)
        'cmd = "sh $VX_WORKSPACE_ROOT/tools/helper.sh && cat src/app.txt ../lib/src/lib.txt '
        "../lib/dist/lib.txt data/extra.txt ../../notes.txt > /dev/null && mkdir -p dist && "
        'echo built > dist/app.txt && echo report > report.txt"\n'
        'depends_on = ["^build"]\ninputs = ["src/**", "^src/**"]\noutputs = ["dist/**"]\n'
    ),
    "packages/app/src/app.txt": "app\n",
    "packages/app/data/extra.txt": "extra\n",
}


def test_audit_lists_exactly_the_undeclared_accesses(runner: Runner, place: Path) -> None:
    ws = place / "ws"
    write_files(ws, AUDIT_FILES)
    runner.chown(place)
    result = runner.vx(ws, "run", "build", "--sandbox=audit")
    assert result.returncode == 0, result.stdout + result.stderr
    report = result.stdout[result.stdout.index("sandbox audit:") :]
    listed = [line.strip() for line in report.splitlines()[1:] if line.startswith("    ")]
    file = ws / "packages/app/pyproject.toml"
    assert report.splitlines()[0] == "sandbox audit: 1 of 2 tasks accessed undeclared paths"
    assert listed == [
        f'read  packages/app/data/extra.txt  (add "data/extra.txt" to inputs of '
        f"[tool.vx.tasks.build] in {file})",
        f'read  notes.txt  (add "//notes.txt" to inputs of [tool.vx.tasks.build] in {file})',
        f'write packages/app/report.txt  (add "report.txt" to outputs of [tool.vx.tasks.build] '
        f"in {file})",
    ]
    assert "  app#build" in report
    assert "lib#build" not in report
    # audit runs every task (it implies --force) and never confines: the write happened
    assert (ws / "packages/app/report.txt").is_file()
    again = runner.vx(ws, "run", "build", "--sandbox=audit")
    assert "sandbox audit: 1 of 2 tasks" in again.stdout


def _simple(sandbox_table: str, task_extra: str = "") -> dict[str, str]:
    return {
        "pyproject.toml": f'[tool.vx]\nmembers = ["app"]\n\n{sandbox_table}',
        "app/pyproject.toml": (
            '[project]\nname = "app"\n\n[tool.vx.tasks.build]\n'
            f'cmd = "echo > ran"\ninputs = []\n{task_extra}'
        ),
    }


def test_required_without_a_usable_backend_fails_before_any_task_runs(vx_workspace: Make) -> None:
    ws = vx_workspace(_simple('[tool.vx.sandbox]\nmode = "required"\nbackend = "bwrap"\n'))
    result = ws.run_subprocess("run", "build", env={"PATH": "/nonexistent"})
    assert result.exit_code == 78, result.output
    assert f"{ws.path / 'pyproject.toml'}: tool.vx.sandbox.mode" in result.stderr
    assert "apt-get install bubblewrap" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (ws.path / "app/ran").exists()


def test_best_effort_without_a_backend_warns_once_and_runs_unconfined(vx_workspace: Make) -> None:
    ws = vx_workspace(_simple('[tool.vx.sandbox]\nbackend = "bwrap"\n'))
    result = ws.run_subprocess("run", "build", env={"PATH": "/nonexistent"})
    assert result.exit_code == 0, result.output
    assert result.stderr.count("no sandbox backend is usable") == 1
    assert "tasks run unconfined" in result.stderr
    assert (ws.path / "app/ran").exists()


@pytest.mark.parametrize(
    ("task_extra", "sandbox_table", "expected"),
    [
        (
            "sandbox = { netwrk = true }\n",
            "",
            "app/pyproject.toml: tool.vx.tasks.build.sandbox.netwrk: unknown key 'netwrk' "
            "(did you mean 'network'?)",
        ),
        (
            'sandbox = { network = "yes" }\n',
            "",
            "app/pyproject.toml: tool.vx.tasks.build.sandbox.network",
        ),
        ("", '[tool.vx.sandbox]\nmode = "strict"\n', "pyproject.toml: tool.vx.sandbox.mode"),
    ],
)
def test_invalid_sandbox_settings_name_the_file_and_key(
    vx_workspace,
    task_extra: str,
    sandbox_table: str,
    expected: str,  # type: ignore[no-untyped-def]
) -> None:
    ws = vx_workspace(_simple(sandbox_table, task_extra))
    result = ws.run("run", "build")
    assert result.exit_code == 78, result.output
    assert expected in result.stderr
    assert not (ws.path / "app/ran").exists()


def _key(ws: VxWorkspace, *args: str, env: dict[str, str] | None = None) -> str:
    result = ws.run("run", "build", "--dry=json", *args, env=env)
    assert result.exit_code == 0, result.output
    return str(json.loads(result.stdout)["tasks"][0]["hash"])


def test_the_policy_is_part_of_the_key_and_the_backend_is_not(vx_workspace: Make) -> None:
    ws = vx_workspace(_simple('[tool.vx.sandbox]\nmode = "required"\n'))
    base = _key(ws)
    why = ws.run("why", "app#build", "--json")
    assert json.loads(why.stdout)["hash"] == base  # every command computes the same key
    assert _key(ws, env={"VX_SANDBOX__BACKEND": "bwrap"}) == base
    assert _key(ws, env={"VX_SANDBOX__NETWORK": "true"}) != base
    assert _key(ws, "--sandbox=off") != base
    ws.write(_simple('[tool.vx.sandbox]\nmode = "required"\n', "sandbox = false\n"))
    assert _key(ws) == _key(ws, "--sandbox=off")  # opted out: as if there were no sandbox
    ws.write(_simple('[tool.vx.sandbox]\nmode = "required"\n', 'sandbox = { read = ["/srv"] }\n'))
    assert _key(ws) != base


def test_task_sandbox_settings_merge_from_workspace_defaults(vx_workspace: Make) -> None:
    """A plugin-owned task key is a task key like the others: templates provide it."""
    table = '[tool.vx.sandbox]\nmode = "required"\n'
    table += "\n[tool.vx.defaults.tasks.build]\nsandbox = { network = true }\n"
    ws = vx_workspace(_simple(table))
    from_default = _key(ws)
    ws.write(_simple(table, "sandbox = { network = false }\n"))
    assert _key(ws) != from_default
    ws.write(_simple(table, "sandbox = { network = true }\n"))
    assert _key(ws) == from_default


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["landlock", "bwrap"])
def test_the_example_workspace_runs_confined_and_audit_names_an_added_read(
    vx_workspace: Make, backend: str
) -> None:
    """examples/acme declares mode = "required": lint, test and build pass confined; an
    undeclared read added by a new test is what audit mode then lists for it, and what the
    confined run reports."""
    ws = vx_workspace({})
    shutil.copytree(ROOT / "examples" / "acme", ws.path, dirs_exist_ok=True)
    for stale in (*ws.path.rglob("dist"), *ws.path.rglob(".vx")):
        shutil.rmtree(stale, ignore_errors=True)
    env = {"VX_SANDBOX__BACKEND": backend}
    result = ws.run_subprocess("run", "lint", "test", "build", env=env)
    assert result.exit_code == 0, result.output
    assert result.outcomes
    assert set(result.outcomes.values()) == {"success"}
    (ws.path / "packages/acme-core/tests/test_undeclared.py").write_text(
        "import os\nimport unittest\n\n\nclass ReadsTheRoot(unittest.TestCase):\n"
        "    def test_reads_the_root_gitignore(self):\n"
        "        path = os.path.join(os.environ['VX_WORKSPACE_ROOT'], '.gitignore')\n"
        "        with open(path) as handle:\n"
        "            self.assertTrue(handle.read())\n"
    )
    audit = ws.run_subprocess("run", "test", "--sandbox=audit", "--filter=acme-core", env=env)
    assert audit.exit_code == 0, audit.output
    report = audit.stdout[audit.stdout.index("sandbox audit:") :]
    assert report.splitlines()[1] == "  acme-core#test", report
    # (the machine may add its own: a ~/.gitconfig a tool manager reads, a plugin's cache)
    assert '    read  .gitignore  (add "//.gitignore" to inputs of' in report
    confined = ws.run_subprocess("run", "test", "--filter=acme-core", env=env)
    assert confined.exit_code != 0
    assert "read  .gitignore" in confined.stdout


def test_a_retried_task_is_confined_on_every_attempt(vx_workspace: Make) -> None:
    files = _simple('[tool.vx.sandbox]\nmode = "required"\n', "")
    files["app/pyproject.toml"] = (
        '[project]\nname = "app"\n\n[tool.vx.tasks.build]\n'
        'cmd = "cat $TMPDIR/seen 2>/dev/null; echo seen-before > $TMPDIR/seen; '
        'echo attempt >> out/attempts; echo escaped > ../escaped"\n'
        'outputs = ["out/**"]\nretries = 1\n'
    )
    ws = vx_workspace(files)
    result = ws.run_subprocess("run", "build")
    assert result.exit_code != 0
    assert "seen-before" not in result.stdout  # a fresh TMPDIR for every attempt
    assert not (ws.path / "escaped").exists()  # every attempt is confined
    assert result.stdout.count("cannot create ../escaped") == 2  # two attempts
    assert result.stdout.count("write escaped") == 3  # a report per attempt, and the summary
    (denial,) = result.task("app#build")["plugin_data"]["sandbox"]  # the --summarize JSON
    assert denial["kind"] == "write"
    assert denial["target"] == str(ws.path / "escaped")
    assert "sandbox.write" in denial["fix"]
