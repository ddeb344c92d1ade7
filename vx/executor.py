"""Built-in plugin ``executor``: runs each command as a local child process in its own group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    import asyncio

    from vx.config import Config
    from vx.execution import CommandSpec, OutputCallback
    from vx.graph import Task

#: Seconds between SIGTERM and SIGKILL when a running task is cancelled.
DEFAULT_GRACE_PERIOD = 5.0


class LocalExecutor:
    """Spawns commands directly (no intermediate Python process) and streams their output."""

    def __init__(self, grace_period: float = DEFAULT_GRACE_PERIOD) -> None:
        self.grace_period = grace_period

    async def execute(self, task: Task, spec: CommandSpec, on_output: OutputCallback) -> int:
        import asyncio

        try:
            process = await asyncio.create_subprocess_exec(
                *spec.argv,
                cwd=spec.cwd,
                env=spec.env,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=spec.preexec,
            )
        except FileNotFoundError as exc:
            missing = spec.argv[0] if exc.filename in (None, spec.argv[0]) else exc.filename
            if not spec.cwd.is_dir():
                on_output(f"vx: task directory does not exist: {spec.cwd}\n".encode())
                return 127
            on_output(f"vx: command not found: {missing}\n".encode())
            return 127
        except PermissionError as exc:
            on_output(f"vx: cannot execute {spec.argv[0]}: {exc.strerror}\n".encode())
            return 126
        assert process.stdout is not None
        try:
            while chunk := await process.stdout.read(65536):
                on_output(chunk)
            code = await process.wait()
        except asyncio.CancelledError:
            await self._terminate(process)
            raise
        return 128 - code if code < 0 else code

    async def _terminate(self, process: asyncio.subprocess.Process) -> None:
        """SIGTERM the whole process group, SIGKILL it after the grace period."""
        import asyncio

        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(process.wait()), self.grace_period)
        # Also reaps grandchildren that outlived the leader or ignored SIGTERM.
        _signal_group(process.pid, signal.SIGKILL)
        if process.returncode is None:
            await process.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@vx.hookimpl(trylast=True)
def vx_executor(config: Config) -> LocalExecutor:
    return LocalExecutor(grace_period=config.settings.grace_period)
