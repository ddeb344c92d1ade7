"""The client side: submits tasks that missed the cache to a Dask cluster and relays their
output; imported only when the Dask executor is used (it imports ``distributed``)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import vx
from vx_dask.worker import Job, cancel, inspect, run_task
from vx_ipc import ENV_VAR as IPC_ENV_VAR

if TYPE_CHECKING:
    from vx_remote.target import RemoteTarget

    from vx_dask.settings import DaskSettings

#: Seconds between the watchdog's checks of the scheduler connection and of the workers.
POLL = 0.5
#: Seconds between re-listings of the cluster's workers.
REFRESH = 2.0
#: Seconds allowed for a finished task's last output chunks to arrive.
OUTPUT_GRACE = 5.0


class _Unusable(Exception):
    """The cluster cannot run tasks (the message says why); every task fails with it."""


@dataclass
class _Flight:
    """A task submitted to the cluster."""

    on_output: Callable[[bytes], None]
    able: list[Any]
    """Names of the workers allowed to run it."""
    ended: asyncio.Future[str | None]
    """Resolved with None when the Dask future finished, or with a problem that ends the
    task early (set by the watchdog or by a worker's start event)."""
    attempts: list[str] = field(default_factory=list)
    workers: list[str] = field(default_factory=list)
    received: dict[str, int] = field(default_factory=dict)

    def end(self, problem: str | None) -> None:
        if not self.ended.done():
            self.ended.set_result(problem)


@dataclass
class _Cluster:
    client: Any
    """A synchronous ``distributed.Client`` (its event loop runs in its own thread)."""
    good: dict[str, dict[str, Any]]
    """Address -> report of every worker whose checkout passed."""
    refused: dict[str, str]
    """Address -> why, for the workers that did not."""
    alive: set[str] = field(default_factory=set)
    """Addresses of the workers in the cluster at the last check."""
    checked_at: float = 0.0
    refreshing: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass
class _Batch:
    """Cancellations collected during one turn of the event loop."""

    futures: list[Any] = field(default_factory=list)
    task_ids: list[str] = field(default_factory=list)
    sent: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )


