"""A task's sandbox policy, derived from what vx already knows about it.

Two views of one policy: *areas* (directories and files, what a backend can enforce cheaply)
and *exact* checks (the declared globs, what audit mode and denial reports compare against).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pathspec

    from vx import Project, Task, TaskGraph

__all__ = ["SYSTEM_READ", "Policy", "PolicyError", "build_policy", "static_prefix"]

#: Read by every task: system programs, libraries, configuration, devices, /proc.
SYSTEM_READ = (
    "/usr",
    "/bin",
    "/sbin",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/etc",
    "/opt",
    "/dev",
    "/proc",
    "/sys",
)
#: Device files every task may write.
DEVICE_WRITE = ("/dev/null", "/dev/zero", "/dev/full", "/dev/tty")

_GLOB_CHARS = frozenset("*?[")


class PolicyError(Exception):
    """A declaration that cannot be enforced (named by its TOML key)."""

    def __init__(self, message: str, key: str) -> None:
        super().__init__(message)
        self.key = key


def static_prefix(pattern: str) -> tuple[str, bool]:
    """``(path, literal)``: the directory a glob cannot leave, or the literal path itself.

    ``dist/**`` -> ``("dist", False)``, ``coverage.xml`` -> ``("coverage.xml", True)``,
    ``**/*.py`` -> ``("", False)``.
    """
    body = pattern.lstrip("/")
    parts = body.split("/")
    kept: list[str] = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            return "/".join(kept), False
        kept.append(part)
    if body.endswith("/"):
        return body.rstrip("/"), False
    return body, True


@cache
def _spec(patterns: tuple[str, ...]) -> pathspec.PathSpec[Any]:
    import pathspec

    return pathspec.PathSpec.from_lines("gitignore", patterns)


def _matches(patterns: tuple[str, ...], relative: str) -> bool:
    return bool(patterns) and _spec(patterns).match_file(relative)


def _inside(path: str, base: str) -> str | None:
    """``path`` relative to ``base`` (``""`` for ``base`` itself), or None when outside."""
    if path == base:
        return ""
    prefix = base if base.endswith("/") else base + "/"
    return path[len(prefix) :] if path.startswith(prefix) else None


def _under_any(path: str, bases: Iterable[str]) -> bool:
    return any(_inside(path, base) is not None for base in bases)


@dataclass
class Policy:
    """What one task may read, write and reach."""

    task_id: str
    project_dir: str
    network: bool | str
    tmp_base: str
    """The task's private directory (``TMPDIR`` is ``<tmp_base>/tmp``)."""
    read: list[str] = field(default_factory=list)
    """Absolute directories and files readable (enforced per area)."""
    write: list[str] = field(default_factory=list)
    """Absolute directories and files writable (and readable)."""
    listable: list[str] = field(default_factory=list)
    """Directories whose entries may be listed (the project and working directory)."""
    output_dirs: list[str] = field(default_factory=list)
    """Output directories to create before the task runs (removed again when left empty)."""
    output_files: list[str] = field(default_factory=list)
    """Literal output files to create empty before the task runs (removed when unused)."""
    # The exact declarations (audit mode and reports):
    own_inputs: tuple[str, ...] | None = None
    own_outputs: tuple[str, ...] = ()
    upstream: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    root: str = ""
    global_inputs: tuple[str, ...] = ()
    root_inputs: tuple[str, ...] = ()
    """The task's ``//`` inputs (root-relative, without the prefix)."""
    member_dirs: tuple[str, ...] = ()
    """Every member project's directory (a root file is in none of them)."""
    dependency_outputs: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    toolchain: list[str] = field(default_factory=list)
    extra_read: list[str] = field(default_factory=list)
    extra_write: list[str] = field(default_factory=list)

    def may_read(self, path: str) -> bool:
        """Whether the declarations allow reading ``path`` (absolute, resolved)."""
        if self.may_write(path) or _under_any(path, (*SYSTEM_READ, *self.toolchain)):
            return True
        if _under_any(path, self.extra_read):
            return True
        relative = _inside(path, self.project_dir)
        if relative is not None and (
            self.own_inputs is None
            or _matches(self.own_inputs, relative)
            or _matches(self.own_outputs, relative)
        ):
            return True
        for directory, patterns in (*self.upstream, *self.dependency_outputs):
            relative = _inside(path, directory)
            if relative is not None and _matches(patterns, relative):
                return True
        relative = _inside(path, self.root)
        return relative is not None and _matches((*self.global_inputs, *self.root_inputs), relative)

    def may_write(self, path: str) -> bool:
        """Whether the declarations allow writing ``path`` (absolute, resolved)."""
        if path in DEVICE_WRITE or _under_any(path, (self.tmp_base, *self.extra_write)):
            return True
        relative = _inside(path, self.project_dir)
        if relative is None:
            return False
        if _matches(self.own_outputs, relative):
            return True
        # Creating an output directory itself (``mkdir -p dist``).
        return any(
            _inside(os.path.join(self.project_dir, d), path) is not None
            for d in (static_prefix(p)[0] for p in self.own_outputs if not p.startswith("!"))
            if d
        )


