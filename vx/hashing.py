"""Task keys: blake3 digests over a canonical manifest of everything that can change a result.

The manifest (kept with each cache entry, shown by ``--dry=json`` and ``vx why``) holds:
the cache-format version, the task definition, declared env values (as digests only), the
content digests of its inputs and of ``global_inputs``, the keys of its dependencies, and
components contributed by plugins through ``vx_task_hash_components``.
"""

from __future__ import annotations

import json
import marshal
import os
import posixpath
import re
import stat
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from vx.environment import resolve_env_names
from vx.errors import ConfigError
from vx.globs import GlobSet, globs
from vx.statedir import make_dirs

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

    from vx.graph import Task, TaskGraph
    from vx.workspace import Project, Workspace

__all__ = [
    "CACHEDIR_TAG_SIGNATURE",
    "CACHE_FORMAT",
    "IGNORED_DIRS",
    "IGNORED_FILES",
    "FileHasher",
    "FileLister",
    "KeyBuilder",
    "digest_text",
]

#: Bump when the manifest layout or artifact format changes: every key changes with it.
CACHE_FORMAT = 2

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


#: Files at least this big are hashed in worker threads.
_PARALLEL_SIZE = 256 * 1024

#: Files modified this recently are re-read even when their stat matches (racy mtime).
_RACY_SECONDS = 2.0


def manifest_key(manifest: Mapping[str, Any]) -> str:
    """blake3 of the manifest's canonical form: the manifest without ``inputs`` as JSON with
    sorted keys, then one ``path NUL digest`` line per input file in path order."""
    header = {key: value for key, value in manifest.items() if key != "inputs"}
    hasher = blake3.blake3(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    inputs: Mapping[str, str] = manifest["inputs"]
    hasher.update("".join(f"\n{path}\0{inputs[path]}" for path in sorted(inputs)).encode())
    return hasher.hexdigest()


def digest_text(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return blake3.blake3(data).hexdigest()


class FileHasher:
    """Content digests with a persistent stat cache (path -> size, mtime, inode, ctime ->
    digest). ctime catches an edit whose size and mtime were put back (``touch -d``)."""

    def __init__(self, cache_file: Path | None) -> None:
        self.cache_file = cache_file
        self._cache: dict[str, tuple[int, int, int, int, str]] = {}
        self._dirty = False
        self._started = time.time()
        if cache_file is not None:
            try:
                loaded = marshal.loads(cache_file.read_bytes())
                if isinstance(loaded, dict):
                    self._cache = loaded
            except (OSError, EOFError, ValueError, TypeError):
                self._cache = {}

    def digests(self, paths: Iterable[str]) -> dict[str, str | None]:
        """Digest of each absolute path (None if it does not exist or is a directory);
        unchanged files are not re-read."""
        result: dict[str, str | None] = {}
        todo: list[tuple[str, os.stat_result]] = []
        lstat, cache = os.lstat, self._cache
        for path in paths:
            try:
                st = lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                result[path] = None
                continue
            if stat.S_ISDIR(st.st_mode):
                result[path] = None
                continue
            cached = cache.get(path)
            if cached and cached[:4] == (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns):
                result[path] = cached[4]
            else:
                todo.append((path, st))
        # Small files are cheaper to hash inline than to hand to a thread; large ones are
        # hashed in parallel (blake3 releases the GIL).
        large = [item for item in todo if item[1].st_size >= _PARALLEL_SIZE]
        for item in todo:
            if item[1].st_size < _PARALLEL_SIZE:
                result[item[0]] = self._digest_one(item)
        if len(large) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
                for (path, _), digest in zip(large, pool.map(self._digest_one, large), strict=True):
                    result[path] = digest
        else:
            result.update((path, self._digest_one((path, st))) for path, st in large)
        return result

    def _digest_one(self, item: tuple[str, os.stat_result]) -> str:
        path, st = item
        if stat.S_ISLNK(st.st_mode):
            digest = "symlink:" + digest_text(os.readlink(path))
        else:
            hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if st.st_size > 1 << 22 else 1)
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    hasher.update(chunk)
            digest = hasher.hexdigest()
        if max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 < self._started - _RACY_SECONDS:
            entry = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, digest)
            self._cache[path] = entry
            self._dirty = True
        return digest

    def save(self) -> None:
        """Persist the stat cache atomically (best effort)."""
        if self.cache_file is None or not self._dirty:
            return
        try:
            make_dirs(self.cache_file.parent)
            temporary = self.cache_file.with_name(f".{self.cache_file.name}.{os.getpid()}.tmp")
            temporary.write_bytes(marshal.dumps(self._cache))
            os.replace(temporary, self.cache_file)
            self._dirty = False
        except OSError:
            pass


