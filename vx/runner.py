"""The scheduler: runs a task graph with a concurrency limit, ``--continue`` modes and
clean cancellation, emitting lifecycle events to plugins."""

from __future__ import annotations

import contextlib
import heapq
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from vx.caching import CacheResult, CacheStatus
from vx.environment import TaskEnvironments
from vx.errors import EXIT_INTERRUPTED
from vx.execution import (
    PASSED,
    CommandSpec,
    ContinueMode,
    OutputCallback,
    RemoteExecution,
    RunInfo,
    TaskResult,
    TaskStatus,
)

if TYPE_CHECKING:
    import asyncio

    from vx.config import Config
    from vx.execution import Executor
    from vx.graph import Task, TaskGraph
    from vx.ipc import ChannelServer, Reported
    from vx.runoptions import RunOptions
    from vx.services import ServicePool

__all__ = ["ContinueMode", "RunCache", "Runner", "new_run_id"]

#: Prefetched cache hits unpacked at once outside the concurrency limit.
RESTORE_LANES = 8


class RunCache(Protocol):
    """What the runner needs from the cache (see :mod:`vx.cache`)."""

    def restore_now(self, task: Task, on_output: OutputCallback) -> TaskResult | None:
        """A hit that needs no archive read (outputs already in place), else None without
        side effects; called on the main thread before the scheduler starts."""

    def can_restore_now(self, task: Task) -> bool: ...

    def prefetched(self, task: Task) -> bool:
        """Whether ``task``'s artifact was fetched ahead (restoring it needs no round trip)."""

    async def prepare_prefetched(self, task: Task) -> bool:
        """Unpack a prefetched hit without events; True: :meth:`restore_now` completes it."""

    async def restore(self, task: Task, on_output: OutputCallback) -> TaskResult | None: ...

    async def save(
        self, task: Task, result: TaskResult, reported: Reported | None = None
    ) -> None: ...

    async def adopt(self, task: Task, result: TaskResult, *, restore: bool) -> None: ...

    def details(self, task: Task) -> CacheResult: ...

    async def wait_uploads(self) -> None: ...

    def flush(self) -> None: ...


_DISABLED = CacheResult(status=CacheStatus.DISABLED)
_MISS = CacheResult(status=CacheStatus.MISS)
_SKIPPED = CacheResult(status=CacheStatus.SKIPPED)


def new_run_id() -> str:
    """Sortable and unique: ``20261121T104455-3fa2c1``."""
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime()) + "-" + os.urandom(3).hex()


