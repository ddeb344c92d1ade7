"""Which files a project has: git's listing when the workspace is a git work tree, else a
walk honouring ``.gitignore`` files; never :data:`IGNORED_DIRS`, :data:`IGNORED_FILES`, nested
projects or tagged cache directories."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from vx import gitfiles
from vx.cachedir import CACHEDIR_TAG, is_cache_dir
from vx.gitfiles import git_ls_files

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

    from vx.workspace import Project, Workspace

__all__ = ["IGNORED_DIRS", "IGNORED_FILES", "FileLister", "default_ignored"]

#: Never inputs, even without a .gitignore (bytecode and tool caches would defeat the cache).
IGNORED_DIRS = (
    ".git",
    ".vx",
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    ".tox",
    ".nox",
    ".venv",
    "node_modules",
    "*.egg-info",
)
IGNORED_FILES = ("*.pyc", "*.pyo", "*.pyd", ".DS_Store")
_DEFAULT_IGNORED = re.compile(
    "(?:^|/)(?:"
    + "|".join(re.escape(d).replace(r"\*", "[^/]*") for d in IGNORED_DIRS)
    + ")/|(?:^|/)(?:"
    + "|".join(re.escape(f).replace(r"\*", "[^/]*") for f in IGNORED_FILES)
    + ")$"
)


def default_ignored(relative: str) -> bool:
    """Whether a POSIX path (directories with a trailing ``/``) is always ignored."""
    return _DEFAULT_IGNORED.search(relative) is not None


_TAG_SUFFIX = "/" + CACHEDIR_TAG


class FileLister:
    """Lists a project's files, honouring .gitignore files, :data:`IGNORED_DIRS` and
    :data:`IGNORED_FILES`."""

    def __init__(self, workspace: Workspace) -> None:
        self.workspace = workspace
        self._listing: dict[Path, list[str]] = {}
        self._project_dirs = {p.path for p in workspace.projects.values()}
        self._git: dict[str, list[str]] | None = None
        self._git_tried = False
        self._root_ignores_cache: list[tuple[Path, GitIgnoreSpec]] | None = None

    @property
    def _root_ignores(self) -> list[tuple[Path, GitIgnoreSpec]]:
        if self._root_ignores_cache is None:
            self._root_ignores_cache = self._ignores_above(self.workspace.root)
        return self._root_ignores_cache

    def _git_listing(self) -> dict[str, list[str]] | None:
        """Every project's files from one ``git ls-files`` (tracked and untracked, git's ignore
        rules applied), or None outside a git work tree."""
        if self._git_tried:
            return self._git
        self._git_tried = True
        output = git_ls_files(self.workspace.root)
        if output is None:
            return None
        projects = {
            ("" if p.relpath == "." else p.relpath): p.relpath
            for p in self.workspace.projects.values()
        }
        projects.setdefault("", ".")  # files of no member project (for global_inputs)
        # The warm server keeps the split of a listing it kept, per project set.
        kept = gitfiles.memo
        memo_key = tuple(sorted(projects.items()))
        if kept is not None and kept.git_listing(self.workspace.root) is output:
            self._git = kept.parsed.get(memo_key)
            if self._git is not None:
                return self._git
        names = [n for n in output.decode(errors="surrogateescape").split("\0") if n]
        listing: dict[str, list[str]] = {relpath: [] for relpath in projects.values()}
        cache_dirs = {
            name[: -len(_TAG_SUFFIX)]
            for name in names
            if name.endswith(_TAG_SUFFIX)
            and is_cache_dir(self.workspace.root / name[: -len(_TAG_SUFFIX)])
        }
        # Files come grouped by directory: decide once per directory who owns it (the
        # innermost project) and whether it is ignored, then only look at the file name.
        owners: dict[str, tuple[str, int] | None] = {}
        for name in sorted(set(names)):
            if name.endswith("/"):
                continue
            directory, _, filename = name.rpartition("/")
            if directory not in owners:
                owners[directory] = self._owner(directory, projects, cache_dirs)
            owner = owners[directory]
            if owner is None or _DEFAULT_IGNORED.search(filename):
                continue
            listing[owner[0]].append(name[owner[1] :])
        self._git = listing
        if kept is not None and kept.git_listing(self.workspace.root) is output:
            kept.parsed[memo_key] = listing
        return listing

    @staticmethod
    def _owner(
        directory: str, projects: dict[str, str], cache_dirs: set[str]
    ) -> tuple[str, int] | None:
        """``(project relpath, prefix length to strip)`` for files in ``directory``, or None
        when the directory is ignored."""
        if directory and default_ignored(directory + "/"):
            return None
        while True:
            if directory in cache_dirs:
                return None
            owner = projects.get(directory)
            if owner is not None:
                return owner, len(directory) + 1 if directory else 0
            if not directory:
                return None
            directory = directory.rpartition("/")[0]

    def _ignores_above(self, root: Path) -> list[tuple[Path, GitIgnoreSpec]]:
        """.gitignore files from the git top level (or the workspace root) down to ``root``."""
        specs: list[tuple[Path, GitIgnoreSpec]] = []
        chain = [root]
        for parent in root.parents:
            if (chain[-1] / ".git").exists():
                break
            chain.append(parent)
        if not (chain[-1] / ".git").exists():
            chain = [root]
        for directory in reversed(chain):
            spec = _gitignore(directory)
            if spec is not None:
                specs.append((directory, spec))
        return specs

    def files(self, project: Project) -> list[str]:
        """Project files relative to the project directory (POSIX), sorted; nested projects
        and ignored files excluded."""
        git = self._git_listing()
        if git is not None:
            return git.get(project.relpath, [])
        listing = self._listing.get(project.path)
        if listing is None:
            ignores = list(self._root_ignores)
            relative = project.path.relative_to(self.workspace.root)
            # The .gitignore files between the root and the project, and the project's own.
            for parent in [*reversed(relative.parents), relative]:
                directory = self.workspace.root / parent
                if directory != self.workspace.root:
                    spec = _gitignore(directory)
                    if spec is not None:
                        ignores.append((directory, spec))
            listing = []
            self._walk(project.path, project.path, ignores, listing)
            listing.sort()
            self._listing[project.path] = listing
        return listing

    def _walk(
        self,
        base: Path,
        directory: Path,
        ignores: list[tuple[Path, GitIgnoreSpec]],
        out: list[str],
    ) -> None:
        if directory != base:
            spec = _gitignore(directory)
            if spec is not None:
                ignores = [*ignores, (directory, spec)]
        try:
            entries = list(os.scandir(directory))
        except OSError:
            return
        for entry in entries:
            path = Path(entry.path)
            is_dir = entry.is_dir(follow_symlinks=False)
            relative = path.relative_to(base).as_posix() + ("/" if is_dir else "")
            if default_ignored(relative) or _ignored(path, is_dir, ignores):
                continue
            if is_dir:
                if path in self._project_dirs or is_cache_dir(path):
                    continue
                self._walk(base, path, ignores, out)
            else:
                out.append(relative)


def _gitignore(directory: Path) -> GitIgnoreSpec | None:
    file = directory / ".gitignore"
    try:
        lines = file.read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    import pathspec

    return pathspec.GitIgnoreSpec.from_lines(lines)


def _ignored(path: Path, is_dir: bool, ignores: list[tuple[Path, GitIgnoreSpec]]) -> bool:
    for directory, spec in ignores:
        relative = path.relative_to(directory).as_posix() + ("/" if is_dir else "")
        if spec.match_file(relative):
            return True
    return False
