"""Persistent tasks (dev servers, databases, workers): readiness probes, and the pool of those
that are up.

A persistent task's process runs until vx stops it. Its dependents start once its readiness
probe passes (``ready = {port = N}``, ``{log = "text"}`` or ``{http = "URL"}``, or at once
without a probe). ``vx run`` stops its persistent tasks when the tasks that need them are done;
``vx watch`` keeps them in one :class:`ServicePool` across runs and restarts one only when its
own key changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from vx.caching import CacheStatus
from vx.execution import TaskResult
from vx.graph import Task

__all__ = ["Service", "ServicePool", "log_tail", "persistent_state", "wait_ready"]

#: Seconds between two probes.
PROBE_INTERVAL = 0.1


@dataclass(slots=True)
class Service:
    """A persistent task that is up; ``runner`` is the coroutine task that owns its process
    and returns its :class:`~vx.execution.TaskResult` once it exits or is stopped."""

    task: Task
    runner: asyncio.Task[TaskResult]


class ServicePool:
    """Persistent tasks that are up, by task id.

    A :class:`~vx.runner.Runner` given a pool leaves the persistent tasks it started running in
    it when the run ends; the owner of the pool stops them (:meth:`stop`, :meth:`stop_all`).
    Must be used from the event loop the services were started in.
    """

    def __init__(self) -> None:
        self._services: dict[str, Service] = {}
        self.on_exit: Callable[[TaskResult], None] | None = None
        """Called with the result of a service that exited on its own."""

    def __contains__(self, id: object) -> bool:
        return id in self._services

    def __iter__(self) -> Iterator[Service]:
        return iter(list(self._services.values()))

    def add(self, service: Service) -> None:
        self._services[service.task.id] = service
        service.runner.add_done_callback(lambda _: self._done(service))

    def _done(self, service: Service) -> None:
        if self._services.get(service.task.id) is not service:
            return  # stopped on purpose
        del self._services[service.task.id]
        if service.runner.cancelled():
            return
        if self.on_exit is not None:
            self.on_exit(service.runner.result())

    async def stop(self, id: str) -> TaskResult | None:
        """Stop one service (its process group gets SIGTERM, then SIGKILL after the grace
        period); returns its result, or None if it was not up."""
        service = self._services.pop(id, None)
        if service is None:
            return None
        service.runner.cancel()
        results = await asyncio.gather(service.runner, return_exceptions=True)
        return results[0] if isinstance(results[0], TaskResult) else None

    async def stop_all(self) -> None:
        """Stop every service, concurrently."""
        await asyncio.gather(*(self.stop(id) for id in list(self._services)))


async def wait_ready(task: Task, process: asyncio.Future[int], output: bytearray) -> str | None:
    """Wait until ``task``'s readiness probe passes: None when it did, else why it did not
    (the process exited first, or the probe timed out)."""
    definition = task.definition
    if definition.ready is None:
        await asyncio.sleep(0)
        return _exited(process)
    kind, target = definition.ready
    loop = asyncio.get_running_loop()
    deadline = loop.time() + definition.ready_timeout
    last = ""
    while True:
        exited = _exited(process)
        if exited is not None:
            return exited
        if kind == "log":
            if target.encode() in output:
                return None
            last = f"no output line contained {target!r}"
        elif kind == "port":
            last = await _probe_port(int(target))
            if not last:
                return None
        else:
            last = await _probe_http(target)
            if not last:
                return None
        remaining = deadline - loop.time()
        if remaining <= 0:
            return f"not ready after {definition.ready_timeout:g}s: {last}"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(process), min(PROBE_INTERVAL, remaining))


def _exited(process: asyncio.Future[int]) -> str | None:
    if not process.done():
        return None
    if process.cancelled() or process.exception() is not None:
        return "could not be started"
    return f"exited with code {process.result()} before it was ready"


async def _probe_port(port: int) -> str:
    """``""`` when something accepts TCP connections on ``localhost:port``."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("localhost", port), 2.0)
    except (OSError, TimeoutError) as exc:
        return f"nothing accepted a connection on port {port} ({_reason(exc)})"
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return ""


async def _probe_http(url: str) -> str:
    """``""`` when ``GET url`` answers 2xx (redirects followed, proxies ignored)."""
    return await asyncio.to_thread(_get, url)


def _get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=2.0) as response:
            status = int(response.status)
    except urllib.error.HTTPError as exc:
        return f"GET {url} answered {exc.code}"
    except (OSError, ValueError) as exc:
        return f"GET {url} failed ({_reason(exc)})"
    return "" if 200 <= status < 300 else f"GET {url} answered {status}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, TimeoutError):
        return "timed out"
    return getattr(exc, "strerror", None) or str(exc) or type(exc).__name__


def log_tail(output: bytes | bytearray, lines: int = 5) -> str:
    """``"; its last output lines:\n  | ..."`` (the end of a failed server's log, repeated in
    its failure message so it is read next to it), or ``""`` when it printed nothing."""
    text = bytes(output[-4096:]).decode(errors="replace")
    last = [line for line in text.splitlines() if line.strip()][-lines:]
    if not last:
        return ""
    return "; its last output lines:\n" + "\n".join(f"  | {line}" for line in last)


def persistent_state(result: TaskResult, state: str) -> TaskResult:
    """Mark the result of a persistent task: never cached, ``cache.persistent`` says how it
    ended (``stopped``, ``running``, ``failed``, ``cancelled``)."""
    result.cache = dataclasses.replace(result.cache, status=CacheStatus.DISABLED, persistent=state)
    return result
