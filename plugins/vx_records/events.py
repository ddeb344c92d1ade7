"""The event schema (docs/events.md) and the observer that writes it.

One JSON object per event, one per line (NDJSON), in the order the kernel emitted them.
Every object has ``v`` (the schema version, :data:`SCHEMA_VERSION`), ``event`` (its type)
and ``t_ms`` (milliseconds since the run started, wall clock). Fields are only ever added
within a version; a removed or renamed field, or a changed meaning, bumps ``v``.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

import vx

if TYPE_CHECKING:
    from vx import Config, RunInfo, Task, TaskGraph, TaskResult

__all__ = [
    "SCHEMA_VERSION",
    "EventError",
    "EventLog",
    "check_record",
    "decode_output",
    "read_events",
]

#: Version of the event schema this code writes (``v`` of every event).
SCHEMA_VERSION = 1


#: One encoder for every event (``json.dumps`` with options builds a new one per call).
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


class EventError(Exception):
    """A stored or streamed event record that cannot be read."""


def _encode_output(data: bytes) -> dict[str, str]:
    """``{"text": ...}`` for UTF-8 output, else ``{"b64": ...}``: lossless either way."""
    try:
        return {"text": data.decode()}
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(data).decode("ascii")}


def decode_output(event: Mapping[str, Any]) -> bytes:
    """The bytes of a ``task_output`` event."""
    if "b64" in event:
        return base64.b64decode(event["b64"])
    return str(event.get("text", "")).encode()


def task_entry(task: Task) -> dict[str, Any]:
    """How a task is described in ``run_start``."""
    definition = task.definition
    return {
        "id": task.id,
        "project": task.project.name,
        "project_path": task.project.relpath,
        "name": task.name,
        "command": task.command,
        "cwd": definition.cwd,
        "dependencies": list(task.dependencies),
        "outputs": list(definition.outputs),
        "cache": definition.cache,
    }


def _plain(details: Mapping[str, object]) -> dict[str, object]:
    """The JSON object of a cache result (``as_dict``: one pass, where ``dict()`` of the
    mapping looks every field up twice)."""
    as_dict = getattr(details, "as_dict", None)
    return as_dict() if as_dict is not None else dict(details)


def finish_fields(result: TaskResult) -> dict[str, Any]:
    """The fields of ``task_finish`` (except ``t_ms``)."""
    cache = result.cache
    return {
        "task": result.task.id,
        "status": str(result.status),
        "exit_code": result.exit_code,
        "duration_ms": round(result.duration_ms, 3),
        "start_ms": None if result.start_ms is None else round(result.start_ms, 3),
        "slot": result.slot,
        "attempts": result.attempts,
        "key": cache.get("key") or result.task.hash,
        "cache": _plain(cache),
    }


class EventLog:
    """Observer: turns the lifecycle hooks into events, streams them (``--events``) and
    keeps them for the run store."""

    def __init__(
        self,
        config: Config,
        *,
        stream: IO[str] | None,
        stream_output: bool,
        store: bool,
        max_task_output: int,
    ) -> None:
        self.config = config
        self.stream = stream
        self.stream_output = stream_output
        self.store = store
        self.max_task_output = max_task_output
        self.lines: list[str] = []
        self._started_at = time.time()
        self._stored_output: dict[str, int] = {}
        self._output_bytes: dict[str, int] = {}

    def _line(self, event: str, fields: dict[str, Any]) -> str:
        return _ENCODE({"v": SCHEMA_VERSION, "event": event, "t_ms": self._t_ms(), **fields})

    def _emit(self, event: str, fields: dict[str, Any]) -> None:
        line = self._line(event, fields)
        if self.store:
            self.lines.append(line)
        if self.stream is not None:
            self._write(line)

    def _write(self, line: str) -> None:
        assert self.stream is not None
        self.stream.write(line + "\n")
        self.stream.flush()

    def _t_ms(self) -> float:
        return round((time.time() - self._started_at) * 1000, 3)

    # -- observer hooks -----------------------------------------------------------

    @vx.hookimpl
    def vx_run_start(self, run: RunInfo, graph: TaskGraph, config: Config) -> None:
        # One record per run: ``vx watch`` runs many in one process.
        self._started_at = run.started_at
        self.lines = []
        self._stored_output.clear()
        self._output_bytes.clear()
        fields: dict[str, Any] = {
            "run_id": run.run_id,
            "started_at": run.started_at,
            "vx_version": vx.__version__,
            "root": str(graph.workspace.root),
            "argv": ["vx", *config.args],
            "task_names": list(run.task_names),
            "concurrency": run.concurrency,
            "tasks": [task_entry(task) for task in graph],
        }
        if run.replay:
            fields["replay"] = True
        self._emit("run_start", fields)

    @vx.hookimpl
    def vx_task_start(self, task: Task, run: RunInfo) -> None:
        self._emit("task_start", {"task": task.id})

    @vx.hookimpl
    def vx_task_cache(self, task: Task, status: str, details: Mapping[str, object]) -> None:
        self._emit("task_cache", {"task": task.id, "status": status, "details": _plain(details)})

    @vx.hookimpl
    def vx_task_output(self, task: Task, data: bytes) -> None:
        """Streamed whole (``--events-output=inline``); stored up to ``max_task_output``
        bytes per task."""
        self._output_bytes[task.id] = self._output_bytes.get(task.id, 0) + len(data)
        if self.stream is not None and self.stream_output:
            self._write(self._line("task_output", {"task": task.id, **_encode_output(data)}))
        kept = self._stored_output.get(task.id, 0)
        room = self.max_task_output - kept
        if self.store and room > 0:
            chunk = data[:room]
            self._stored_output[task.id] = kept + len(chunk)
            fields = {"task": task.id, **_encode_output(chunk)}
            self.lines.append(self._line("task_output", fields))

    @vx.hookimpl
    def vx_task_finish(self, result: TaskResult, run: RunInfo) -> None:
        fields = finish_fields(result)
        total = self._output_bytes.get(result.task.id, 0)
        fields["output_bytes"] = total
        dropped = total - self._stored_output.get(result.task.id, 0)
        if self.store and dropped > 0:
            fields["output_dropped"] = dropped
        self._emit("task_finish", fields)

    @vx.hookimpl(tryfirst=True)
    def vx_run_finish(self, run: RunInfo, config: Config) -> None:
        """Before the history plugin records the run: hand it the event record."""
        counts: dict[str, int] = {}
        for result in run.results.values():
            counts[str(result.status)] = counts.get(str(result.status), 0) + 1
        self._emit(
            "run_finish",
            {
                "run_id": run.run_id,
                "exit_code": run.exit_code,
                "duration_ms": round(run.duration_ms or 0.0, 3),
                "interrupted": run.interrupted,
                "counts": counts,
            },
        )
        if self.store and not run.replay:
            from vx_history.hooks import EVENTS_KEY
            from vx_history.store import StoredEvents

            ndjson = ("\n".join(self.lines) + "\n").encode()
            config.stash[EVENTS_KEY] = StoredEvents(SCHEMA_VERSION, ndjson)


def read_events(ndjson: bytes, *, origin: str) -> Iterator[dict[str, Any]]:
    """The events of a record, checked: each line an object of a schema this vx reads."""
    for number, line in enumerate(ndjson.splitlines(), 1):
        if not line.strip():
            continue
        try:
            event = json.loads(line)
        except ValueError as exc:
            raise EventError(f"{origin}: line {number} is not JSON: {exc}") from None
        if not isinstance(event, dict) or "event" not in event:
            raise EventError(f"{origin}: line {number} is not an event object")
        version = event.get("v")
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise EventError(
                f"{origin}: line {number} has event schema version {version!r}; this vx "
                f"reads up to {SCHEMA_VERSION}: upgrade vx-build"
            )
        yield event


_NUMBER = (int, float)
#: Fields each event kind must have, with their JSON types (what replay and report read).
_REQUIRED: dict[str, dict[str, type | tuple[type, ...]]] = {
    "run_start": {"run_id": str, "started_at": _NUMBER, "tasks": list},
    "task_start": {"task": str},
    "task_cache": {"task": str},
    "task_output": {"task": str},
    "task_finish": {"task": str, "status": str, "exit_code": int, "duration_ms": _NUMBER},
    "run_finish": {},
}
#: Fields that may be absent, and their JSON types when present.
_OPTIONAL: dict[str, dict[str, type | tuple[type, ...]]] = {
    "task_cache": {"details": dict},
    "task_output": {"text": str, "b64": str},
    "task_finish": {"cache": dict, "attempts": int, "start_ms": (*_NUMBER, type(None))},
}
_STATUSES = frozenset(status.value for status in vx.TaskStatus)
_TASK_ENTRY: dict[str, type | tuple[type, ...]] = {
    "id": str,
    "project": str,
    "name": str,
    "dependencies": list,
}


def check_record(events: list[dict[str, Any]], *, origin: str) -> None:
    """Raise :class:`EventError` naming the first event that a replay or a report could not
    read: a ``run_start`` first, the fields each kind needs, tasks the run declared."""
    if not events or events[0]["event"] != "run_start":
        raise EventError(f"{origin}: the event record does not start with run_start")
    known: set[str] = set()
    for number, event in enumerate(events, 1):
        kind = event["event"]
        for field, kinds in _REQUIRED.get(kind, {}).items():
            if not isinstance(event.get(field), kinds) or isinstance(event.get(field), bool):
                raise EventError(f"{origin}: event {number} ({kind}) has no valid '{field}'")
        for field in _OPTIONAL.get(kind, ()):
            if field in event and not isinstance(event[field], _OPTIONAL[kind][field]):
                raise EventError(f"{origin}: event {number} ({kind}) has an invalid '{field}'")
        if kind == "task_finish" and event["status"] not in _STATUSES:
            raise EventError(
                f"{origin}: event {number} (task_finish) has an unknown status {event['status']!r}"
            )
        if kind == "run_start":
            if number != 1:
                raise EventError(f"{origin}: event {number} is a second run_start")
            known = _declared_tasks(event["tasks"], origin)
        elif "task" in _REQUIRED.get(kind, {}) and event["task"] not in known:
            raise EventError(
                f"{origin}: event {number} ({kind}) names task {event['task']!r}, "
                "which run_start did not declare"
            )


def _declared_tasks(entries: list[Any], origin: str) -> set[str]:
    ids = {entry.get("id") for entry in entries if isinstance(entry, dict)}
    for index, entry in enumerate(entries):
        for field, kinds in _TASK_ENTRY.items():
            if not isinstance(entry, dict) or not isinstance(entry.get(field), kinds):
                raise EventError(f"{origin}: run_start task {index} has no valid '{field}'")
        unknown = [dep for dep in entry["dependencies"] if dep not in ids]
        if unknown:
            raise EventError(
                f"{origin}: run_start task {entry['id']!r} depends on undeclared {unknown[0]!r}"
            )
    return {entry["id"] for entry in entries}