def _resolve(base: str, relative: str) -> str:
    return os.path.normpath(os.path.join(base, relative))


def _toolchain(env: Mapping[str, str]) -> list[str]:
    """Interpreter prefixes and PATH directories (with their virtualenvs) a task runs with."""
    home = env.get("HOME", "")
    found: dict[str, None] = {}
    for prefix in (sys.prefix, sys.base_prefix, sys.exec_prefix, env.get("VIRTUAL_ENV", "")):
        if prefix and os.path.isabs(prefix):
            found[os.path.normpath(prefix)] = None
    for entry in env.get("PATH", "").split(os.pathsep):
        if not entry or not os.path.isabs(entry):
            continue
        entry = os.path.normpath(entry)
        if entry in ("/", home) or not os.path.isdir(entry):
            continue
        parent = os.path.dirname(entry)
        config = os.path.join(parent, "pyvenv.cfg")
        if os.path.isfile(config):
            found[parent] = None
            found.update(dict.fromkeys(_venv_home(config)))
        elif os.path.basename(entry) == "shims" and parent not in ("/", home):
            found[parent] = None  # pyenv/asdf-style shims run the tool manager's own tree
        else:
            found[entry] = None
    resolved: dict[str, None] = {}
    for path in found:
        resolved[path] = None
        resolved[os.path.realpath(path)] = None
    return list(resolved)


def _venv_home(config: str) -> list[str]:
    """The base interpreter's prefix named by a virtualenv's ``pyvenv.cfg``."""
    try:
        lines = Path(config).read_text().splitlines()
    except OSError:
        return []
    for line in lines:
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            return [os.path.dirname(os.path.realpath(value.strip()))]
    return []


def _extra(patterns: Iterable[str], base: str) -> list[str]:
    """Absolute areas of ``read``/``write`` entries (a glob grants its directory)."""
    return [
        os.path.normpath("/" + static_prefix(p)[0])
        if os.path.isabs(p)
        else _resolve(base, static_prefix(p)[0])
        for p in patterns
    ]


def _task_table(task: Task) -> Any:
    return task.definition.plugin_settings.get("sandbox")


