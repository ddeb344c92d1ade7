"""pytest plugin for testing vx plugins and workspaces (entry point ``pytest11``; needs the
``testing`` extra: ``pip install 'vx-build[testing]'``).

Fixtures:

``vx_workspace``
    A factory: ``vx_workspace({"pyproject.toml": {...}, "packages/a/pyproject.toml": "..."})``
    writes the files (dicts are written as TOML) under a fresh temporary directory and
    returns a :class:`VxWorkspace`, whose ``run(*args)`` runs vx in-process and
    ``run_subprocess(*args)`` runs it as a child process, both returning a :class:`RunResult`.

The warm server (docs/daemon.md) is off in these runs (``VX_DAEMON=0``) unless a test asks
for it by passing ``env={"VX_DAEMON": "1"}`` (or ``"auto"``); a test that does stops the
server it started (``vx daemon stop``).

In-process runs are isolated like pytester's: ``sys.path`` is restored after each run, and
modules imported from the workspace or from a ``sys.path`` entry added during the run
(workspace-local plugins) are forgotten, so the next run imports them afresh.

Output is checked line by line with :meth:`RunResult.fnmatch_lines` (or a
:class:`LineMatcher` over any text), like pytester's ``fnmatch_lines``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NoReturn

try:
    import pytest
except ImportError:
    raise ImportError(
        "vx.testing needs pytest, which vx-build does not install by default; "
        "fix: pip install 'vx-build[testing]'"
    ) from None

__all__ = [
    "LineMatcher",
    "RunResult",
    "VxWorkspace",
    "isolated_imports",
    "snapshot_tree",
    "vx_workspace",
    "write_files",
]

Files = Mapping[str, "str | bytes | Mapping[str, Any]"]


class LineMatcher:
    """Glob-style assertions on the lines of a text (``fnmatch``: ``*``, ``?``, ``[seq]``)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def fnmatch_lines(self, patterns: Sequence[str], *, consecutive: bool = False) -> None:
        """Each pattern matches a line, in order (later lines than the previous match;
        with ``consecutive``, the very next line). Raises AssertionError showing what
        matched and the lines searched."""
        from fnmatch import fnmatchcase

        log: list[str] = []
        position = 0
        for index, pattern in enumerate(patterns):
            follows = consecutive and index > 0
            candidates = self.lines[position : position + 1] if follows else self.lines[position:]
            for offset, line in enumerate(candidates):
                if fnmatchcase(line, pattern):
                    log.append(f"matched:  {pattern!r}\n    with: {line!r}")
                    position += offset + 1
                    break
            else:
                problem = "the next line does not match" if follows else "no line matches"
                self._fail(log, f"{problem} {pattern!r}", position)

    def no_fnmatch_line(self, pattern: str) -> None:
        """No line matches ``pattern``."""
        from fnmatch import fnmatchcase

        for line in self.lines:
            if fnmatchcase(line, pattern):
                raise AssertionError(f"line {line!r} matches {pattern!r}")

    def _fail(self, log: list[str], problem: str, position: int) -> NoReturn:
        remaining = "\n".join(f"    {line!r}" for line in self.lines[position:]) or "    (none)"
        raise AssertionError("\n".join([*log, problem, "lines searched:", remaining]))


@dataclass
class RunResult:
    """What one vx invocation did."""

    args: list[str]
    exit_code: int
    stdout: str
    stderr: str
    summary: dict[str, Any] | None = None
    """The parsed run summary JSON (``vx run`` only)."""
    pid: int | None = field(default=None, repr=False)

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def fnmatch_lines(
        self,
        patterns: Sequence[str],
        *,
        stream: Literal["output", "stdout", "stderr"] = "output",
        consecutive: bool = False,
    ) -> None:
        """:meth:`LineMatcher.fnmatch_lines` on ``stream`` (default: stdout then stderr)."""
        LineMatcher(getattr(self, stream)).fnmatch_lines(patterns, consecutive=consecutive)

    def no_fnmatch_line(
        self, pattern: str, *, stream: Literal["output", "stdout", "stderr"] = "output"
    ) -> None:
        """:meth:`LineMatcher.no_fnmatch_line` on ``stream``."""
        LineMatcher(getattr(self, stream)).no_fnmatch_line(pattern)

    @property
    def outcomes(self) -> dict[str, str]:
        """``{task_id: status}`` from the run summary."""
        if self.summary is None:
            raise AssertionError(f"no run summary for vx {' '.join(self.args)}:\n{self.output}")
        return {task["id"]: task["status"] for task in self.summary["tasks"]}

    def task(self, id: str) -> dict[str, Any]:
        """The summary entry of task ``id``."""
        for entry in (self.summary or {}).get("tasks", []):
            if entry["id"] == id:
                return dict(entry)
        raise AssertionError(f"task {id} not in the run summary:\n{self.output}")


