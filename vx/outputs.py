"""A task's declared outputs on disk: finding them and comparing them with a cache entry.

Kept apart from :mod:`vx.artifacts` (tar, zstd) so that a hit whose outputs are already in
place is checked without importing the archive machinery.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from vx.globs import GlobSet, globs

if TYPE_CHECKING:
    from vx.graph import Task

__all__ = [
    "Restored",
    "compare_outputs",
    "file_digest",
    "output_globs",
    "output_paths",
    "outputs_current",
]


def output_globs(task: Task) -> GlobSet:
    """The task's ``outputs`` globs, relative to its project."""
    return globs(task.definition.outputs)


@dataclass(slots=True)
class Restored:
    meta: dict[str, Any]
    log: bytes
    extracted: bool
    """False when the outputs on disk already matched and nothing was written."""


def output_paths(task: Task) -> list[str]:
    """Files and symlinks under the task's project matching its ``outputs`` globs, as
    sorted absolute paths."""
    outputs = task.definition.outputs
    if not outputs:
        return []
    spec = output_globs(task)
    base = str(task.project.path)
    cut = len(base) + 1
    found: set[str] = set()
    for start in _walk_roots(base, outputs):
        try:
            mode = os.lstat(start).st_mode
        except OSError:
            continue
        if not stat.S_ISDIR(mode):
            if spec.match(start[cut:]):
                found.add(start)
            continue
        pending = [start]
        while pending:
            try:
                entries = os.scandir(pending.pop())
            except OSError:
                continue
            with entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(entry.path)
                    elif spec.match(entry.path[cut:]):
                        found.add(entry.path)
    return sorted(found)


def _walk_roots(base: str, patterns: tuple[str, ...]) -> set[str]:
    """The deepest literal directory of each positive pattern (``dist/**`` -> ``dist``)."""
    roots: set[str] = set()
    for pattern in patterns:
        if pattern.startswith("!"):
            continue
        parts = pattern.strip("/").split("/")
        literal: list[str] = []
        for part in parts:
            if any(c in part for c in "*?["):
                break
            literal.append(part)
        if len(literal) == len(parts):
            literal = literal[:-1] if len(parts) > 1 else literal
        roots.add(os.path.join(base, *literal) if literal else base)
    return roots


def file_digest(path: Path | str) -> str:
    hasher = blake3.blake3()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            hasher.update(chunk)
    return hasher.hexdigest()


def outputs_current(task: Task, root: Path, meta: dict[str, Any]) -> bool:
    """Whether the outputs on disk already equal the entry's (stat first, then digest)."""
    return compare_outputs(task, root, meta) is True


def compare_outputs(task: Task, root: Path, meta: dict[str, Any]) -> bool | None:
    """True when the outputs on disk equal the entry's (stat first, then digest), False when
    they differ, None when they may: the same files, types, sizes and link targets, but a
    file whose mtime differs has no digest in ``meta`` to compare with (the listing at the
    head of an archive: its digests come last)."""
    recorded: dict[str, Any] = meta.get("outputs", {})
    cut = len(str(root)) + 1
    on_disk = {path[cut:]: path for path in output_paths(task)}
    if on_disk.keys() != recorded.keys():
        return False
    undecided = False
    for name, entry in recorded.items():
        path = on_disk[name]
        try:
            st = os.lstat(path)
        except OSError:
            return False
        if entry.get("type") == "symlink":
            if not stat.S_ISLNK(st.st_mode) or os.readlink(path) != entry.get("target"):
                return False
            continue
        if not stat.S_ISREG(st.st_mode) or st.st_size != entry.get("size"):
            return False
        if st.st_mtime_ns != entry.get("mtime_ns"):
            digest = entry.get("digest")
            if digest is None:
                undecided = True
            elif file_digest(path) != digest:
                return False
    return None if undecided else True
