"""``vx report [RUN_ID] -o report.html``: a stored run as one self-contained HTML page.

The page (``report_page.html``, styles and script inline, no network) draws the run from a
JSON document built here from the run's event record and the run store's history: a
timeline by concurrency slot with the critical path, the task graph, and per-task details.
"""

from __future__ import annotations

import json
import os
import sys
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

import vx
from vx_records.events import decode_output
from vx_records.replay import load_record

if TYPE_CHECKING:
    from vx import Config

__all__ = ["critical_path", "render", "report_document", "run_report_command"]

#: Per task, the end of its log kept in the page.
LOG_TAIL_LINES = 40
LOG_TAIL_CHARS = 4000


def _tail(data: bytes) -> str:
    text = data.decode(errors="replace")
    lines = text.splitlines()[-LOG_TAIL_LINES:]
    return "\n".join(lines)[-LOG_TAIL_CHARS:]


def critical_path(tasks: list[dict[str, Any]]) -> list[str]:
    """The chain that decided the run's length: from the task that ended last, back through
    the dependency of each that ended last (tasks that never started are not on it)."""
    by_id = {t["id"]: t for t in tasks if t.get("start_ms") is not None}

    def end(task: dict[str, Any]) -> float:
        return float(task["start_ms"]) + float(task["duration_ms"])

    if not by_id:
        return []
    current: dict[str, Any] | None = max(by_id.values(), key=end)
    path: list[str] = []
    while current is not None:
        path.append(current["id"])
        started = [by_id[d] for d in current["dependencies"] if d in by_id]
        current = max(started, key=end) if started else None
    return path[::-1]


def report_document(
    events: list[dict[str, Any]], p50s: dict[str, float], run_meta: dict[str, Any]
) -> dict[str, Any]:
    """What the page draws: the run, its totals and one entry per task."""
    start = events[0]
    tasks: dict[str, dict[str, Any]] = {}
    for entry in start["tasks"]:
        tasks[entry["id"]] = {
            "id": entry["id"],
            "project": entry["project"],
            "name": entry["name"],
            "command": entry.get("command"),
            "dependencies": list(entry.get("dependencies", [])),
            "status": "skipped",
            "cache": {},
            "key": None,
            "start_ms": None,
            "duration_ms": 0.0,
            "slot": None,
            "exit_code": None,
            "attempts": 0,
            "p50_ms": p50s.get(entry["id"]),
            "log": "",
        }
    logs: dict[str, bytearray] = {}
    finish: dict[str, Any] = {}
    for event in events:
        kind = event["event"]
        if kind == "task_output":
            logs.setdefault(event["task"], bytearray()).extend(decode_output(event))
        elif kind == "task_finish" and event["task"] in tasks:
            task = tasks[event["task"]]
            for field in ("status", "key", "start_ms", "duration_ms", "slot", "exit_code"):
                task[field] = event.get(field)
            task["attempts"] = event.get("attempts", 0)
            task["cache"] = event.get("cache", {})
            if event.get("output_dropped"):
                task["output_dropped"] = event["output_dropped"]
        elif kind == "run_finish":
            finish = event
    for task_id, data in logs.items():
        if task_id in tasks:
            tasks[task_id]["log"] = _tail(bytes(data))
    entries = list(tasks.values())
    counts: dict[str, int] = {}
    for task in entries:
        counts[task["status"]] = counts.get(task["status"], 0) + 1
    hits = [t for t in entries if t["cache"].get("status") == "hit"]
    saved = sum(float(t["cache"].get("time_saved_ms") or 0) for t in hits)
    return {
        "schema": 1,
        "run": {
            "run_id": start["run_id"],
            "started_at": time.strftime(
                "%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(start["started_at"]))
            ),
            "argv": start.get("argv", []),
            "concurrency": start.get("concurrency") or 1,
            "vx_version": start.get("vx_version"),
            "duration_ms": finish.get("duration_ms"),
            "exit_code": finish.get("exit_code"),
            "interrupted": finish.get("interrupted", False),
            **run_meta,
        },
        "totals": {
            "tasks": len(entries),
            "counts": counts,
            "hits": len(hits),
            "remote_hits": sum(t["cache"].get("source") == "remote" for t in hits),
            "time_saved_ms": round(saved, 3),
        },
        "critical_path": critical_path(entries),
        "tasks": entries,
    }


def render(document: dict[str, Any]) -> str:
    """The page: the template with ``document`` embedded as JSON (``<`` escaped, so no
    task output can close the script element)."""
    template = resources.files("vx_records").joinpath("report_page.html").read_text("utf-8")
    data = json.dumps(document, separators=(",", ":")).replace("<", "\\u003c")
    title = f"vx run {document['run']['run_id']}".replace("<", "&lt;")
    return template.replace("__TITLE__", title).replace("__DATA__", data)


def _p50s(config: Config, task_ids: list[str], before: float) -> dict[str, float]:
    """Each task's p50 over its last ``window`` executions before the run (none when the
    history plugin is blocked, whose setting ``window`` is)."""
    from vx_history.store import HistoryError, HistoryStore, percentile

    if not config.pluginmanager.has_plugin("history"):
        return {}
    window = config.section("history").window
    try:
        with HistoryStore.open(config.require_root()) as store:
            durations = store.durations(window=window, task_ids=task_ids, before=before)
    except HistoryError as exc:
        raise vx.UsageError(f"cannot read the run store: {exc}") from None
    return {task: percentile(sorted(values), 0.5) for task, values in durations.items() if values}


def run_report_command(config: Config) -> int:
    run, events = load_record(config, config.option.run_id)
    run_id = run.run_id
    ids = [entry["id"] for entry in events[0]["tasks"]]
    meta = {"git_branch": run.git_branch, "git_revision": run.git_revision, "host": run.host}
    document = report_document(events, _p50s(config, ids, run.started_at), meta)
    page = render(document)
    path = config.invocation_dir / config.option.output
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(page, encoding="utf-8")
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise vx.UsageError(f"vx report -o {config.option.output}: cannot write: {exc}") from None
    sys.stdout.write(f"wrote {path} (run {run_id}, {len(ids)} task(s))\n")
    return 0
