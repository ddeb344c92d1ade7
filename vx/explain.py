"""Why did a task miss? The last cached manifest of each task, and a readable diff."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from vx.fileio import atomic_write
from vx.statedir import make_dirs

__all__ = ["ManifestStore", "explain"]


class ManifestStore:
    """``.vx/manifests/<task id>.json``: the manifest of each task's most recent cache entry.

    ``index.json`` remembers which key each file holds, so a hit on the same entry as last
    time writes nothing.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._index: dict[str, str] | None = None
        self._dirty = False

    @property
    def index(self) -> dict[str, str]:
        if self._index is None:
            try:
                loaded = json.loads((self.directory / "index.json").read_text())
                self._index = loaded if isinstance(loaded, dict) else {}
            except (OSError, ValueError):
                self._index = {}
        return self._index

    def _path(self, task_id: str) -> Path:
        return self.directory / (quote(task_id, safe="") + ".json")

    def load(self, task_id: str) -> dict[str, Any] | None:
        try:
            data = json.loads(self._path(task_id).read_text())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def save(
        self,
        task_id: str,
        key: str,
        manifest: dict[str, Any],
        reported: dict[str, Any] | None = None,
    ) -> None:
        """Remember the manifest of ``task_id``'s entry ``key``; ``reported``: the entry's
        tool-reported fingerprint, or ``{"disabled": reason}`` for a run a tool kept out of
        the cache (both always written: they vary under one key)."""
        if self.index.get(task_id) == key and reported is None:
            return
        record: dict[str, Any] = {"key": key, "manifest": manifest}
        if reported is not None:
            record["reported"] = reported
        # Not atomic on purpose (it is on the per-task path): a torn file reads as "no
        # previous manifest", which only weakens the explanation of one miss.
        _write(self._path(task_id), json.dumps(record))
        self.index[task_id] = key
        self._dirty = True

    def flush(self) -> None:
        """Persist the index (once per run)."""
        if self._dirty:
            atomic_write(self.directory / "index.json", json.dumps(self.index))
            self._dirty = False


def _write(path: Path, text: str) -> None:
    try:
        try:
            path.write_text(text)
        except FileNotFoundError:
            make_dirs(path.parent)
            path.write_text(text)
    except OSError:
        pass


def _diff_maps(label: str, old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    changes = [f"{label} added: {name}" for name in sorted(new.keys() - old.keys())]
    changes += [f"{label} removed: {name}" for name in sorted(old.keys() - new.keys())]
    changes += [
        f"{label} modified: {name}"
        for name in sorted(old.keys() & new.keys())
        if old[name] != new[name]
    ]
    return changes


def explain(previous: dict[str, Any] | None, current: dict[str, Any]) -> list[str]:
    """What changed between the last cached manifest and ``current`` (never env values)."""
    if previous is None:
        return ["never ran before"]
    old = previous.get("manifest", {})
    if old.get("format") != current.get("format"):
        return ["the cache format changed (new vx version)"]
    changes: list[str] = []
    old_task, new_task = old.get("task", {}), current.get("task", {})
    for field in ("command", "cwd", "outputs", "inputs", "env"):
        if old_task.get(field) != new_task.get(field):
            changes.append(f"task {field} changed")
    changes += _diff_maps("file", old.get("inputs", {}), current.get("inputs", {}))
    changes += _diff_maps("global input", old.get("global_inputs", {}), current["global_inputs"])
    for label, key in (("env", "env"), ("global env", "global_env")):
        old_env, new_env = old.get(key, {}), current.get(key, {})
        for name in sorted(old_env.keys() | new_env.keys()):
            if old_env.get(name) != new_env.get(name):
                changes.append(f"{label} changed: {name}")
    old_deps, new_deps = old.get("dependencies", {}), current.get("dependencies", {})
    for name in sorted(old_deps.keys() | new_deps.keys()):
        if name not in old_deps:
            changes.append(f"dependency added: {name}")
        elif name not in new_deps:
            changes.append(f"dependency removed: {name}")
        elif old_deps[name] != new_deps[name]:
            changes.append(f"dependency changed: {name}")
    changes += _diff_maps("plugin component", old.get("plugins", {}), current.get("plugins", {}))
    return changes or ["no cached entry for this key (it was evicted, cleared, or never saved)"]