class DaskExecutor:
    """``Executor`` returning :class:`vx.RemoteExecution`; one per run."""

    def __init__(
        self,
        *,
        address: str,
        settings: DaskSettings,
        target: RemoteTarget,
        revision: str,
        subdir: str,
        root: Path,
        requested: set[str],
        local: vx.Executor | None,
    ) -> None:
        self.address = address
        self.settings = settings
        self.default_concurrency = settings.concurrency
        self.target = target
        self.revision = revision
        self.subdir = subdir
        self.root = root
        self.requested = requested
        self.local = local
        self.run_id = os.urandom(6).hex()
        self._cluster: _Cluster | None = None
        self._unusable: str | None = None
        self._connecting: asyncio.Lock | None = None
        self._flights: dict[str, _Flight] = {}
        self._cancelling: _Batch | None = None
        self._watchdog: asyncio.Future[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._graph_tasks: dict[str, vx.Task] = {}

    # -- connection ------------------------------------------------------------------

    async def _connected(self) -> _Cluster:
        if self._unusable is not None:
            raise _Unusable(self._unusable)
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._cluster is None and self._unusable is None:
                self._loop = asyncio.get_running_loop()
                try:
                    self._cluster = await asyncio.to_thread(self._connect)
                except _Unusable as exc:
                    self._unusable = str(exc)
            if self._unusable is not None:
                raise _Unusable(self._unusable)
            assert self._cluster is not None
            return self._cluster

    def _connect(self) -> _Cluster:
        from distributed import Client

        connect: Any = Client
        _quiet_logging()
        try:
            client = connect(
                self.address, timeout=self.settings.connect_timeout, set_as_default=False
            )
        except (OSError, TimeoutError) as exc:
            raise _Unusable(
                f"cannot reach the Dask scheduler at {self.address} "
                f"within {self.settings.connect_timeout:g}s ({type(exc).__name__})"
            ) from None
        client.subscribe_topic(f"vx-{self.run_id}", self._on_event)
        cluster = _Cluster(client, {}, {})
        self._check_workers(cluster)
        if not cluster.good:
            reasons = "; ".join(f"{a}: {why}" for a, why in cluster.refused.items())
            raise _Unusable(
                f"no Dask worker at {self.address} can run tasks of this checkout"
                + (f" ({reasons})" if reasons else " (the cluster has no workers)")
            )
        return cluster

    def _check_workers(self, cluster: _Cluster) -> None:
        """Inspect the checkout of every worker not seen yet (warns once per refused one)."""
        client = cluster.client
        try:
            known = set(client.scheduler_info(n_workers=-1)["workers"])
        except (OSError, TimeoutError):
            return  # the scheduler is going away: the connection check reports it
        cluster.alive = known
        new = sorted(known - set(cluster.good) - set(cluster.refused))
        cluster.checked_at = time.monotonic()
        if not new:
            return
        reports = client.run(inspect, self.revision, workers=new, on_error="return")
        for address, report in reports.items():
            if isinstance(report, BaseException):
                cluster.refused[address] = f"could not inspect it ({report})"
            elif report["problem"]:
                cluster.refused[address] = report["problem"]
                vx.warning(f"dask worker {report['name']} refused: {report['problem']}")
            else:
                cluster.good[address] = report

    def close(self) -> None:
        cluster, self._cluster = self._cluster, None
        if cluster is None:
            return
        closer = threading.Thread(target=cluster.client.close, daemon=True)
        closer.start()
        closer.join(5.0)

    # -- events from workers (called on the client's thread) --------------------------------

    def _on_event(self, event: tuple[float, dict[str, Any]]) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._dispatch, event[1])

    def _dispatch(self, message: dict[str, Any]) -> None:
        flight = self._flights.get(message.get("task", ""))
        if flight is None:
            return
        attempt = message["attempt"]
        if message["kind"] == "start":
            flight.attempts.append(attempt)
            flight.workers.append(message["worker"])
            if len(flight.attempts) > 1 + self.settings.retries:
                flight.end(
                    f"the dask workers running this task died {len(flight.attempts) - 1} "
                    f"time(s) ({', '.join(map(str, flight.workers[:-1]))}); "
                    f"[tool.vx.dask] retries = {self.settings.retries}"
                )
            elif len(flight.attempts) > 1:
                flight.on_output(
                    f"vx: dask worker {flight.workers[-2]} was lost while running this task; "
                    f"running it again on {message['worker']} "
                    f"(attempt {len(flight.attempts)})\n".encode()
                )
        elif message["kind"] == "output":
            data = message["data"]
            flight.received[attempt] = flight.received.get(attempt, 0) + len(data)
            flight.on_output(data)

    # -- Executor ----------------------------------------------------------------------

    async def execute(
        self, task: vx.Task, spec: vx.CommandSpec, on_output: Callable[[bytes], None]
    ) -> int | vx.RemoteExecution:
        if not task.definition.cache and self.local is not None:
            # Outputs of uncached tasks cannot travel through the cache: run them here.
            return await self.local.execute(task, spec, on_output)
        try:
            cluster = await self._connected()
            return await self._execute(cluster, task, spec, on_output)
        except _Unusable as exc:
            on_output(f"vx: {exc}\n".encode())
            return 1
        except (OSError, RuntimeError, ValueError, TypeError) as exc:
            # The cluster answered something unexpected (or a comm failed mid-call): this
            # task fails with what Dask said, the run goes on as after any task failure.
            on_output(f"vx: the Dask executor failed: {type(exc).__name__}: {exc}\n".encode())
            return 1

    async def _execute(
        self,
        cluster: _Cluster,
        task: vx.Task,
        spec: vx.CommandSpec,
        on_output: Callable[[bytes], None],
    ) -> int | vx.RemoteExecution:
        client = cluster.client
        await self._refresh(cluster)
        resources = _resources(task.definition.requires)
        # By name, stable when a nanny restarts a worker at a new address (--name).
        able = list(
            {
                report["name"]: None
                for address, report in cluster.good.items()
                if address in cluster.alive and _offers(report["resources"], resources)
            }
        )
        if not able:
            wanted = ", ".join(f"{k}={v:g}" for k, v in resources.items())
            offered = "; ".join(
                f"{r['name']}: {_describe(r['resources'])}" for r in cluster.good.values()
            )
            on_output(
                f"vx: no Dask worker offers the resources this task requires ({wanted}); "
                f"workers: {offered}. Start one with `dask worker ... --resources "
                f'"{" ".join(f"{k}={v:g}" for k, v in resources.items())}"`\n'.encode()
            )
            return 1
        job = Job(
            run_id=self.run_id,
            task=task,
            dependencies=self._dependencies(task),
            argv=spec.argv,
            cwd=str(spec.cwd),
            # The runner-aware channel is a socket on this machine: not served to workers.
            env={name: value for name, value in spec.env.items() if name != IPC_ENV_VAR},
            client_root=str(self.root),
            subdir=self.subdir,
            revision=self.revision,
            remote=self.target,
        )
        loop = asyncio.get_running_loop()
        flight = self._flights[task.id] = _Flight(on_output, able, loop.create_future())
        future = client.submit(
            run_task,
            job,
            key=f"vx-{task.id}-{self.run_id}",
            pure=False,
            resources=resources or None,
            workers=able,
            allow_other_workers=False,
        )

        def finished(_: object) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(flight.end, None)

        future.add_done_callback(finished)
        if self._watchdog is None or self._watchdog.done():
            self._watchdog = asyncio.ensure_future(self._watch(cluster))
        try:
            problem = await asyncio.shield(flight.ended)
        except asyncio.CancelledError:
            await self._cancel(cluster, future, task, flight)
            raise
        if problem is not None:
            self._flights.pop(task.id, None)
            if cluster.client.status == "running":
                await asyncio.to_thread(future.cancel)
            on_output(f"vx: {problem}\n".encode())
            return 1
        return await self._outcome(task, future, flight)

    async def _watch(self, cluster: _Cluster) -> None:
        """One watchdog for every task in flight (not one poll per task): ends them early
        when the scheduler is gone or every worker able to run one left."""
        while self._flights:
            await asyncio.sleep(POLL)
            if cluster.client.status != "running":
                self._unusable = f"lost the connection to the Dask scheduler at {self.address}"
                for flight in list(self._flights.values()):
                    flight.end(self._unusable)
                return
            await self._refresh(cluster)
            alive = {cluster.good[a]["name"] for a in cluster.alive if a in cluster.good}
            for flight in list(self._flights.values()):
                if not alive.intersection(flight.able):
                    flight.end("every dask worker able to run this task left the cluster")

    async def _refresh(self, cluster: _Cluster) -> None:
        """Re-list the workers (and inspect new ones) at most every :data:`REFRESH` seconds."""
        if time.monotonic() - cluster.checked_at < REFRESH or cluster.refreshing.locked():
            return
        async with cluster.refreshing:
            if cluster.client.status == "running":
                await asyncio.to_thread(self._check_workers, cluster)

    async def _outcome(
        self, task: vx.Task, future: Any, flight: _Flight
    ) -> int | vx.RemoteExecution:
        try:
            return await self._result(task, future, flight)
        finally:
            self._flights.pop(task.id, None)

    async def _result(
        self, task: vx.Task, future: Any, flight: _Flight
    ) -> int | vx.RemoteExecution:
        """The finished future's outcome, once its output has arrived."""
        from distributed.scheduler import KilledWorker

        try:
            result: dict[str, Any] = await asyncio.to_thread(future.result)
        except KilledWorker:
            flight.on_output(
                f"vx: the dask workers running this task kept dying "
                f"({', '.join(flight.workers)}); giving up\n".encode()
            )
            return 1
        except Exception as exc:
            if (
                self._cluster is None
                or self._cluster.client.status != "running"
                or ("connection-lost" in str(exc))
            ):
                self._unusable = f"lost the connection to the Dask scheduler at {self.address}"
                flight.on_output(f"vx: {self._unusable}\n".encode())
            else:
                flight.on_output(
                    f"vx: the dask task failed: {type(exc).__name__}: {exc}\n".encode()
                )
            return 1
        deadline = time.monotonic() + OUTPUT_GRACE
        while flight.received.get(result["attempt"], 0) < result["sent"]:
            if time.monotonic() > deadline:
                flight.on_output(b"vx: some output of this task was lost in transit\n")
                break
            await asyncio.sleep(0.01)
        return vx.RemoteExecution(
            exit_code=result["code"],
            worker=result["worker"],
            stored=result["stored"],
            restore_outputs=self.settings.outputs == "all"
            or task.id in self.requested
            or task.name in self.requested,
        )

    async def _cancel(self, cluster: _Cluster, future: Any, task: vx.Task, flight: _Flight) -> None:
        """Stop the task on the cluster. Cancellations arriving together (Ctrl-C, fail-fast)
        go out as one batch; bounded, so a lost scheduler does not hang the exit."""
        self._flights.pop(task.id, None)
        if cluster.client.status != "running":
            return
        batch = self._cancelling
        if batch is None:
            batch = self._cancelling = _Batch()
            asyncio.get_running_loop().call_soon(
                lambda: asyncio.ensure_future(self._send_cancellations(cluster))
            )
        batch.futures.append(future)
        batch.task_ids.append(task.id)
        await asyncio.shield(batch.sent)

    async def _send_cancellations(self, cluster: _Cluster) -> None:
        batch, self._cancelling = self._cancelling, None
        assert batch is not None
        client = cluster.client

        def stop() -> None:
            client.cancel(batch.futures)
            client.run(cancel, self.run_id, batch.task_ids, on_error="ignore")

        try:
            await asyncio.wait_for(asyncio.to_thread(stop), 5.0)
        except (TimeoutError, OSError):
            vx.warning(f"could not reach the Dask cluster to cancel {len(batch.task_ids)} task(s)")
        finally:
            batch.sent.set_result(None)

    def _dependencies(self, task: vx.Task) -> tuple[vx.Task, ...]:
        """Transitive dependencies whose outputs travel through the cache."""
        graph = self._graph_tasks
        seen: dict[str, vx.Task] = {}
        stack = list(task.dependencies)
        while stack:
            id = stack.pop()
            if id in seen or id not in graph:
                continue
            dependency = graph[id]
            seen[id] = dependency
            stack.extend(dependency.dependencies)
        return tuple(
            t
            for t in seen.values()
            if t.command is not None and t.definition.cache and t.definition.outputs
        )

    def use_graph(self, tasks: dict[str, vx.Task]) -> None:
        self._graph_tasks = tasks


def _quiet_logging() -> None:
    """vx reports cluster problems itself: silence distributed's own loggers (a lost scheduler
    would otherwise print reconnection tracebacks)."""
    for name in ["distributed", *logging.root.manager.loggerDict]:
        if name == "distributed" or name.startswith("distributed."):
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)


def _resources(requires: tuple[str, ...]) -> dict[str, float]:
    resources: dict[str, float] = {}
    for item in requires:
        name, _, amount = item.partition("=")
        resources[name.strip()] = float(amount) if amount else 1.0
    return resources


def _offers(offered: dict[str, float], wanted: dict[str, float]) -> bool:
    return all(offered.get(name, 0.0) >= amount for name, amount in wanted.items())


def _describe(resources: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:g}" for k, v in resources.items()) or "no resources"
