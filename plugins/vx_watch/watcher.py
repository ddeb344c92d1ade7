"""One watcher for the workspace, and one notion of "what changed".

:class:`WorkspaceWatcher` watches the workspace root with watchfiles (no polling loop of our
own), drops the paths no task can depend on (:class:`ChangeFilter`) and debounces: a burst
of saves comes out as one :class:`ChangeSet`. ``vx watch`` uses it; a warm server would use
the same class, so both agree on what changed.

Events only say *that* something may have changed. Which tasks must run again is decided by
recomputing task keys from the files on disk (``vx.plan_run``) and comparing them with the
keys of the last run: a missed or spurious event can cost a re-plan, never a stale answer.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

    from vx import Workspace

__all__ = ["ChangeFilter", "ChangeSet", "WorkspaceWatcher"]

#: Directories never watched (version control, vx's own state, tool caches, environments).
IGNORED_DIRS = frozenset(
    {
        ".git",
        ".hg",
        ".svn",
        ".vx",
        "__pycache__",
        ".pytest_cache",
        ".mypy_cache",
        ".ruff_cache",
        ".hypothesis",
        ".tox",
        ".nox",
        ".venv",
        "node_modules",
        ".idea",
    }
)
#: Editor and bytecode files never watched (suffixes, and prefixes of the file name).
IGNORED_SUFFIXES = (".pyc", ".pyo", ".pyd", ".swp", ".swx", ".swo", "~", ".tmp")
IGNORED_PREFIXES = (".#", "flycheck_")
#: Files whose change means the workspace configuration must be read again.
CONFIG_FILES = frozenset({"pyproject.toml"})


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Paths (relative to the workspace root, POSIX) that changed during one debounced burst."""

    paths: frozenset[str]
    config_changed: bool = False
    """A ``pyproject.toml`` changed: read the configuration again before planning."""

    def describe(self, limit: int = 3) -> str:
        """``a.py, b.py (+3 more)``."""
        ordered = sorted(self.paths)
        shown = ", ".join(ordered[:limit])
        return shown + (f" (+{len(ordered) - limit} more)" if len(ordered) > limit else "")


