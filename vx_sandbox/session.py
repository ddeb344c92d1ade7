"""The sandbox of one ``vx run``: wraps each task's command and reports what was denied."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import vx
from vx_sandbox.hooks import task_sandboxed
from vx_sandbox.policy import Policy, PolicyError, build_policy
from vx_sandbox.report import Violation, denied, format_violations, undeclared

if TYPE_CHECKING:
    from vx import (
        CommandSpec,
        Config,
        Executor,
        OutputCallback,
        RemoteExecution,
        RunInfo,
        Task,
        TaskGraph,
        TaskResult,
    )
    from vx_sandbox.landlock import Confinement

__all__ = ["Session"]

#: CLOCK_REALTIME_COARSE (Linux), the clock file timestamps are taken from.
_REALTIME_COARSE = getattr(time, "CLOCK_REALTIME_COARSE", 5)
_INSTALL_STRACE = "install strace (Debian: apt-get install strace)"


@dataclass
class Prepared:
    """A task's wrapped spawn and what to clean up after it."""

    task: Task
    policy: Policy
    original: CommandSpec
    confinement: Confinement | None = None
    audit: bool = False
    created: list[tuple[str, int]] = field(default_factory=list)
    """Output paths vx created (and their ctime_ns), removed again when left unused."""
    error: str | None = None
    started_ns: int = 0

    def reset_outputs(self) -> None:
        """Undo what a failed run created or changed in its output areas (and its tmp), so
        that the traced re-run starts from the same state. The areas themselves stay: the
        Landlock rules hold their inodes."""
        for area in self.policy.output_dirs:
            for directory, dirs, files in os.walk(area, topdown=False):
                for name in files:
                    path = os.path.join(directory, name)
                    with contextlib.suppress(OSError):
                        if os.lstat(path).st_ctime_ns >= self.started_ns:
                            os.unlink(path)
                for name in dirs:
                    path = os.path.join(directory, name)
                    with contextlib.suppress(OSError):
                        new = os.lstat(path).st_ctime_ns >= self.started_ns
                        if new and os.path.islink(path):
                            os.unlink(path)
                        elif new and not os.listdir(path):
                            os.rmdir(path)
        for file in self.policy.output_files:
            with contextlib.suppress(OSError):
                if os.lstat(file).st_ctime_ns >= self.started_ns:
                    os.truncate(file, 0)
        self.reset_tmp()

    def reset_tmp(self) -> None:
        tmp = os.path.join(self.policy.tmp_base, "tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        os.mkdir(tmp)

    @property
    def trace_file(self) -> str:
        return os.path.join(self.policy.tmp_base, "trace")

    def cleanup(self) -> None:
        if self.confinement is not None:
            self.confinement.close()
        for path, ctime in reversed(self.created):
            with contextlib.suppress(OSError):
                info = os.lstat(path)
                if info.st_ctime_ns != ctime:
                    continue
                if os.path.isdir(path):
                    os.rmdir(path)  # only when still empty
                elif info.st_size == 0:
                    os.unlink(path)
        shutil.rmtree(self.policy.tmp_base, ignore_errors=True)


class Session:
    """Registered by ``vx_configure`` for a ``vx run`` whose sandbox mode is not ``off``."""

    def __init__(self, config: Config, mode: str, settings: Any) -> None:
        self.config = config
        self.mode = mode
        self.audit = mode == "audit"
        self.settings = settings
        self.backend: str | None = None
        self.graph: TaskGraph | None = None
        self.prepared: dict[str, Prepared] = {}
        self.reports: dict[str, list[Violation]] = {}

    # -- backend -------------------------------------------------------------------------

    def choose_backend(self) -> str | None:
        """The usable backend, or None; ``required`` without one is an error."""
        from vx_sandbox.bwrap import bwrap_path
        from vx_sandbox.landlock import abi_version
        from vx_sandbox.trace import strace_path

        file = str(self.config.root_file)
        if self.audit:
            if strace_path() is None:
                raise vx.ConfigError(f"--sandbox=audit traces every task: {_INSTALL_STRACE}")
            return "audit"
        wanted = self.settings.backend
        reasons: list[str] = []
        if wanted in ("auto", "landlock"):
            abi = abi_version()
            if abi >= 1:
                return "landlock"
            reasons.append(
                "Landlock is not available (Linux >= 5.13 with Landlock enabled in the "
                "'lsm=' boot parameter)"
            )
        if wanted in ("auto", "bwrap"):
            if bwrap_path() is not None:
                return "bwrap"
            reasons.append(
                "bubblewrap is not usable (install it: apt-get install bubblewrap; it needs "
                "unprivileged user namespaces or root)"
            )
        message = "no sandbox backend is usable: " + "; ".join(reasons)
        if self.mode == "required":
            raise vx.ConfigError(
                message + ' (or set mode = "best-effort" to run tasks unconfined)',
                file=file,
                key="tool.vx.sandbox.mode",
            )
        vx.warning(message + "; tasks run unconfined (mode = best-effort)")
        return None

    # -- hooks ---------------------------------------------------------------------------

    def wrap_executor(self, inner: Executor) -> Executor:
        """``inner`` with sandbox reporting; decides the backend (``required`` without one
        raises here, before any task runs)."""
        self.backend = self.choose_backend()
        return SandboxExecutor(inner, self)

    @vx.hookimpl
    def vx_run_start(self, run: RunInfo, graph: TaskGraph, config: Config) -> None:
        self.graph = graph
        self.reports = {}  # one run's (vx watch runs many)

    @vx.hookimpl(trylast=True)
    def vx_wrap_command(self, task: Task, spec: CommandSpec, config: Config) -> CommandSpec | None:
        if self.backend is None or self.graph is None or not task_sandboxed(task):
            return None
        tmp_base = tempfile.mkdtemp(prefix="vx-sandbox-")
        tmp = os.path.join(tmp_base, "tmp")
        os.mkdir(tmp)
        env = {**spec.env, "TMPDIR": tmp, "TMP": tmp, "TEMP": tmp}
        # Python's bytecode cache goes to the private tmp, not next to the (read-only) sources.
        env.setdefault("PYTHONPYCACHEPREFIX", os.path.join(tmp, "pycache"))
        try:
            policy = build_policy(task, self.graph, self.settings, env, tmp_base)
        except PolicyError as exc:
            shutil.rmtree(tmp_base, ignore_errors=True)
            message = f"{task.project.pyproject}: {exc.key}: {exc}"
            policy = Policy(task.id, str(task.project.path), False, tmp_base)
            self.prepared[task.id] = Prepared(task, policy, spec, error=message)
            return None
        if spec.ipc_dir is not None:  # the runner-aware channel: its socket must be reachable
            policy.write.append(str(spec.ipc_dir))
        prepared = Prepared(task, policy, spec, audit=self.audit)
        self.prepared[task.id] = prepared
        try:
            self._create_outputs(prepared)
            return self._spec(prepared, spec.argv, spec, env, traced=self.audit)
        except OSError as exc:  # an output that cannot be created, a ruleset the kernel refuses
            prepared.error = f"cannot confine {task.id}: {exc}"
            return None

    def _create_outputs(self, prepared: Prepared) -> None:
        """Output directories and literal output files must exist to be granted."""
        for directory in prepared.policy.output_dirs:
            missing: list[str] = []
            current = directory
            while not os.path.exists(current):
                missing.append(current)
                current = os.path.dirname(current)
            for path in reversed(missing):
                os.mkdir(path)
                prepared.created.append((path, os.lstat(path).st_ctime_ns))
        for file in prepared.policy.output_files:
            if os.path.lexists(file):
                continue
            os.makedirs(os.path.dirname(file), exist_ok=True)
            with open(file, "x"):
                pass
            prepared.created.append((file, os.lstat(file).st_ctime_ns))

    def _spec(
        self,
        prepared: Prepared,
        argv: list[str],
        spec: CommandSpec,
        env: dict[str, str],
        *,
        traced: bool,
    ) -> CommandSpec:
        from vx_sandbox.trace import strace_argv, strace_path

        policy = prepared.policy
        if traced:
            strace = strace_path()
            assert strace is not None
            argv = strace_argv(strace, prepared.trace_file, argv, detach=self.backend != "bwrap")
        # Built from ``spec``: what earlier wrappers set (the channel directory ...) stays.
        if self.backend == "audit":
            return replace(spec, argv=argv, env=env)
        if self.backend == "bwrap":
            from vx_sandbox.bwrap import bwrap_argv, bwrap_path

            bwrap = bwrap_path()
            assert bwrap is not None
            return replace(spec, argv=bwrap_argv(bwrap, policy, str(spec.cwd), argv), env=env)
        from vx_ipc import CHANNEL_FD
        from vx_sandbox.landlock import LIST, READ, Confinement, handled_fs

        if prepared.confinement is None:
            channel_fd = None if spec.ipc_dir is None else CHANNEL_FD
            confinement = Confinement(network=policy.network, channel_fd=channel_fd)
            confinement.allow(policy.read, READ)
            confinement.allow(policy.listable, LIST)
            confinement.allow(policy.write, handled_fs(confinement.abi))
            prepared.confinement = confinement
        confinement = prepared.confinement
        if policy.network == "loopback":  # a network namespace: only in a forked child
            return replace(spec, argv=argv, env=env, preexec=confinement.preexec())
        return replace(spec, argv=argv, env=env, confine=confinement.confine_thread)

    # -- after a task -------------------------------------------------------------------

    async def finished(
        self,
        prepared: Prepared,
        code: int,
        executor: Executor,
        on_output: OutputCallback,
        spec: CommandSpec,
    ) -> None:
        from vx_sandbox.trace import strace_path

        task = prepared.task
        file = str(task.project.pyproject)
        if prepared.audit:
            found = undeclared(self._read_trace(prepared), prepared.policy, task.name, file)
            self.reports[task.id] = found
            return
        if code == 0 or not self.settings.report:
            return
        if strace_path() is None:
            hint = f"vx sandbox: to see which accesses the sandbox denied, {_INSTALL_STRACE}\n"
            on_output(hint.encode())
            return
        prepared.reset_outputs()
        traced = self._spec(
            prepared,
            prepared.original.argv,
            prepared.original,
            spec.env,
            traced=True,
        )
        await executor.execute(task, traced, lambda data: None)
        found = denied(self._read_trace(prepared), prepared.policy, task.name, file)
        if found:
            self.reports[task.id] = found
            root = str(self.config.require_root())
            on_output(format_violations(f"vx sandbox: {task.id} was denied:", found, root).encode())

    def _read_trace(self, prepared: Prepared) -> list[Any]:
        from vx_sandbox.trace import parse_trace, wait_for_trace

        if self.backend != "bwrap":
            wait_for_trace(prepared.trace_file)
        try:
            with open(prepared.trace_file, encoding="utf-8", errors="surrogateescape") as handle:
                return parse_trace(handle, str(prepared.original.cwd))
        except OSError:
            return []

    @vx.hookimpl
    def vx_task_finish(self, result: TaskResult, run: RunInfo) -> None:
        prepared = self.prepared.pop(result.task.id, None)
        if prepared is not None:
            prepared.cleanup()
        violations = self.reports.get(result.task.id)
        if violations:
            result.plugin_data["sandbox"] = [dataclasses.asdict(v) for v in violations]

    @vx.hookimpl
    def vx_run_finish(self, run: RunInfo, config: Config) -> None:
        for prepared in self.prepared.values():  # tasks cancelled before they finished
            prepared.cleanup()
        self.prepared.clear()
        root = str(config.require_root())
        out = sys.stdout
        if self.audit:
            audited = [id for id in run.tasks if id in self.reports]
            offenders = [id for id in audited if self.reports[id]]
            count = f"{len(offenders)} of {len(audited)} tasks"
            out.write(f"\nsandbox audit: {count} accessed undeclared paths\n")
            for id in offenders:
                out.write(
                    format_violations(f"  {id}", self.reports[id], root).replace("\n  ", "\n    ")
                )
        elif self.reports:
            out.write("\nsandbox: denied accesses\n")
            for id, violations in self.reports.items():
                out.write(format_violations(f"  {id}", violations, root).replace("\n  ", "\n    "))
        out.flush()


class SandboxExecutor:
    """Delegates to the real executor and reports denials. A task's confinement lives until
    ``vx_task_finish`` (the kernel may retry the same spec)."""

    def __init__(self, inner: Executor, session: Session) -> None:
        self.inner = inner
        self.session = session

    async def execute(
        self, task: Task, spec: CommandSpec, on_output: OutputCallback
    ) -> int | RemoteExecution:
        prepared = self.session.prepared.get(task.id)
        if prepared is None:
            return await self.inner.execute(task, spec, on_output)
        if prepared.error is not None:
            on_output(f"vx sandbox: {prepared.error}\n".encode())
            return 1
        if prepared.started_ns:  # a retry: a fresh TMPDIR, as for the first attempt
            prepared.reset_tmp()
        # file timestamps come from the coarse clock, which may lag time.time_ns()
        prepared.started_ns = time.clock_gettime_ns(_REALTIME_COARSE)
        outcome = await self.inner.execute(task, spec, on_output)
        if not isinstance(outcome, int):
            # Ran on another machine (a remote executor): confining it is that side's job.
            return outcome
        await self.session.finished(prepared, outcome, self.inner, on_output, spec)
        return outcome