_GIT_LS_FILES = ("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
_prefetched: dict[Path, Any] = {}


def prefetch_listing(root: Path) -> None:
    """Start ``git ls-files`` for ``root`` in the background (vx then loads plugins and the
    workspace while git lists files); :class:`FileLister` collects the result."""
    if os.environ.get("VX_NO_GIT_LISTING") or root in _prefetched:
        return
    import subprocess

    try:
        _prefetched[root] = subprocess.Popen(
            _GIT_LS_FILES,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return


def _git_ls_files(root: Path) -> bytes | None:
    """Every non-ignored file under ``root`` per git (NUL-separated), or None outside a git
    work tree."""
    if os.environ.get("VX_NO_GIT_LISTING"):
        return None
    import subprocess

    process = _prefetched.pop(root, None)
    try:
        if process is None:
            process = subprocess.Popen(
                _GIT_LS_FILES,
                cwd=root,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        output, _ = process.communicate()
    except OSError:
        return None
    return output if process.returncode == 0 else None


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
        output = _git_ls_files(self.workspace.root)
        if output is None:
            return None
        names = [n for n in output.decode(errors="surrogateescape").split("\0") if n]
        projects = {
            ("" if p.relpath == "." else p.relpath): p.relpath
            for p in self.workspace.projects.values()
        }
        projects.setdefault("", ".")  # files of no member project (for global_inputs)
        listing: dict[str, list[str]] = {relpath: [] for relpath in projects.values()}
        cache_dirs = {
            name[: -len("/CACHEDIR.TAG")]
            for name in names
            if name.endswith("/CACHEDIR.TAG")
            and _is_cache_dir(self.workspace.root / name[: -len("/CACHEDIR.TAG")])
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
                if path in self._project_dirs or _is_cache_dir(path):
                    continue
                self._walk(base, path, ignores, out)
            else:
                out.append(relative)


#: First bytes of a ``CACHEDIR.TAG`` file (https://bford.info/cachedir/); the local cache
#: writes one, so a cache directory inside a project is never one of its inputs.
CACHEDIR_TAG_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


def _is_cache_dir(directory: Path) -> bool:
    try:
        with open(directory / "CACHEDIR.TAG", "rb") as handle:
            return handle.read(len(CACHEDIR_TAG_SIGNATURE)) == CACHEDIR_TAG_SIGNATURE
    except OSError:
        return False


def _gitignore(directory: Path) -> GitIgnoreSpec | None:
    file = directory / ".gitignore"
    try:
        lines = file.read_text().splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return None
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


def output_globs(task: Task) -> GlobSet:
    """The task's ``outputs`` globs, relative to its project."""
    return globs(task.definition.outputs)


def _relative_cwd(task: Task) -> str:
    """The task's working directory relative to the workspace root (POSIX)."""
    project = "." if task.project.relpath == "." else task.project.relpath
    cwd = task.definition.cwd
    return project if cwd == "." else posixpath.normpath(f"{project}/{cwd}")


def _prefix(project: Project) -> str:
    """The project's directory relative to the workspace root, as a path prefix."""
    return "" if project.relpath == "." else project.relpath + "/"


class KeyBuilder:
    """Computes manifests and keys for every task of a graph, dependencies first."""

    def __init__(
        self,
        graph: TaskGraph,
        hasher: FileHasher,
        plugin_components: Mapping[str, Mapping[str, str | bytes]],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.graph = graph
        self.workspace = graph.workspace
        self.hasher = hasher
        self.plugin_components = plugin_components
        self.environ = os.environ if environ is None else environ
        self.lister = FileLister(self.workspace)
        self.manifests: dict[str, dict[str, Any]] = {}
        self._selected: dict[tuple[str, tuple[str, ...]], list[str]] = {}
        self._own_inputs: dict[tuple[str, tuple[str, ...] | None, tuple[str, ...]], list[str]] = {}

    def compute(self) -> dict[str, str]:
        """Fill ``task.hash`` for every task; returns ``{task_id: key}``."""
        root = str(self.workspace.root) + os.sep
        global_inputs = self._global_inputs()
        global_env = self._env_digests(self.workspace.global_env)
        inputs_by_task = {task.id: self._input_paths(task) for task in self.graph}
        every_path = {p for paths in inputs_by_task.values() for p in paths}
        digests = self.hasher.digests([root + p for p in sorted(every_path)])
        keys: dict[str, str] = {}
        for task in self.graph:
            definition = task.definition
            inputs: dict[str, str] = {}
            for path in inputs_by_task[task.id]:
                digest = digests[root + path]
                if digest is not None:
                    inputs[path] = digest
            manifest: dict[str, Any] = {
                "format": CACHE_FORMAT,
                "task": {
                    "id": task.id,
                    "command": task.command,
                    "cwd": _relative_cwd(task),
                    "outputs": list(definition.outputs),
                    "inputs": list(definition.inputs) if definition.inputs is not None else None,
                    "env": list(definition.env),
                },
                "env": self._env_digests(definition.env),
                "global_env": global_env,
                "global_inputs": global_inputs,
                "inputs": inputs,
                "dependencies": {dep: keys[dep] for dep in sorted(task.dependencies)},
                "plugins": {
                    name: value if isinstance(value, str) else digest_text(value)
                    for name, value in sorted(self.plugin_components.get(task.id, {}).items())
                },
            }
            key = manifest_key(manifest)
            task.hash = key
            keys[task.id] = key
            self.manifests[task.id] = manifest
        self.hasher.save()
        return keys

    def _env_digests(self, patterns: Iterable[str]) -> dict[str, str | None]:
        names = resolve_env_names(patterns, self.environ)
        digests: dict[str, str | None] = {name: digest_text(self.environ[name]) for name in names}
        for pattern in patterns:
            if not any(c in pattern for c in "*?[") and pattern not in digests:
                digests[pattern] = None
        return dict(sorted(digests.items()))

    def _global_inputs(self) -> dict[str, str | None]:
        if not self.workspace.global_inputs:
            return {}
        root = str(self.workspace.root) + os.sep
        spec = globs(self.workspace.global_inputs)
        literal = [p for p in self.workspace.global_inputs if not any(c in p for c in "*?[!")]
        root_project = next((p for p in self.workspace.projects.values() if p.relpath == "."), None)
        candidates = self.lister.files(root_project or self._root_project())
        matched = sorted({*literal, *spec.filter(candidates)})
        digests = self.hasher.digests([root + name for name in matched])
        return {name: digests[root + name] for name in matched}

    def _root_project(self) -> Project:
        """A stand-in for the workspace root when it declares no tasks itself."""
        from vx.workspace import ROOT_PROJECT, Project

        return Project(
            name=ROOT_PROJECT,
            path=self.workspace.root,
            relpath=".",
        )

    def _matching(self, project: Project, patterns: tuple[str, ...], task: Task) -> list[str]:
        """Files of ``project`` (project-relative) matching ``patterns`` (memoized)."""
        memo = (project.name, patterns)
        selected = self._selected.get(memo)
        if selected is None:
            try:
                selected = globs(patterns).filter(self.lister.files(project))
            except ValueError as exc:
                raise ConfigError(
                    f"invalid inputs glob: {exc}",
                    file=str(task.project.pyproject),
                    key=f"tool.vx.tasks.{task.name}.inputs",
                ) from None
            self._selected[memo] = selected
        return selected

    def _input_paths(self, task: Task) -> list[str]:
        """Workspace-relative input paths. Default inputs exclude every declared output of the
        project's tasks (a function of their producer's key); explicit inputs exclude the
        task's own outputs."""
        definition = task.definition
        project = task.project
        own: tuple[str, ...] | None = None
        upstream: list[str] = []
        if definition.inputs is None:
            excluded = tuple(o for t in project.tasks.values() for o in t.outputs)
        else:
            excluded = definition.outputs
            upstream = [p[1:] for p in definition.inputs if p.startswith("^")]
            own = tuple(p for p in definition.inputs if not p.startswith("^"))
        memo = (project.name, own, excluded)
        paths = self._own_inputs.get(memo)
        if paths is None:
            if own is None:
                files = self.lister.files(project)
            else:
                files = self._matching(project, own, task) if own else []
            if excluded:
                outputs = globs(excluded)
                files = [name for name in files if not outputs.match(name)]
            prefix = _prefix(project)
            paths = self._own_inputs[memo] = [prefix + name for name in files]
        paths = list(paths)
        if upstream:
            patterns = tuple(upstream)
            for dependency in self._transitive_projects(project):
                dep_prefix = _prefix(dependency)
                paths.extend(dep_prefix + n for n in self._matching(dependency, patterns, task))
        return paths

    def _transitive_projects(self, project: Project) -> list[Project]:
        seen: dict[str, Project] = {}
        stack = list(project.dependencies)
        while stack:
            name = stack.pop()
            if name not in seen:
                seen[name] = self.workspace.projects[name]
                stack.extend(seen[name].dependencies)
        return [seen[name] for name in sorted(seen)]
