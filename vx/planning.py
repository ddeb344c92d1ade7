"""From the command line to a task graph: project selection, graph building, plugin edits."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

from vx.errors import ConfigError, UsageError, did_you_mean
from vx.filters import select_projects
from vx.graph import TaskGraph, build_task_graph

if TYPE_CHECKING:
    from vx.config import Config

__all__ = ["SCOPE_STASH", "inferred_scope", "parse_concurrency", "plan", "resolve_concurrency"]

#: ``config.stash`` key: the project a run was scoped to from the current directory.
SCOPE_STASH = "vx.inferred_scope"

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_concurrency(value: int | str) -> int:
    """``4`` -> 4; ``"50%"`` -> half the CPUs (at least 1). Raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_concurrency(int(text))
        match = _PERCENT.match(text)
        if match:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            return max(1, int((cpus or os.cpu_count() or 1) * float(match.group(1)) / 100))
    raise ValueError(f"expected a positive integer or a percentage like '50%', got {value!r}")


def plan(config: Config, task_names: list[str]) -> TaskGraph:
    """Build the graph of ``task_names`` over the projects chosen by ``--filter``/``--affected``."""
    workspace = config.workspace
    filters = list(getattr(config.option, "filter", None) or [])
    if getattr(config.option, "affected", False):
        filters.append(f"...[{config.option.base or 'origin/main'}]")
    elif getattr(config.option, "base", None):
        raise UsageError("--base only applies together with --affected")
    scope = None if filters else _infer_scope(config, task_names)
    if scope is not None:
        filters = [scope]
    projects = select_projects(workspace, filters, config.invocation_dir)
    if not task_names:
        task_names = sorted({t for name in projects for t in workspace.projects[name].tasks})
    if not projects:
        return TaskGraph(workspace, {})
    _check_templates_opted_into(config, task_names)
    graph = build_task_graph(workspace, task_names, projects)
    config.hook.modify_graph(graph, config)
    graph.check_acyclic()
    return TaskGraph(workspace, {task.id: task for task in graph.topological_order()})


def inferred_scope(config: Config) -> str | None:
    """The project ``plan`` scoped the command to (started inside its directory, with no
    ``--filter``/``--affected``), if any."""
    scope: str | None = config.stash.get(SCOPE_STASH)
    return scope


def _infer_scope(config: Config, task_names: list[str]) -> str | None:
    """Like Turborepo: started inside a member project's directory, a command covers that
    project (and what its tasks depend on); ``-F '*'`` covers the whole workspace."""
    workspace = config.workspace
    root, here = str(workspace.root), str(config.invocation_dir)
    if not here.startswith(root + os.sep):
        return None  # the root itself, or outside the workspace: no scope
    # The innermost project containing ``here``, by its relative path (O(depth), not
    # O(projects): this runs on every warm run).
    by_relpath = {project.relpath: project for project in workspace.projects.values()}
    relative = here[len(root) + 1 :].replace(os.sep, "/")
    while relative and relative not in by_relpath:
        relative = relative.rpartition("/")[0]
    if not relative:
        return None
    project = by_relpath[relative]
    for name in task_names:
        if "#" not in name and name not in project.tasks:
            raise UsageError(
                f"project '{project.name}' (inferred from the current directory "
                f"{config.invocation_dir}) has no task '{name}'"
                f"{did_you_mean(name, project.tasks)}; pass -F '*' to run it across the "
                "workspace, or run from the workspace root"
            )
    config.stash[SCOPE_STASH] = project.name
    return project.name


def _check_templates_opted_into(config: Config, task_names: list[str]) -> None:
    """A task no project has, but a template defines: say how to opt in."""
    templates = config.settings.defaults.tasks
    projects = config.workspace.projects.values()
    for name in task_names:
        if name in templates and not any(name in project.tasks for project in projects):
            raise UsageError(
                f"no project has a task named '{name}', but {config.root_file} has the template "
                f"[tool.vx.defaults.tasks.{name}]: templates apply only where they are enabled; "
                f'add projects = ["*"] (or project-name globs) to the template, or declare '
                f"[tool.vx.tasks.{name}] in a project's pyproject.toml"
            )


def resolve_concurrency(config: Config) -> int:
    """``-j`` beats ``[tool.vx] concurrency`` / ``VX_CONCURRENCY``; default: the CPU count."""
    value = getattr(config.option, "concurrency", None)
    if value is not None:
        try:
            return parse_concurrency(value)
        except ValueError as exc:
            raise UsageError(f"-j/--concurrency: {exc}") from None
    configured = config.settings.concurrency
    if configured is not None:
        try:
            return parse_concurrency(configured)
        except ValueError as exc:
            raise ConfigError(
                str(exc), file=str(config.root_file), key="tool.vx.concurrency"
            ) from None
    return parse_concurrency("100%")
