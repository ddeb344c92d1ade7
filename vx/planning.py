"""From the command line to a task graph: project selection, graph building, plugin edits."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from vx.errors import UsageError, did_you_mean
from vx.filters import select_projects
from vx.graph import TaskGraph, build_task_graph
from vx.runoptions import RunOptions, parse_concurrency
from vx.stash import StashKey

if TYPE_CHECKING:
    from vx.config import Config

__all__ = ["SCOPE_STASH", "inferred_scope", "plan", "resolve_concurrency"]

#: ``config.stash`` key: the project a run was scoped to from the current directory.
SCOPE_STASH = StashKey[str]()


def plan(config: Config, options: RunOptions) -> TaskGraph:
    """Build the graph of ``options.tasks`` over the projects ``options.filters`` select."""
    workspace = config.workspace
    task_names = list(options.tasks)
    filters = list(options.filters)
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
    return config.stash.get(SCOPE_STASH)


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


def resolve_concurrency(config: Config, options: RunOptions, default: int | None = None) -> int:
    """``-j`` beats ``[tool.vx] concurrency`` / ``VX_CONCURRENCY``; default: ``default`` (the
    executor's ``default_concurrency``) when given, else the CPU count."""
    if options.concurrency is not None:
        return options.concurrency
    # Validated with the settings (a bad value is a configuration error there); what is
    # left is turning a percentage into a number of CPUs.
    configured = config.settings.concurrency
    if configured is not None:
        return parse_concurrency(configured)
    return default if default is not None else parse_concurrency("100%")
