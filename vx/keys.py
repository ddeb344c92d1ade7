"""Task keys: blake3 digests over a canonical manifest of everything that can change a result.

The manifest (kept with each cache entry, shown by ``--dry=json`` and ``vx why``) holds:
the cache-format version, the task definition, declared env values (as digests only), the
content digests of its inputs and of ``global_inputs``, the keys of its dependencies, and
components contributed by plugins through ``vx_task_hash_components``.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import blake3

from vx.environment import resolve_env_names
from vx.errors import ConfigError
from vx.filehash import FileHasher, digest_text
from vx.filelist import FileLister
from vx.globs import globs

if TYPE_CHECKING:
    from vx.graph import Task, TaskGraph
    from vx.workspace import Project

__all__ = ["CACHE_FORMAT", "ROOT_INPUT", "KeyBuilder", "manifest_key"]

#: Bump when the manifest layout or artifact format changes: every key changes with it.
CACHE_FORMAT = 3


def manifest_key(manifest: Mapping[str, Any]) -> str:
    """blake3 of the manifest's canonical form: the manifest without ``inputs`` as JSON with
    sorted keys, then one ``path NUL digest`` line per input file in path order."""
    header = {key: value for key, value in manifest.items() if key != "inputs"}
    hasher = blake3.blake3(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
    inputs: Mapping[str, str] = manifest["inputs"]
    hasher.update("".join(f"\n{path}\0{inputs[path]}" for path in sorted(inputs)).encode())
    return hasher.hexdigest()


#: The prefix of an input glob relative to the workspace root (``//pyproject.toml``).
ROOT_INPUT = "//"


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
        self._env_memo: dict[tuple[str, ...], dict[str, str | None]] = {}
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

    def _env_digests(self, patterns: tuple[str, ...]) -> dict[str, str | None]:
        """Digests of the variables ``patterns`` name (memoized: many tasks declare the same
        ``env``; manifests share the result and never modify it)."""
        found = self._env_memo.get(patterns)
        if found is None:
            found = self._env_memo[patterns] = self._resolve_env(patterns)
        return found

    def _resolve_env(self, patterns: Iterable[str]) -> dict[str, str | None]:
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
        rooted: tuple[str, ...] = ()
        if definition.inputs is None:
            excluded = tuple(o for t in project.tasks.values() for o in t.outputs)
        else:
            excluded = definition.outputs
            upstream = [p[1:] for p in definition.inputs if p.startswith("^")]
            rooted = tuple(p[2:] for p in definition.inputs if p.startswith(ROOT_INPUT))
            own = tuple(p for p in definition.inputs if not p.startswith(("^", ROOT_INPUT)))
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
        if upstream or rooted:
            paths = list(paths)  # the memoized list is shared: extend a copy
        if upstream:
            patterns = tuple(upstream)
            for dependency in self._transitive_projects(project):
                dep_prefix = _prefix(dependency)
                paths.extend(dep_prefix + n for n in self._matching(dependency, patterns, task))
        if rooted:
            # Files of the root outside member projects (the root project's own files).
            root = next((p for p in self.workspace.projects.values() if p.relpath == "."), None)
            paths.extend(self._matching(root or self._root_project(), rooted, task))
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
