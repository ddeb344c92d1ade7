"""``vx replay RUN_ID``: a stored run's events, fed to the observer hooks again.

Nothing runs: no executor, no cache, no history write. The run is rebuilt from its
``run_start`` event (tasks, edges, keys) and marked ``RunInfo.replay``; each event calls
the hook it was recorded from, in the original order, with the original ids and timings.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import vx
from vx_records.events import EventError, check_record, decode_output, read_events

if TYPE_CHECKING:
    from vx_history.store import RunRecord

    from vx import CacheResult, Config, RunInfo, Task, TaskGraph

__all__ = ["Replay", "load_record", "run_replay_command"]

#: The hooks a replay calls (the kernel's observer hooks).
OBSERVER_HOOKS = (
    "vx_run_start",
    "vx_task_start",
    "vx_task_cache",
    "vx_task_output",
    "vx_task_finish",
    "vx_run_finish",
)


def load_record(config: Config, run_id: str | None) -> tuple[RunRecord, list[dict[str, Any]]]:
    """``(run, events)`` of a stored run (the newest for None), through the run store's
    read API; a missing store, run or record is a :class:`vx.UsageError` naming the fix."""
    from vx_history.store import HistoryError, HistoryStore

    root = config.require_root()
    try:
        with HistoryStore.open(root) as store:
            run = store.find_run(run_id)
            if run is None:
                wanted = f"no run {run_id!r}" if run_id else "no run"
                raise vx.UsageError(
                    f"{wanted} in the run store {store.path} (or the prefix is ambiguous); "
                    "see vx history for recorded run ids"
                )
            stored = store.events(run.run_id)
    except HistoryError as exc:
        raise vx.UsageError(f"cannot read the run store: {exc}") from None
    if stored is None:
        raise vx.UsageError(
            f"run {run.run_id} has no stored event record (it was made with the records "
            "plugin disabled or by an older vx); only runs recorded since can be replayed"
        )
    origin = f"run {run.run_id}"
    try:
        events = list(read_events(stored.ndjson, origin=origin))
        check_record(events, origin=origin)
    except EventError as exc:
        raise vx.UsageError(f"{exc} (the stored record is damaged)") from None
    return run, events


def rebuild(start: dict[str, Any], root: Path) -> tuple[RunInfo, TaskGraph]:
    """The run and its graph as ``vx_run_start`` saw them, from a ``run_start`` event."""
    from vx import Project, RunInfo, Task, TaskDefinition, TaskGraph, Workspace

    projects: dict[str, dict[str, TaskDefinition]] = {}
    paths: dict[str, str] = {}
    for entry in start["tasks"]:
        command = entry.get("command")
        definition = TaskDefinition(
            name=entry["name"],
            cmd=tuple(command) if isinstance(command, list) else command,
            outputs=tuple(entry.get("outputs", ())),
            cache=bool(entry.get("cache", True)),
            cwd=entry.get("cwd", "."),
        )
        projects.setdefault(entry["project"], {})[entry["name"]] = definition
        paths[entry["project"]] = entry.get("project_path", ".")
    workspace = Workspace(
        root=root,
        projects={
            name: Project(name, (root / paths[name]).resolve(), paths[name], tasks=tasks)
            for name, tasks in projects.items()
        },
    )
    tasks: dict[str, Task] = {}
    for entry in start["tasks"]:
        project = workspace.projects[entry["project"]]
        tasks[entry["id"]] = Task(
            entry["id"], project, project.tasks[entry["name"]], list(entry["dependencies"])
        )
    for task in tasks.values():
        for dependency in task.dependencies:
            tasks[dependency].dependents.append(task.id)
    run = RunInfo(
        run_id=start["run_id"],
        started_at=float(start["started_at"]),
        tasks=list(tasks),
        task_names=list(start.get("task_names", [])),
        concurrency=start.get("concurrency"),
        replay=True,
    )
    return run, TaskGraph(workspace, tasks)


class Replay:
    """Calls the observer hooks of the chosen plugins with recorded events.

    Like the kernel's own calls, an observer that raises is disabled for the rest of the
    replay with one warning.
    """

    def __init__(self, config: Config, targets: list[str] | None) -> None:
        self.config = config
        self.pm = config.pluginmanager
        self.targets = targets
        self.disabled: set[str] = set()

    def call(self, hook: str, **kwargs: Any) -> None:
        caller = getattr(self.pm.hook, hook)
        for impl in reversed(caller.get_hookimpls()):
            name = impl.plugin_name
            if name in self.disabled or (self.targets and not _chosen(name, self.targets)):
                continue
            try:
                impl.function(**{arg: kwargs[arg] for arg in impl.argnames})
            except Exception as exc:
                self.disabled.add(name)
                vx.warning(
                    f"plugin '{name}' raised in {hook} during vx replay and is disabled for "
                    f"the rest of it: {type(exc).__name__}: {exc}"
                )

    def feed(self, events: list[dict[str, Any]]) -> RunInfo:
        """Replay ``events`` (a whole record); returns the rebuilt, finished run."""
        from vx import TaskResult, TaskStatus

        config = self.config
        run, graph = rebuild(events[0], config.require_root())
        keys: dict[str, str] = {}
        for event in events:
            if event["event"] == "task_finish" and event.get("key"):
                keys[event["task"]] = event["key"]
        for node in graph:
            node.hash = keys.get(node.id)

        def task(event: dict[str, Any]) -> Task:
            return graph[event["task"]]

        outputs: dict[str, bytearray] = {}
        for event in events:
            kind = event["event"]
            if kind == "run_start":
                self.call("vx_run_start", run=run, graph=graph, config=config)
            elif kind == "task_start":
                self.call("vx_task_start", task=task(event), run=run)
            elif kind == "task_cache":
                details = cache_result(event.get("details", {}))
                self.call("vx_task_cache", task=task(event), status=details.status, details=details)
            elif kind == "task_output":
                data = decode_output(event)
                outputs.setdefault(event["task"], bytearray()).extend(data)
                self.call("vx_task_output", task=task(event), data=data)
            elif kind == "task_finish":
                result = TaskResult(
                    task(event),
                    TaskStatus(event["status"]),
                    int(event["exit_code"]),
                    float(event["duration_ms"]),
                    bytes(outputs.get(event["task"], b"")),
                    cache=cache_result(event.get("cache", {})),
                    attempts=int(event.get("attempts", 0)),
                    start_ms=event.get("start_ms"),
                    slot=event.get("slot"),
                )
                run.results[result.task.id] = result
                self.call("vx_task_finish", result=result, run=run)
            elif kind == "run_finish":
                run.exit_code = event.get("exit_code")
                run.duration_ms = event.get("duration_ms")
                run.interrupted = bool(event.get("interrupted", False))
                self.call("vx_run_finish", run=run, config=config)
        return run


def cache_result(recorded: Mapping[str, Any]) -> CacheResult:
    """A recorded cache mapping as the :class:`vx.CacheResult` observers receive (fields this
    vx does not know are dropped)."""
    from vx import CacheResult, CacheSource, CacheStatus

    fields: dict[str, Any] = {
        name: recorded[name]
        for name in CacheResult.__dataclass_fields__
        if recorded.get(name) is not None
    }
    fields["status"] = CacheStatus(fields.get("status", "disabled"))
    if "source" in fields:
        fields["source"] = CacheSource(fields["source"])
    if "changes" in fields:
        fields["changes"] = tuple(fields["changes"])
    return CacheResult(**fields)


def _chosen(plugin_name: str, targets: list[str]) -> bool:
    """Whether ``--to`` names the plugin: by its name, or the plugin that registered it
    (``terminal`` registers ``terminalreporter``; a plugin ``x`` may register ``x.*``)."""
    return any(
        plugin_name in (target, f"{target}reporter") or plugin_name.startswith(f"{target}.")
        for target in targets
    )


def _check_targets(config: Config, targets: list[str]) -> None:
    pm = config.pluginmanager
    observers = sorted(
        {
            impl.plugin_name
            for hook in OBSERVER_HOOKS
            for impl in getattr(pm.hook, hook).get_hookimpls()
        }
    )
    for name in targets:
        if not any(_chosen(observer, [name]) for observer in observers):
            raise vx.UsageError(
                f"vx replay --to {name}: no loaded plugin named '{name}' observes runs; "
                f"observers: {', '.join(observers)}"
            )


def run_replay_command(config: Config) -> int:
    targets: list[str] | None = config.option.to
    if targets:
        _check_targets(config, targets)
    _, events = load_record(config, config.option.run_id)
    run = Replay(config, targets).feed(events)
    if run.exit_code is None:
        sys.stderr.write(f"vx: run {run.run_id} was recorded without its end (run_finish)\n")
    return 0