def write_files(root: Path, files: Files) -> None:
    """Write ``files`` under ``root``; mappings become TOML, ``str``/``bytes`` are written as is."""
    import tomli_w

    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content)
        else:
            path.write_text(tomli_w.dumps(dict(content)))


def snapshot_tree(root: Path, *, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    """Everything under ``root`` (type, mode, content or link target), minus ``skip`` prefixes:
    compare two snapshots to prove what a run changed on disk, and what it did not."""
    import stat

    tree: dict[str, Any] = {}
    for directory, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            if any(relative == s or relative.startswith(s + "/") for s in skip):
                continue
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                tree[relative] = ("link", os.readlink(path))
            elif stat.S_ISREG(st.st_mode):
                tree[relative] = ("file", stat.S_IMODE(st.st_mode), path.read_bytes())
            elif stat.S_ISDIR(st.st_mode):
                tree[relative] = ("dir",)
            else:
                tree[relative] = ("other", st.st_mode)
    return tree


class VxWorkspace:
    """A workspace on disk that vx can be run against."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._runs = 0

    def write(self, files: Files) -> None:
        write_files(self.path, files)

    def _args(self, args: tuple[str, ...]) -> tuple[list[str], Path | None]:
        argv = list(args)
        summary: Path | None = None
        explicit = any(a.startswith(("--summarize", "--dry")) for a in argv)
        if "run" in argv and not explicit:
            self._runs += 1
            summary = self.path / ".vx" / "testing" / f"summary-{self._runs}.json"
            argv.insert(argv.index("run") + 1, f"--summarize={summary}")
        return argv, summary

    @staticmethod
    def _summary(path: Path | None) -> dict[str, Any] | None:
        if path is None or not path.is_file():
            return None
        return dict(json.loads(path.read_text()))

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> RunResult:
        """Run ``vx -C <cwd or workspace> ARGS`` in this process."""
        from vx.__main__ import main

        argv, summary = self._args(args)
        stdout, stderr = io.StringIO(), io.StringIO()
        with (
            isolated_imports(self.path),
            _patched_environ(_no_daemon(env)),
            contextlib.redirect_stdout(stdout),
            contextlib.redirect_stderr(stderr),
        ):
            code = main(["-C", str(cwd or self.path), *argv])
        return RunResult(argv, code, stdout.getvalue(), stderr.getvalue(), self._summary(summary))

    def run_subprocess(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float = 120,
    ) -> RunResult:
        """Run ``python -m vx ARGS`` as a child process (cwd: the workspace)."""
        argv, summary = self._args(args)
        completed = subprocess.run(
            [sys.executable, "-m", "vx", *argv],
            cwd=cwd or self.path,
            env={**os.environ, **_no_daemon(env)},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        return RunResult(
            argv, completed.returncode, completed.stdout, completed.stderr, self._summary(summary)
        )

    def popen(self, *args: str, env: Mapping[str, str] | None = None) -> subprocess.Popen[str]:
        """Start ``python -m vx ARGS`` without waiting (for interruption tests)."""
        return subprocess.Popen(
            [sys.executable, "-m", "vx", *args],
            cwd=self.path,
            env={**os.environ, **_no_daemon(env)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


def _no_daemon(env: Mapping[str, str] | None) -> dict[str, str]:
    """``env`` with the warm server off unless it says otherwise."""
    return {"VX_DAEMON": "0", **(env or {})}


@contextlib.contextmanager
def isolated_imports(*roots: Path) -> Iterator[None]:
    """Restore ``sys.path`` on exit, and forget the modules imported meanwhile from under
    ``roots`` or from a ``sys.path`` entry added meanwhile. Modules imported from elsewhere
    (vx itself, libraries) stay, so classes keep their identity across runs."""
    path = list(sys.path)
    before = set(sys.modules)
    try:
        yield
    finally:
        added = [entry for entry in sys.path if entry not in path]
        places = tuple(os.path.realpath(p) + os.sep for p in [*map(str, roots), *added] if p)
        for name in set(sys.modules) - before:
            file = getattr(sys.modules[name], "__file__", None)
            if file and os.path.realpath(file).startswith(places):
                del sys.modules[name]
        sys.path[:] = path


@contextlib.contextmanager
def _patched_environ(env: Mapping[str, str] | None) -> Iterator[None]:
    if not env:
        yield
        return
    saved = dict(os.environ)
    os.environ.update(env)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture
def vx_workspace(tmp_path: Path) -> Callable[[Files], VxWorkspace]:
    """Factory fixture: write files into a temporary workspace and return it."""
    counter = iter(range(1_000_000))

    def make(files: Files) -> VxWorkspace:
        index = next(counter)
        path = (tmp_path / ("ws" if index == 0 else f"ws{index}")).resolve()
        path.mkdir()
        write_files(path, files)
        return VxWorkspace(path)

    return make
