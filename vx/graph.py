"""The task graph: ``project#task`` nodes and their dependency edges."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from vx.errors import ConfigError, CycleError, UsageError, did_you_mean, some_names
from vx.workspace import Project, TaskDefinition, Workspace, normalize_name

__all__ = ["Task", "TaskGraph", "build_task_graph", "depends_on_origin", "find_cycle", "task_id"]


def task_id(project: str, task: str) -> str:
    return f"{project}#{task}"


@dataclass(eq=False, slots=True)
class Task:
    """One node of the graph: a task of a project, with resolved edges."""

    id: str
    project: Project
    definition: TaskDefinition
    dependencies: list[str] = field(default_factory=list)
    dependents: list[str] = field(default_factory=list)
    hash: str | None = None
    """Cache key, filled in by the cache before the task runs."""

    @property
    def name(self) -> str:
        return self.definition.name

    @property
    def cwd(self) -> Path:
        cwd = self.definition.cwd
        return self.project.path if cwd == "." else Path(os.path.normpath(self.project.path / cwd))

    @property
    def command(self) -> str | list[str] | None:
        cmd = self.definition.cmd
        return list(cmd) if isinstance(cmd, tuple) else cmd


class TaskGraph:
    """Tasks keyed by id, in a deterministic topological order."""

    def __init__(self, workspace: Workspace, tasks: dict[str, Task]) -> None:
        self.workspace = workspace
        self.tasks = tasks

    def __iter__(self) -> Iterator[Task]:
        return iter(self.tasks.values())

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, id: str) -> Task:
        return self.tasks[id]

    def add_dependency(self, task: str, depends_on: str) -> None:
        """Add the edge ``task -> depends_on`` (for ``vx_modify_graph`` implementations)."""
        if depends_on not in self.tasks[task].dependencies:
            self.tasks[task].dependencies.append(depends_on)
            self.tasks[depends_on].dependents.append(task)

    def check_acyclic(self) -> None:
        """Raise :class:`CycleError` naming the cycle ``a#b -> c#d -> a#b``, and the file and
        key where the first task's ``depends_on`` was written (its project's file, or the
        root's ``[tool.vx.defaults]`` template it inherited it from)."""
        cycle = find_cycle({id: task.dependencies for id, task in self.tasks.items()})
        if cycle is not None:
            first = self.tasks[cycle[0]]
            file, key = depends_on_origin(first.project, first.definition)
            raise CycleError("dependency cycle: " + " -> ".join(cycle), file=file, key=key)

    def topological_order(self) -> list[Task]:
        """Dependencies before dependents; ties keep declaration order."""
        indegree = {id: len(task.dependencies) for id, task in self.tasks.items()}
        order: list[Task] = []
        ready = [id for id, degree in indegree.items() if degree == 0]
        while ready:
            next_ready: list[str] = []
            for id in ready:
                order.append(self.tasks[id])
                for dependent in self.tasks[id].dependents:
                    indegree[dependent] -= 1
                    if indegree[dependent] == 0:
                        next_ready.append(dependent)
            ready = next_ready
        return order

    def transitive_dependents(self, id: str) -> set[str]:
        """Every task that (directly or not) waits for ``id``."""
        seen: set[str] = set()
        stack = list(self.tasks[id].dependents)
        while stack:
            node = stack.pop()
            if node not in seen:
                seen.add(node)
                stack.extend(self.tasks[node].dependents)
        return seen


def find_cycle(edges: Mapping[str, Sequence[str]]) -> list[str] | None:
    """One cycle ``[a, b, ..., a]`` of a directed graph given as adjacency lists, or None."""
    WHITE, GREY, BLACK = 0, 1, 2
    color = dict.fromkeys(edges, WHITE)
    for start in edges:
        if color[start] != WHITE:
            continue
        stack: list[tuple[str, Iterator[str]]] = [(start, iter(edges[start]))]
        path = [start]
        color[start] = GREY
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                color[node] = BLACK
                stack.pop()
                path.pop()
            elif color[child] == GREY:
                return [*path[path.index(child) :], child]
            elif color[child] == WHITE:
                color[child] = GREY
                path.append(child)
                stack.append((child, iter(edges[child])))
    return None


def depends_on_origin(project: Project, definition: TaskDefinition) -> tuple[str, str]:
    """``(file, key)`` where the task's ``depends_on`` was written."""
    if definition.depends_on_template:
        root = project.path if project.relpath == "." else _root_of(project)
        return str(root / "pyproject.toml"), f"tool.vx.defaults.tasks.{definition.name}.depends_on"
    return str(project.pyproject), f"tool.vx.tasks.{definition.name}.depends_on"


def _root_of(project: Project) -> Path:
    path = project.path
    for _ in PurePosixPath(project.relpath).parts:
        path = path.parent
    return path


