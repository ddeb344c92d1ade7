"""The ``vx watch`` loop: run, wait for changes, re-run what they affect, until Ctrl-C."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING, Any

import vx
from vx_watch.watcher import ChangeFilter, ChangeSet, WorkspaceWatcher

if TYPE_CHECKING:
    from vx import Config, RunInfo, Runner, RunOptions, TaskGraph, TaskResult

__all__ = ["WatchSession"]

_OK = ("success", "cached")
#: Task ids named in a "running ..." line (the rest are counted).
_SHOWN = 8
#: The exit code of an interrupted ``vx run`` (and ``vx watch`` stopped by Ctrl-C).
EXIT_INTERRUPTED = 130


def say(message: str) -> None:
    """One status line of ``vx watch`` (stdout, with the task output)."""
    sys.stdout.write(f"• vx watch: {message}\n")
    sys.stdout.flush()


class WatchSession:
    """One ``vx watch`` invocation.

    After each run it remembers every successful task's key. On a change it plans again
    (reading the configuration again first when a ``pyproject.toml`` changed) and runs the
    tasks whose key differs from the remembered one, those that did not succeed last time,
    and their dependents; every other task is *settled* (not run, not reported). Persistent
    tasks stay up in one :class:`vx.ServicePool` and are restarted only when they are part
    of such a run.
    """

    def __init__(
        self, config: Config, options: RunOptions, *, debounce: float, interrupt: bool
    ) -> None:
        self.config = config
        self.options = options
        self.interrupt_runs = interrupt
        root = config.require_root()
        settings = config.section("watch")
        self.filter = ChangeFilter(root, tuple(settings.ignore))
        self.watcher = WorkspaceWatcher(root, self.filter, debounce=debounce)
        self.services = vx.ServicePool()
        self.services.on_exit = self._service_exited
        self.keys: dict[str, str | None] = {}
        """Key of every task as of its last successful run."""
        self.runner: Runner | None = None
        self.stopping = asyncio.Event()
        self.interrupted = False
        self.needs_reload = False
        self.planned_once = False
        self.exit_code = 0

    # -- signals ---------------------------------------------------------------------

    def _on_signal(self) -> None:
        if self.interrupted:
            return
        self.interrupted = True
        self.stopping.set()
        if self.runner is not None:
            self.runner.interrupt()

    def _service_exited(self, result: TaskResult) -> None:
        self.keys.pop(result.task.id, None)
        say(
            f"{result.task.id} exited with code {result.exit_code}; it starts again with "
            "the next run"
        )

    # -- the loop --------------------------------------------------------------------

    async def main(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, self._on_signal)
        try:
            try:
                await self.watcher.start()
            except OSError as exc:  # e.g. the inotify watch limit
                raise vx.UsageError(
                    f"cannot watch {self.watcher.root}: {exc} (on Linux, a low "
                    "fs.inotify.max_user_watches is the usual cause: raise it with sysctl)"
                ) from None
            changes: ChangeSet | None = None
            pending: asyncio.Task[ChangeSet] | None = None
            while not self.stopping.is_set():
                pending = await self._cycle(changes, pending)
                if self.stopping.is_set():
                    break
                if not self.needs_reload:  # else it said "waiting for a fix"
                    say("waiting for changes (Ctrl-C to stop)")
                changes = await self._wait(pending)
                pending = None
                if changes is None:
                    break
        finally:
            say("stopping")
            await self.services.stop_all()
            await self.watcher.stop()
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(signum)
        return EXIT_INTERRUPTED if self.interrupted else self.exit_code

    async def _wait(self, pending: asyncio.Task[ChangeSet] | None) -> ChangeSet | None:
        """The next change set, or None when Ctrl-C came first."""
        change = pending or asyncio.ensure_future(self.watcher.next())
        stop = asyncio.ensure_future(self.stopping.wait())
        await asyncio.wait([change, stop], return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not change.done():
            change.cancel()
            return None
        return change.result()

    async def _cycle(
        self, changes: ChangeSet | None, pending: asyncio.Task[ChangeSet] | None
    ) -> asyncio.Task[ChangeSet] | None:
        """Plan and run once; returns the wait for the next change if one started meanwhile."""
        if changes is not None:
            say(f"changed: {changes.describe()}")
            if changes.config_changed:
                self.needs_reload = True
        planned = self._plan()
        if planned is None:
            return pending
        graph, cache, run, settled = planned
        if self.stopping.is_set():  # Ctrl-C while planning
            return pending
        if not run:
            say("no task affected")
            return pending
        for service in self.services:
            if service.task.id not in settled:
                await self.services.stop(service.task.id)
                self.keys.pop(service.task.id, None)
        unchanged = f" ({len(settled)} unchanged)" if settled else ""
        shown = ", ".join(run[:_SHOWN]) + (
            f" and {len(run) - _SHOWN} more" if len(run) > _SHOWN else ""
        )
        say(f"running {shown}{unchanged}")
        keys = {task.id: task.hash for task in graph}
        self.runner = vx.create_runner(
            self.config,
            graph,
            cache,
            self.options,
            settled=settled,
            services=self.services,
        )
        running = asyncio.ensure_future(self.runner.run_async())
        # Change sets that arrived during the run (--interrupt), already acted on.
        arrived: list[ChangeSet] = []
        if self.interrupt_runs:
            pending = pending or asyncio.ensure_future(self.watcher.next())
            while True:
                await asyncio.wait([running, pending], return_when=asyncio.FIRST_COMPLETED)
                if running.done() or self.stopping.is_set():
                    break
                arrived.append(pending.result())
                pending = asyncio.ensure_future(self.watcher.next())
                if not self._withdraw_affected(arrived[-1], keys):
                    break  # the whole run is stopping
        info = await running
        self.runner = None
        self._remember(info, keys)
        if self.stopping.is_set():
            return pending
        if pending is not None and pending.done():
            arrived.append(pending.result())
            pending = None
        if arrived:  # plan again right away, with everything that changed meanwhile
            merged = ChangeSet(
                frozenset().union(*(c.paths for c in arrived)),
                any(c.config_changed for c in arrived),
            )
            return await self._cycle(merged, pending)
        return pending

    def _withdraw_affected(self, changes: ChangeSet, keys: dict[str, str | None]) -> bool:
        """Changes arrived during a run (``--interrupt``): stop the tasks of the run whose
        key they change (running ones are cancelled, waiting ones never start), and let the
        others go on; the follow-up run re-runs what was stopped. A configuration change
        stops the whole run. False when the whole run is stopping."""
        runner = self.runner
        assert runner is not None
        graph = None
        if not changes.config_changed:
            with contextlib.suppress(vx.VxError):  # shown by the follow-up run's planning
                graph, _ = vx.plan_run(self.config, self.options)
        if graph is None:
            say(f"changed: {changes.describe()}: stopping this run")
            runner.cancel()
            return False
        done, settled = runner.run_info.results, runner.settled
        affected = [
            task.id
            for task in graph
            if task.id in keys
            and task.id not in done
            and task.id not in settled
            and keys[task.id] != task.hash
        ]
        if not affected:
            say(f"changed: {changes.describe()}: no task of this run affected")
            return True
        shown = ", ".join(affected[:_SHOWN]) + (
            f" and {len(affected) - _SHOWN} more" if len(affected) > _SHOWN else ""
        )
        say(f"changed: {changes.describe()}: stopping {shown}")
        runner.withdraw(affected)
        return True

    def _plan(self) -> tuple[TaskGraph, Any, list[str], set[str]] | None:
        """Read the configuration if needed, plan, and split the graph into the tasks to run
        and the settled ones; None after a configuration error (shown, watching goes on)."""
        try:
            if self.planned_once:
                # Always: a new project directory changes the members without any
                # pyproject.toml event of its own; the workspace cache makes this cheap.
                self.config.reload(revalidate=self.needs_reload)
                if self.needs_reload:
                    say("configuration reloaded")
            self.planned_once = True
            graph, cache = vx.plan_run(self.config, self.options)
        except vx.VxError as exc:
            self.needs_reload = True
            say(f"error: {exc}")
            say("waiting for a fix")
            self.exit_code = exc.exit_code
            return None
        self.needs_reload = False
        self.exit_code = 0
        self.filter.update(graph.workspace)
        changed = {
            task.id
            for task in graph
            if task.id not in self.keys
            or self.keys[task.id] != task.hash
            or (task.definition.persistent and task.id not in self.services)
        }
        affected = set(changed)
        for id in changed:
            affected |= graph.transitive_dependents(id)
        run = [task.id for task in graph if task.id in affected]
        return graph, cache, run, {task.id for task in graph} - affected

    def _remember(self, info: RunInfo, keys: dict[str, str | None]) -> None:
        for id, result in info.results.items():
            if result.status.value in _OK:
                self.keys[id] = keys.get(id)
            else:
                self.keys.pop(id, None)
        if info.exit_code:
            self.exit_code = info.exit_code
