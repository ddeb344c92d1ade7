"""Built-in plugin ``executor``: runs each command as a local child process in its own group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from typing import TYPE_CHECKING, TypeVar, cast

import vx

if TYPE_CHECKING:
    import asyncio

    from vx.config import Config
    from vx.execution import CommandSpec, OutputCallback
    from vx.graph import Task

_T = TypeVar("_T")

#: Seconds between SIGTERM and SIGKILL when a running task is cancelled.
DEFAULT_GRACE_PERIOD = 5.0


class LocalExecutor:
    """Spawns commands directly (no intermediate Python process) and streams their output."""

    def __init__(self, grace_period: float = DEFAULT_GRACE_PERIOD) -> None:
        self.grace_period = grace_period

    async def execute(self, task: Task, spec: CommandSpec, on_output: OutputCallback) -> int:
        import asyncio

        if spec.confine is not None:
            return await self._execute_confined(spec, on_output)
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

    async def _execute_confined(self, spec: CommandSpec, on_output: OutputCallback) -> int:
        """Start the process from a fresh thread that ``spec.confine`` restricted first."""
        import asyncio
        import threading

        loop = asyncio.get_running_loop()
        started: asyncio.Future[subprocess.Popen[bytes]] = loop.create_future()

        def start() -> None:
            try:
                assert spec.confine is not None
                spec.confine()
                popen = subprocess.Popen(
                    spec.argv,
                    cwd=spec.cwd,
                    env=spec.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except BaseException as exc:  # handed to the awaiting task
                loop.call_soon_threadsafe(_settle, started, None, exc)
            else:
                loop.call_soon_threadsafe(_settle, started, popen, None)

        threading.Thread(target=start, name="vx-confined-spawn", daemon=True).start()
        try:
            popen = await asyncio.shield(started)
        except asyncio.CancelledError:
            popen = await started
            _signal_group(popen.pid, signal.SIGKILL)
            await _exited(popen)
            raise
        except (FileNotFoundError, PermissionError, OSError) as exc:
            on_output(f"vx: cannot start {spec.argv[0]}: {exc.strerror or exc}\n".encode())
            return 127 if isinstance(exc, FileNotFoundError) else 126
        assert popen.stdout is not None
        reader = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), popen.stdout
        )
        try:
            while chunk := await reader.read(65536):
                on_output(chunk)
            code = await _exited(popen)
        except asyncio.CancelledError:
            _signal_group(popen.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                await asyncio.wait_for(asyncio.shield(_exited(popen)), self.grace_period)
            _signal_group(popen.pid, signal.SIGKILL)
            await _exited(popen)
            raise
        finally:
            transport.close()
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


def _settle(future: asyncio.Future[_T], value: _T | None, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(cast("_T", value))


async def _exited(popen: subprocess.Popen[bytes]) -> int:
    """Wait for ``popen`` without blocking the loop (a pidfd where available)."""
    import asyncio

    if popen.returncode is not None:
        return popen.returncode
    loop = asyncio.get_running_loop()
    try:
        pidfd = os.pidfd_open(popen.pid)
    except (AttributeError, OSError):
        return await loop.run_in_executor(None, popen.wait)
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, readable)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    return popen.wait()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


@vx.hookimpl(trylast=True)
def vx_executor(config: Config) -> LocalExecutor:
    return LocalExecutor(grace_period=config.settings.grace_period)