class Runner:
    """Runs ``graph`` once. Create one per run; call :meth:`run`."""

    def __init__(
        self,
        config: Config,
        graph: TaskGraph,
        executor: Executor,
        options: RunOptions,
        *,
        concurrency: int,
        priorities: Mapping[str, float] | Callable[[], Mapping[str, float] | None] | None,
        cache: RunCache | None = None,
        settled: Collection[str] = (),
        services: ServicePool | None = None,
    ) -> None:
        """``settled``: ids of tasks that count as done without running (``vx watch``: unchanged
        since its last run); they get no events and are not in the run's results.
        ``services``: keep the persistent tasks this run starts running in this pool when the
        run ends (``vx watch``); without it they are stopped once nothing needs them."""
        self.config = config
        self.graph = graph
        self.settled = frozenset(settled)
        self.services = services
        self.executor = executor
        self.concurrency = max(1, concurrency)
        self.continue_mode = options.continue_mode
        self.cache = cache
        self._priorities = priorities
        self.run_info = RunInfo(
            run_id=new_run_id(),
            started_at=time.time(),
            tasks=[task.id for task in graph if task.id not in self.settled],
            task_names=list(options.tasks),
            concurrency=self.concurrency,
        )
        self._start = time.monotonic()
        self._free_slots = list(range(self.concurrency))
        self._running: dict[str, asyncio.Task[TaskResult]] = {}
        self._serving: dict[str, asyncio.Task[TaskResult]] = {}
        """Persistent tasks that passed their readiness probe (they hold no concurrency slot)."""
        self._readied: list[str] = []
        self._wakeup: asyncio.Event | None = None
        self._services_done = False
        self._still_running: dict[str, Callable[[], TaskResult]] = {}
        """The result of each serving task if the run ended now (``vx watch`` keeps it up)."""
        self._commands: dict[str, asyncio.Task[int | RemoteExecution]] = {}
        """The command phase of each running task: the only thing fail-fast cancels."""
        self._stopping = False
        self._withdrawn: set[str] = set()
        """Tasks stopped or never started by :meth:`withdraw` (the run goes on)."""
        self._channels: ChannelServer | None = None
        env_mode = options.env_mode or config.settings.env_mode
        self._environments = TaskEnvironments(
            root=graph.workspace.root,
            global_env=graph.workspace.global_env,
            loose=env_mode == "loose",
        )

    def run(self) -> RunInfo:
        """Run to completion (or interruption); returns the finished :class:`RunInfo`.

        Tasks that are cache hits with their outputs already in place are completed first,
        in dependency order, on this thread; the asyncio scheduler (and its import) is only
        needed when something must run or be extracted.
        """
        start = self._begin()
        if self._pending():
            import asyncio

            asyncio.run(self._run(handle_signals=True))
        return self._end(start)

    async def run_async(self) -> RunInfo:
        """Like :meth:`run`, in the caller's running event loop (``vx watch``). The caller owns
        the loop's signal handling: call :meth:`interrupt` on Ctrl-C, :meth:`cancel` to stop the
        run early."""
        start = self._begin()
        if self._pending():
            await self._run(handle_signals=False)
        return self._end(start)

    def interrupt(self) -> None:
        """Stop the run as Ctrl-C does (``run.interrupted``, exit code 130)."""
        self._interrupt()

    def cancel(self) -> None:
        """Stop the run without marking it interrupted (what is running is cancelled)."""
        self._stop()

    def withdraw(self, task_ids: Iterable[str]) -> None:
        """Stop these tasks and let the run go on (``vx watch --interrupt``): a running
        task's command is cancelled (the task is ``cancelled``), one that has not started
        never starts; their dependents are skipped. Hits and finished tasks are left."""
        for id in task_ids:
            self._withdrawn.add(id)
            command = self._commands.get(id)
            if command is not None:
                command.cancel()
            elif self.graph[id].definition.persistent and id in self._running:
                self._running[id].cancel()
        if self._wakeup is not None:
            self._wakeup.set()

    def _begin(self) -> float:
        start = self._start = time.monotonic()
        self.config.hook.run_start(self.run_info, self.graph, self.config)
        self._complete_ready_hits()
        return start

    def _pending(self) -> bool:
        return len(self.run_info.results) + len(self.settled) < len(self.graph)

    def _end(self, start: float) -> RunInfo:
        hook = self.config.hook
        if self.cache is not None:
            self.cache.flush()
        results = self.run_info.results
        for task in self.graph:
            if task.id not in results and task.id not in self.settled:
                self._finish(TaskResult(task, TaskStatus.SKIPPED, 1, 0.0, cache=_SKIPPED))
        self.run_info.duration_ms = (time.monotonic() - start) * 1000
        self.run_info.exit_code = self._exit_code()
        hook.run_finish(self.run_info, self.config)
        return self.run_info

    def priorities(self) -> dict[str, float]:
        """Every task's priority: the number of its transitive dependents, overridden by
        ``vx_task_priorities`` (asked here, once, when the scheduler first needs them)."""
        given = self._priorities() if callable(self._priorities) else self._priorities
        graph = self.graph
        default = {task.id: float(len(graph.transitive_dependents(task.id))) for task in graph}
        return {**default, **(given or {})}

    def _offset_ms(self) -> float:
        return (time.monotonic() - self._start) * 1000

    def _complete_ready_hits(self) -> None:
        cache = self.cache
        if cache is None:
            return
        results = self.run_info.results
        settled = self.settled
        for task in self.graph:
            if task.id in settled:
                continue
            if any(
                d not in settled and (d not in results or results[d].status not in PASSED)
                for d in task.dependencies
            ):
                continue
            if task.command is not None and not cache.can_restore_now(task):
                continue
            start_ms = self._offset_ms()
            self.config.hook.task_start(task, self.run_info)
            if task.command is None:
                self._finish(
                    TaskResult(
                        task,
                        TaskStatus.SUCCESS,
                        0,
                        0.0,
                        cache=_DISABLED,
                        start_ms=start_ms,
                        slot=0,
                    )
                )
                continue

            def on_output(data: bytes, task: Task = task) -> None:
                self.config.hook.task_output(task, data)

            hit = cache.restore_now(task, on_output)
            assert hit is not None
            hit.start_ms, hit.slot = start_ms, 0
            self._finish(hit)

    async def _run(self, *, handle_signals: bool) -> None:
        restore_signals = self._install_signal_handlers() if handle_signals else (lambda: None)
        if self.config.settings.runner_aware:
            from vx.ipc import ChannelServer

            self._channels = ChannelServer(self.graph.workspace.root)
        try:
            await self._schedule()
            if self.cache is not None:
                await self.cache.wait_uploads()
        finally:
            restore_signals()
            if self._channels is not None:
                self._channels.close()

    def _exit_code(self) -> int:
        if self.run_info.interrupted:
            return EXIT_INTERRUPTED
        results = self.run_info.results.values()
        failed = [r.exit_code for r in results if r.status == TaskStatus.FAILED]
        if failed:
            return max(max(failed), 1)
        flaky = any(r.status == TaskStatus.FLAKY for r in results)
        return 1 if flaky and self.config.settings.fail_on_flaky else 0

    async def _schedule(self) -> None:
        import asyncio

        order = {task.id: index for index, task in enumerate(self.graph)}
        priorities = self.priorities()
        results = self.run_info.results
        settled = self.settled
        waiting = {
            task.id: sum(d not in results and d not in settled for d in task.dependencies)
            for task in self.graph
            if task.id not in results and task.id not in settled
        }
        ready: list[tuple[float, int, str]] = []
        released: set[str] = set()
        slots: dict[str, int] = {}
        """Concurrency slot of each task holding one (a persistent task frees its own when
        it becomes ready)."""
        self._wakeup = asyncio.Event()

        def push(id: str) -> None:
            heapq.heappush(ready, (-priorities.get(id, 0.0), order[id], id))

        def release(task: Task) -> None:
            released.add(task.id)
            for dependent in task.dependents:
                waiting[dependent] -= 1
                if waiting[dependent] == 0:
                    push(dependent)

        def free_slot(id: str) -> None:
            slot = slots.pop(id, None)
            if slot is not None:
                heapq.heappush(self._free_slots, slot)

        for id, count in waiting.items():
            if count == 0:
                push(id)
        restoring: dict[str, asyncio.Task[TaskResult | None]] = {}
        """Prefetched hits being unpacked outside the concurrency limit (see _restore_hit)."""
        while True:
            if self.cache is not None and ready and not self._stopping:
                for entry in [e for e in ready if self.cache.prefetched(self.graph[e[2]])]:
                    if len(restoring) >= RESTORE_LANES:
                        break
                    ready.remove(entry)
                    hit = self._restore_hit(self.graph[entry[2]])
                    restoring[entry[2]] = asyncio.create_task(hit)
                heapq.heapify(ready)
            while ready and not self._stopping and len(self._running) < self.concurrency:
                _, _, id = heapq.heappop(ready)
                if id in self._withdrawn:
                    continue  # never started: skipped at the end, with its dependents
                slot = slots[id] = heapq.heappop(self._free_slots)
                self._running[id] = asyncio.create_task(self._execute(self.graph[id], slot))
            idle = not self._running and not restoring and not (ready and not self._stopping)
            if idle and (not self._serving or not await self._services_idle()):
                break
            wakeup = asyncio.ensure_future(self._wakeup.wait())
            waiting_on: list[asyncio.Future[Any]] = [
                *self._running.values(),
                *self._serving.values(),
                *restoring.values(),
                wakeup,
            ]
            done, _ = await asyncio.wait(waiting_on, return_when=asyncio.FIRST_COMPLETED)
            wakeup.cancel()
            self._wakeup.clear()
            for id in self._readied:  # persistent tasks whose probe passed
                self._serving[id] = self._running.pop(id)
                free_slot(id)
                release(self.graph[id])
            self._readied.clear()
            for completed in done:
                if completed is wakeup:
                    continue
                lane = next((i for i, hit in restoring.items() if hit is completed), None)
                if lane is not None:
                    del restoring[lane]
                    restored: TaskResult | None = completed.result()
                    if restored is None:  # refused: restore or run it in a slot
                        push(lane)
                        continue
                    self._finish(restored)
                    release(restored.task)
                    continue
                id, finished = next(
                    (i, running)
                    for i, running in (*self._running.items(), *self._serving.items())
                    if running is completed
                )
                self._running.pop(id, None)
                self._serving.pop(id, None)
                result = self._outcome(self.graph[id], finished, slots.get(id))
                free_slot(id)
                self._finish(result)
                ok = result.status in PASSED
                failed = result.status == TaskStatus.FAILED
                if failed and self.continue_mode == ContinueMode.NEVER:
                    self._stop()
                if result.task.id not in released and (
                    ok or self.continue_mode == ContinueMode.ALWAYS
                ):
                    release(result.task)

    async def _restore_hit(self, task: Task) -> TaskResult | None:
        """Complete a hit whose artifact was fetched ahead, outside the concurrency limit
        (restoring is I/O, and a remote hit must not wait behind running commands), in
        slot 0 like the hits completed before the scheduler starts. None (nothing emitted)
        when the artifact was refused: the task then takes the normal path."""
        assert self.cache is not None
        start_ms = self._offset_ms()
        if not await self.cache.prepare_prefetched(task):
            return None
        self.config.hook.task_start(task, self.run_info)

        def on_output(data: bytes) -> None:
            self.config.hook.task_output(task, data)

        hit = self.cache.restore_now(task, on_output)
        assert hit is not None
        hit.start_ms, hit.slot = start_ms, 0
        return hit

    async def _services_idle(self) -> bool:
        """Nothing but persistent tasks is left: hand them over to the caller's pool, or stop
        those some non-persistent task needed. True while others (``vx run dev``, where the
        server itself was asked for) keep the run going."""
        import asyncio

        if self.services is not None and not self._stopping:
            from vx.services import Service

            for id, serving in self._serving.items():
                self.services.add(Service(self.graph[id], serving))
                self._finish(self._still_running.pop(id)())
            self._serving.clear()
            return False
        needed = {id for id in self._serving if self._serves_others(id)}
        if self._stopping:
            needed = set(self._serving)
        if needed:
            self._services_done = not self._stopping
            stopping = [self._serving[id] for id in needed]
            for serving in stopping:
                serving.cancel()
            await asyncio.wait(stopping)
            for id in needed:
                self._finish(self._serving.pop(id).result())
        return bool(self._serving)

    def _serves_others(self, id: str) -> bool:
        """Whether a task with a command that is not persistent (transitively) depends on id."""
        for dependent in self.graph.transitive_dependents(id):
            task = self.graph[dependent]
            if task.command is not None and not task.definition.persistent:
                return True
        return False

    @staticmethod
    def _outcome(task: Task, completed: asyncio.Task[TaskResult], slot: int | None) -> TaskResult:
        """The result of a finished task coroutine. The scheduler never cancels these (see
        :meth:`_stop`); should one end cancelled anyway, it is a cancelled task, not an error
        that escapes the scheduler and loses the summary."""
        if completed.cancelled():
            return TaskResult(task, TaskStatus.CANCELLED, 128 + signal.SIGTERM, 0.0, slot=slot)
        return completed.result()

    def _stop(self) -> None:
        """Fail fast: start nothing more and cancel the commands that are running.

        Only the command phase of a task (the executor's coroutine, see :meth:`_command`) and
        persistent tasks are ever cancelled: cache restores, saves and event hooks of a task
        that is past its command run to completion, so a cancellation cannot land in them."""
        self._stopping = True
        for command in self._commands.values():
            command.cancel()
        # A persistent task is stopped as a whole: its coroutine turns the cancellation into
        # its result (see :meth:`_serve`).
        for id, running in (*self._running.items(), *self._serving.items()):
            if self.graph[id].definition.persistent:
                running.cancel()

    def _interrupt(self) -> None:
        self.run_info.interrupted = True
        self._stop()

    def _install_signal_handlers(self) -> Callable[[], None]:
        import asyncio

        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._interrupt)

        def restore() -> None:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)

        return restore

    def _finish(self, result: TaskResult) -> None:
        self.run_info.results[result.task.id] = result
        self.config.hook.task_finish(result, self.run_info)

    def _retries(self, task: Task) -> int:
        retries = task.definition.retries
        return self.config.settings.retries if retries is None else retries

    async def _execute(self, task: Task, slot: int) -> TaskResult:
        """Look ``task`` up in the cache, else run it (again after a failure, up to its
        ``retries``); the result carries ``slot`` and its start offset."""
        import asyncio

        hook = self.config.hook
        start_ms = self._offset_ms()
        hook.task_start(task, self.run_info)
        start = time.monotonic()
        output = bytearray()
        attempt_start = 0

        def on_output(data: bytes) -> None:
            output.extend(data)
            hook.task_output(task, data)

        def result(status: TaskStatus, code: int, attempts: int = 0) -> TaskResult:
            elapsed = (time.monotonic() - start) * 1000
            return TaskResult(
                task, status, code, elapsed, bytes(output), cache_details, attempts, start_ms, slot
            )

        cache_details = _MISS if task.definition.cache else _DISABLED
        command = task.command
        if command is None:
            cache_details = _DISABLED
            return result(TaskStatus.SUCCESS, 0)
        attempts = 0
        channel = None
        try:
            if self.cache is not None:
                hit = await self.cache.restore(task, on_output)
                if hit is not None:
                    hit.start_ms, hit.slot = start_ms, slot
                    return hit
                cache_details = self.cache.details(task)
            spec = CommandSpec(
                argv=["/bin/sh", "-c", command] if isinstance(command, str) else command,
                cwd=task.cwd,
                env=self._environments.for_task(task),
            )
            if self._channels is not None and not task.definition.persistent:
                from vx.ipc import ENV_VAR

                channel = await self._channels.open(task, slot)
                if channel is not None:
                    spec.env[ENV_VAR] = channel.address
                    spec.ipc_dir = channel.directory
            spec = hook.wrap_command(task, spec, self.config)
            if task.definition.persistent:
                return await self._serve(task, spec, on_output, output, result)
            code = -1
            remote: RemoteExecution | None = None
            while code != 0 and attempts <= self._retries(task):
                attempts += 1
                attempt_start = len(output)
                outcome = await self._command(task, spec, on_output)
                if isinstance(outcome, RemoteExecution):
                    remote, code = outcome, outcome.exit_code
                else:
                    remote, code = None, outcome
        except asyncio.CancelledError:
            return result(TaskStatus.CANCELLED, 128 + signal.SIGTERM, attempts)
        finally:
            reported = channel.close() if channel is not None else None
        worker = None if remote is None else remote.worker
        if code != 0:
            return replace(result(TaskStatus.FAILED, code, attempts), worker=worker)
        done = result(TaskStatus.SUCCESS if attempts == 1 else TaskStatus.FLAKY, 0, attempts)
        done.worker = worker
        if reported is not None and reported.disabled is not None:
            done.cache = replace(done.cache, uncached=reported.disabled)
        if self.cache is not None and task.definition.cache:
            # Stopped while archiving: the task still passed, it is just not cached.
            with contextlib.suppress(asyncio.CancelledError):
                if remote is not None and remote.stored:
                    # Ran elsewhere: the artifact is already in the shared cache under its key.
                    await self.cache.adopt(task, done, restore=remote.restore_outputs)
                else:
                    # A failure is never cached: the entry holds the passing attempt's log.
                    saved = replace(done, output=bytes(output[attempt_start:]))
                    await self.cache.save(task, saved, reported)
                    done.cache = saved.cache  # with the archiving time (save_ms)
        return done

    async def _serve(
        self,
        task: Task,
        spec: CommandSpec,
        on_output: OutputCallback,
        output: bytearray,
        result: Callable[[TaskStatus, int, int], TaskResult],
    ) -> TaskResult:
        """Run a persistent task (never retried): start it, report it ready when its probe
        passes, and return its result once it exits or is stopped. ``result`` builds the
        task's result (status, exit code, attempts)."""
        import asyncio

        from vx.services import log_tail, persistent_state, wait_ready

        process = asyncio.ensure_future(_code_of(self.executor.execute(task, spec, on_output)))
        try:
            problem = await wait_ready(task, process, output)
            if problem is None:
                self._still_running[task.id] = lambda: persistent_state(
                    result(TaskStatus.SUCCESS, 0, 1), "running"
                )
                self._readied.append(task.id)
                assert self._wakeup is not None
                self._wakeup.set()
                code = await asyncio.shield(process)
                problem = f"exited with code {code} while it was serving"
        except asyncio.CancelledError:
            process.cancel()
            await asyncio.gather(process, return_exceptions=True)
            if self._services_done or (self.services is not None and not self._stopping):
                return persistent_state(result(TaskStatus.SUCCESS, 0, 1), "stopped")
            cancelled = result(TaskStatus.CANCELLED, 128 + signal.SIGTERM, 1)
            return persistent_state(cancelled, "cancelled")
        if not process.done():  # the probe timed out
            process.cancel()
            await asyncio.gather(process, return_exceptions=True)
        on_output(f"vx: {problem}{log_tail(output)}\n".encode())
        code = process.result() if not process.cancelled() and not process.exception() else 1
        return persistent_state(result(TaskStatus.FAILED, code or 1, 1), "failed")

    async def _command(
        self, task: Task, spec: CommandSpec, on_output: OutputCallback
    ) -> int | RemoteExecution:
        """Run the command as its own asyncio task, the one :meth:`_stop` may cancel; raises
        CancelledError when it was cancelled (or the run stopped before it could start)."""
        import asyncio

        if self._stopping or task.id in self._withdrawn:
            raise asyncio.CancelledError
        command = asyncio.ensure_future(self.executor.execute(task, spec, on_output))
        self._commands[task.id] = command
        try:
            return await command
        finally:
            del self._commands[task.id]


async def _code_of(outcome: Awaitable[int | RemoteExecution]) -> int:
    """The exit code, whether the executor ran the command here or elsewhere."""
    result = await outcome
    return result.exit_code if isinstance(result, RemoteExecution) else result
