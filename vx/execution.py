"""What the scheduler hands to executors, and what comes back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from vx.caching import CacheResult, CacheStatus
from vx.graph import Task

__all__ = [
    "PASSED",
    "CommandSpec",
    "ContinueMode",
    "Executor",
    "OutputCallback",
    "RemoteExecution",
    "RunInfo",
    "TaskResult",
    "TaskStatus",
]

OutputCallback = Callable[[bytes], None]


@dataclass(slots=True)
class CommandSpec:
    """How to start one task's process; plugins may rewrite it (``vx_wrap_command``)."""

    argv: list[str]
    """Program and arguments; a string ``cmd`` becomes ``["/bin/sh", "-c", cmd]``."""
    cwd: Path
    env: dict[str, str]
    preexec: Callable[[], None] | None = None
    """Called in the child process after ``fork`` and just before ``exec`` (local executors;
    an executor that cannot honour it must refuse the spec). It must only make system calls
    prepared in advance: the child of a threaded parent cannot safely take locks. It costs a
    full ``fork`` of vx; prefer ``confine`` where a thread-scoped setting suffices."""
    confine: Callable[[], None] | None = None
    """Called on a fresh thread that then starts the process and ends (local executors).
    Thread-scoped restrictions it applies (Landlock, seccomp, ``no_new_privs``) are inherited
    by the process, and the spawn keeps its fast path (no ``fork`` of vx); raising an
    exception fails the task with its message."""
    ipc_dir: Path | None = None
    """The private directory holding the task's runner-aware socket (its path is
    ``env["VX_IPC"]``, see ``docs/runner-aware.md``), None when the channel is off. A
    sandbox must let the task connect to the socket in it."""


class ContinueMode(StrEnum):
    """What ``vx run`` does after a task fails (``--continue``)."""

    NEVER = "never"
    DEPENDENCIES_SUCCESSFUL = "dependencies-successful"
    ALWAYS = "always"


class TaskStatus(StrEnum):
    """Outcome of one task in a run."""

    SUCCESS = "success"
    FAILED = "failed"
    CACHED = "cached"
    SKIPPED = "skipped"
    """Not started: a dependency failed, or the run stopped first."""
    CANCELLED = "cancelled"
    """Started, then terminated by vx (fail-fast or interruption)."""
    FLAKY = "flaky"
    """Failed, then passed on a retry (``retries``); counts as successful."""


#: Statuses after which a task's dependents may run.
PASSED = frozenset({TaskStatus.SUCCESS, TaskStatus.CACHED, TaskStatus.FLAKY})


@dataclass(slots=True)
class TaskResult:
    """The outcome of a task, passed to ``vx_task_finish``."""

    task: Task
    status: TaskStatus
    exit_code: int
    duration_ms: float
    output: bytes = b""
    """Combined stdout and stderr, as captured."""
    cache: CacheResult = field(default_factory=lambda: CacheResult(status=CacheStatus.DISABLED))
    """What the cache did for the task (``cache.status`` is always set)."""
    attempts: int = 0
    """Times the command was started in this run (``1 +`` retries used); 0 when it never
    was (cache hits, tasks without a command, skipped tasks)."""
    start_ms: float | None = None
    """When the task started, in milliseconds since the run started (None: skipped);
    it ended at ``start_ms + duration_ms``."""
    slot: int | None = None
    """The concurrency slot (``0 .. concurrency - 1``) the task ran in (None: skipped).
    Hits completed before scheduling starts run in slot 0."""
    plugin_data: dict[str, Any] = field(default_factory=dict)
    """Facts plugins record about this execution, keyed by plugin name (the sandbox's denied
    accesses); JSON-serialisable, written to the run summary. Set them in ``vx_task_finish``."""
    worker: str | None = None
    """Name of the remote worker that ran the command (see :class:`RemoteExecution`);
    None when it ran on this machine or did not run."""


@dataclass(frozen=True, slots=True)
class RemoteExecution:
    """What an executor that ran a command on another machine returns instead of a bare
    exit code (``Executor.execute`` may return either).

    The runner records ``worker`` in :attr:`TaskResult.worker`. When ``stored`` is true the
    remote side has already stored the task's artifact (outputs + log, the format of
    ``vx.pack_outputs``) under ``task.hash`` in the shared cache layers, so on success the
    runner does not archive local outputs (there are none here) but *adopts* that artifact:
    it records the task's manifest (for ``vx why``) and, when ``restore_outputs`` is true,
    fetches the artifact from the cache layers, restores the outputs into this checkout and
    writes it to the local layer. Logs are not replayed again (they streamed live).
    """

    exit_code: int
    worker: str
    stored: bool = False
    restore_outputs: bool = True


@dataclass(slots=True)
class RunInfo:
    """One ``vx run`` invocation, passed to run lifecycle hooks."""

    run_id: str
    started_at: float
    """Wall-clock start, seconds since the epoch."""
    tasks: list[str]
    """Ids of every task the run will consider, in topological order."""
    task_names: list[str]
    """Task names as given on the command line."""
    results: dict[str, TaskResult] = field(default_factory=dict)
    exit_code: int | None = None
    duration_ms: float | None = None
    interrupted: bool = False
    concurrency: int | None = None
    """The concurrency limit of the run (``-j``)."""
    summary_path: Path | None = None
    """Where the run summary JSON was written (set by the summary plugin)."""
    replay: bool = False
    """True when ``vx replay`` feeds a stored run to the observers: nothing runs, and every
    field (ids, ``started_at``, each result's ``start_ms`` and ``duration_ms``) is the
    original run's. Observers that act on the world (recording, uploads, notifications)
    skip replays; exporters keep the original timestamps and ids."""


@runtime_checkable
class Executor(Protocol):
    """Runs a command and reports its exit code; returned by ``vx_executor``.

    ``execute`` streams output through ``on_output`` as it arrives. When the
    awaiting coroutine is cancelled (fail-fast, Ctrl-C), the executor must stop
    the command and everything it spawned before re-raising ``CancelledError``.
    An executor that runs commands elsewhere returns a :class:`RemoteExecution`.

    Optional attribute: ``default_concurrency: int``, the number of tasks ``vx run``
    keeps in flight when neither ``-j`` nor ``[tool.vx] concurrency`` is set (a remote
    executor's capacity is not this machine's CPU count).
    """

    async def execute(
        self, task: Task, spec: CommandSpec, on_output: OutputCallback
    ) -> int | RemoteExecution: ...