@dataclass(slots=True)
class ChangeFilter:
    """Which changed paths can matter: not ignored directories or editor files, not inside a
    cache directory (``CACHEDIR.TAG``), not a declared output of a task of the project holding
    it, not git-ignored (``.gitignore`` files from the root down), not matched by the extra
    ``ignore`` patterns (root-relative)."""

    root: Path
    ignore: tuple[str, ...] = ()
    _outputs: dict[str, GitIgnoreSpec] = field(default_factory=dict)
    """Project relpath (``""`` for the root) -> its tasks' ``outputs`` patterns."""
    _gitignores: dict[str, GitIgnoreSpec | None] = field(default_factory=dict)
    _cache_dirs: dict[str, bool] = field(default_factory=dict)
    _extra: GitIgnoreSpec | None = None

    def __post_init__(self) -> None:
        self._extra = _spec(self.ignore) if self.ignore else None

    def update(self, workspace: Workspace) -> None:
        """Learn the projects and their declared outputs (after each successful plan)."""
        self._outputs = {}
        for project in workspace.projects.values():
            patterns = [p for task in project.tasks.values() for p in task.outputs]
            if patterns:
                self._outputs["" if project.relpath == "." else project.relpath] = _spec(patterns)

    def relative(self, path: str) -> str | None:
        """``path`` relative to the root (POSIX), or None when it is outside."""
        try:
            relative = Path(path).relative_to(self.root)
        except ValueError:
            return None
        text = relative.as_posix()
        return None if text == "." else text

    def __call__(self, path: str) -> bool:
        """Whether a change of absolute ``path`` can matter to a task."""
        relative = self.relative(path)
        if relative is None:
            return False
        parts = relative.split("/")
        name = parts[-1]
        if any(part in IGNORED_DIRS or part.endswith(".egg-info") for part in parts):
            return False
        if name.endswith(IGNORED_SUFFIXES) or name.startswith(IGNORED_PREFIXES):
            return False
        if name == ".gitignore":
            self._gitignores.pop(relative.rpartition("/")[0], None)
            return True
        if name == "CACHEDIR.TAG":
            self._cache_dirs.pop(relative.rpartition("/")[0], None)
        last = len(parts) + 1 if os.path.isdir(path) else len(parts)
        if any(self._is_cache_dir("/".join(parts[:depth])) for depth in range(1, last)):
            return False
        # A directory (or a deleted path, which may have been one) is also tried as ``dir/``.
        maybe_dir = os.path.isdir(path) or not os.path.lexists(path)
        for candidate in (relative, relative + "/") if maybe_dir else (relative,):
            if self._extra is not None and self._extra.match_file(candidate):
                return False
            if self._is_output(candidate) or self._git_ignored(candidate):
                return False
        return True

    def _is_output(self, relative: str) -> bool:
        owner = ""
        for prefix in self._outputs:
            if prefix and relative.startswith(prefix + "/") and len(prefix) > len(owner):
                owner = prefix
        spec = self._outputs.get(owner)
        if spec is None:
            return False
        return spec.match_file(relative[len(owner) + 1 :] if owner else relative)

    def _is_cache_dir(self, directory: str) -> bool:
        """A directory tagged with a ``CACHEDIR.TAG`` (a cache directory, like vx's own)."""
        tagged = self._cache_dirs.get(directory)
        if tagged is None:
            import vx

            signature = vx.CACHEDIR_TAG_SIGNATURE
            try:
                with open(self.root / directory / "CACHEDIR.TAG", "rb") as handle:
                    tagged = handle.read(len(signature)) == signature
            except OSError:
                tagged = False
            self._cache_dirs[directory] = tagged
        return tagged

    def _git_ignored(self, relative: str) -> bool:
        trailing = "/" if relative.endswith("/") else ""
        parts = relative.rstrip("/").split("/")
        for depth in range(len(parts)):
            directory = "/".join(parts[:depth])
            spec = self._gitignore(directory)
            if spec is not None and spec.match_file("/".join(parts[depth:]) + trailing):
                return True
        return False

    def _gitignore(self, directory: str) -> GitIgnoreSpec | None:
        if directory not in self._gitignores:
            file = self.root / directory / ".gitignore"
            try:
                lines = file.read_text().splitlines()
            except (OSError, UnicodeDecodeError):
                self._gitignores[directory] = None
            else:
                self._gitignores[directory] = _spec(lines)
        return self._gitignores[directory]


def _spec(lines: Iterable[str]) -> GitIgnoreSpec:
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(list(lines))


class WorkspaceWatcher:
    """Watches ``root`` recursively; :meth:`next` returns the next debounced :class:`ChangeSet`.

    Changes are collected from :meth:`start` on, also while the caller is busy (a run in
    progress): they come out together as the next change set. ``debounce`` is the quiet
    time, in seconds, that ends a burst.
    """

    def __init__(self, root: Path, change_filter: ChangeFilter, *, debounce: float) -> None:
        self.root = root
        self.filter = change_filter
        self.debounce = debounce
        self._queue: asyncio.Queue[set[str]] = asyncio.Queue()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()

    async def start(self) -> None:
        """Start watching; returns once the watcher is installed."""
        self._task = asyncio.create_task(self._watch())
        waiter = asyncio.ensure_future(self._ready.wait())
        await asyncio.wait([waiter, self._task], return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            waiter.cancel()
            self._task.result()  # re-raise why watching could not start

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        import watchfiles

        def keep(change: watchfiles.Change, path: str) -> bool:
            return self.filter(path)

        watching = watchfiles.awatch(
            self.root,
            watch_filter=keep,
            debounce=1600,
            step=50,
            stop_event=self._stop,
            rust_timeout=500,
            yield_on_timeout=True,
        )
        async for changes in watching:
            # The first (empty, timed-out) batch means the watcher is installed.
            self._ready.set()
            if changes:
                self._queue.put_nowait({path for _, path in changes})

    async def next(self) -> ChangeSet:
        """Wait for a change, then until ``debounce`` seconds pass without another."""
        paths = set(await self._queue.get())
        while True:
            try:
                more = await asyncio.wait_for(self._queue.get(), self.debounce)
            except TimeoutError:
                break
            paths |= more
        while not self._queue.empty():
            paths |= self._queue.get_nowait()
        relative = {r for p in paths if (r := self.filter.relative(p)) is not None}
        config = any(os.path.basename(p) in CONFIG_FILES for p in relative)
        return ChangeSet(frozenset(relative), config_changed=config)