def build_task_graph(
    workspace: Workspace, task_names: Iterable[str], projects: Iterable[str]
) -> TaskGraph:
    """Select ``task_names`` in ``projects`` and pull in everything they depend on."""
    names = list(task_names)
    selected = list(projects)
    all_task_names = {t for p in workspace.projects.values() for t in p.tasks}
    for name in names:
        if "#" in name:
            project_name, _, task = name.partition("#")
            _resolve_exact(workspace, project_name, task, context=f"vx run {name}")
        elif not any(name in workspace.projects[p].tasks for p in selected):
            where = (
                "no selected project" if len(selected) < len(workspace.projects) else "no project"
            )
            raise UsageError(
                f"{where} has a task named '{name}'{did_you_mean(name, all_task_names)}; "
                f"known tasks: {some_names(sorted(all_task_names))}"
            )

    tasks: dict[str, Task] = {}
    pending: deque[tuple[Project, str]] = deque()
    for name in names:
        if "#" in name:
            project_name, _, task = name.partition("#")
            key = _resolve_exact(workspace, project_name, task, "")
            pending.append((workspace.projects[key], task))
        else:
            pending.extend(
                (workspace.projects[p], name)
                for p in selected
                if name in workspace.projects[p].tasks
            )
    edges: list[tuple[str, str]] = []
    while pending:
        project, name = pending.popleft()
        id = task_id(project.name, name)
        if id in tasks:
            continue
        definition = project.tasks[name]
        tasks[id] = Task(id=id, project=project, definition=definition)
        for index, spec in enumerate(definition.depends_on):
            if spec.startswith("^") and spec[1:] not in all_task_names:
                file, key = depends_on_origin(project, definition)
                raise ConfigError(
                    f"no project in the workspace has a task '{spec[1:]}'"
                    f"{did_you_mean(spec[1:], all_task_names)}",
                    file=file,
                    key=f"{key}[{index}]",
                )
            for dep_project in _resolve_dependency(workspace, project, name, index, spec):
                dep_name = spec.rpartition("#")[2].removeprefix("^")
                edges.append((id, task_id(dep_project.name, dep_name)))
                pending.append((dep_project, dep_name))
    for task, dependency in edges:
        if dependency not in tasks[task].dependencies:
            tasks[task].dependencies.append(dependency)
            tasks[dependency].dependents.append(task)
    graph = TaskGraph(workspace, tasks)
    graph.check_acyclic()
    ordered = {task.id: task for task in graph.topological_order()}
    return TaskGraph(workspace, ordered)


def _resolve_exact(workspace: Workspace, project: str, task: str, context: str) -> str:
    key = normalize_name(project)
    if key not in workspace.projects:
        raise UsageError(
            f"{context}: unknown project '{project}'{did_you_mean(key, workspace.projects)}"
        )
    if task not in workspace.projects[key].tasks:
        tasks = workspace.projects[key].tasks
        raise UsageError(
            f"{context}: project '{key}' has no task '{task}'{did_you_mean(task, tasks)}"
        )
    return key


def _resolve_dependency(
    workspace: Workspace, project: Project, task: str, index: int, spec: str
) -> list[Project]:
    """Projects whose task ``spec`` (``^t``, ``t`` or ``proj#t``) names."""

    def origin() -> dict[str, str]:  # for errors only: paths are not free
        file, key = depends_on_origin(project, project.tasks[task])
        return {"file": file, "key": f"{key}[{index}]"}

    if spec.startswith("^"):
        name = spec[1:]
        return _upstream_with_task(workspace, project, name)
    if "#" in spec:
        other, _, name = spec.partition("#")
        other_key = normalize_name(other)
        if other_key not in workspace.projects:
            raise ConfigError(
                f"unknown project '{other}'{did_you_mean(other_key, workspace.projects)}",
                **origin(),
            )
        if name not in workspace.projects[other_key].tasks:
            tasks = workspace.projects[other_key].tasks
            raise ConfigError(
                f"project '{other_key}' has no task '{name}'{did_you_mean(name, tasks)}",
                **origin(),
            )
        return [workspace.projects[other_key]]
    if spec not in project.tasks:
        raise ConfigError(
            f"project '{project.name}' has no task '{spec}'{did_you_mean(spec, project.tasks)}"
            " (use '^name' for a task of the dependency projects, 'project#name' for another"
            " project's task)",
            **origin(),
        )
    return [project]


def _upstream_with_task(workspace: Workspace, project: Project, name: str) -> list[Project]:
    """Dependency projects that have task ``name``; projects without it are passed through."""
    found: list[Project] = []
    seen: set[str] = set()
    stack = list(reversed(project.dependencies))
    while stack:
        dep = stack.pop()
        if dep in seen:
            continue
        seen.add(dep)
        dep_project = workspace.projects[dep]
        if name in dep_project.tasks:
            found.append(dep_project)
        else:
            stack.extend(reversed(dep_project.dependencies))
    return found