def build_policy(
    task: Task,
    graph: TaskGraph,
    settings: Any,
    env: Mapping[str, str],
    tmp_base: str,
) -> Policy:
    """The policy of ``task`` under the ``[tool.vx.sandbox]`` ``settings``."""
    project = task.project
    project_dir = str(project.path)
    workspace = graph.workspace
    workspace_root = str(workspace.root)
    table = _task_table(task)
    network = settings.network
    if table is not None and table.network is not None:
        network = table.network
    definition = task.definition
    file = f"tool.vx.tasks.{task.name}"
    policy = Policy(
        task_id=task.id,
        project_dir=project_dir,
        network=network,
        tmp_base=tmp_base,
        own_inputs=None
        if definition.inputs is None
        else tuple(p for p in definition.inputs if not p.startswith(("^", "//"))),
        root_inputs=tuple(p[2:] for p in definition.inputs or () if p.startswith("//")),
        own_outputs=tuple(definition.outputs),
        root=workspace_root,
        toolchain=_toolchain(env),
        member_dirs=tuple(str(p.path) for p in workspace.projects.values() if p.relpath != "."),
    )
    # Reads: inputs, ^inputs of every dependency project, global inputs, dependency outputs.
    if policy.own_inputs is None:
        policy.read.append(project_dir)
    else:
        policy.read.extend(_areas(project_dir, policy.own_inputs))
    upstream = tuple(p[1:] for p in definition.inputs or () if p.startswith("^"))
    if upstream:
        for other in _transitive(project, workspace.projects):
            directory = str(other.path)
            policy.upstream.append((directory, upstream))
            policy.read.extend(_areas(directory, upstream))
    policy.global_inputs = tuple(workspace.global_inputs)
    policy.read.extend(_areas(workspace_root, (*policy.global_inputs, *policy.root_inputs)))
    for dependency in _dependency_tasks(task, graph):
        if dependency.definition.outputs:
            directory = str(dependency.project.path)
            policy.dependency_outputs.append((directory, tuple(dependency.definition.outputs)))
            policy.read.extend(_areas(directory, dependency.definition.outputs))
    policy.extra_read = _extra(settings.read, workspace_root)
    policy.extra_write = _extra(settings.write, workspace_root)
    if table is not None:
        policy.extra_read += _extra(table.read, project_dir)
        policy.extra_write += _extra(table.write, project_dir)
    policy.read += [*SYSTEM_READ, *policy.toolchain, *policy.extra_read]
    # Writes: outputs (directories, or literal files), the private tmp, extra writes.
    for index, pattern in enumerate(definition.outputs):
        if pattern.startswith("!"):
            continue
        prefix, literal = static_prefix(pattern)
        target = _resolve(project_dir, prefix)
        if _inside(target, project_dir) in (None, ""):
            raise PolicyError(
                f"output {pattern!r} has no directory of its own inside the project: a "
                "sandboxed task may only write output directories or single files; "
                "put it under a directory (e.g. 'dist/*.whl') or opt the task out with "
                "sandbox = false",
                key=f"{file}.outputs[{index}]",
            )
        (policy.output_files if literal else policy.output_dirs).append(target)
    policy.write += [*policy.output_dirs, *policy.output_files, tmp_base]
    policy.write += [*DEVICE_WRITE, *policy.extra_write]
    policy.listable = sorted({project_dir, str(task.cwd)})
    return policy


def _areas(base: str, patterns: Iterable[str]) -> list[str]:
    """Absolute areas of project-relative globs. A bare file name (which gitignore syntax
    matches at any depth) grants the file in ``base``; ``**/name`` grants all of ``base``."""
    return [
        _resolve(base, static_prefix(pattern)[0])
        for pattern in patterns
        if not pattern.startswith("!")
    ]


def _transitive(project: Project, projects: Mapping[str, Project]) -> list[Project]:
    seen: dict[str, Project] = {}
    stack = list(project.dependencies)
    while stack:
        current = stack.pop()
        if current not in seen and current in projects:
            seen[current] = projects[current]
            stack.extend(projects[current].dependencies)
    return [seen[name] for name in sorted(seen)]


def _dependency_tasks(task: Task, graph: TaskGraph) -> list[Task]:
    seen: dict[str, Task] = {}
    stack = list(task.dependencies)
    while stack:
        current = stack.pop()
        if current not in seen:
            seen[current] = graph[current]
            stack.extend(seen[current].dependencies)
    return list(seen.values())
