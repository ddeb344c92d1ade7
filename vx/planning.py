"""From the command line to a task graph: project selection, graph building, plugin edits."""

from __future__ import annotations

from typing import TYPE_CHECKING

from vx.filters import select_projects
from vx.graph import TaskGraph, build_task_graph
from vx.runoptions import RunOptions, parse_concurrency

if TYPE_CHECKING:
    from vx.config import Config

__all__ = ["plan", "resolve_concurrency"]


def plan(config: Config, options: RunOptions) -> TaskGraph:
    """Build the graph of ``options.tasks`` over the projects ``options.filters`` select."""
    workspace = config.workspace
    projects = select_projects(workspace, list(options.filters), config.invocation_dir)
    task_names = list(options.tasks)
    if not task_names:
        task_names = sorted({t for name in projects for t in workspace.projects[name].tasks})
    if not projects:
        return TaskGraph(workspace, {})
    graph = build_task_graph(workspace, task_names, projects)
    config.hook.modify_graph(graph, config)
    graph.check_acyclic()
    return TaskGraph(workspace, {task.id: task for task in graph.topological_order()})


def resolve_concurrency(config: Config, options: RunOptions) -> int:
    """``-j`` beats ``[tool.vx] concurrency`` / ``VX_CONCURRENCY``; default: the CPU count."""
    if options.concurrency is not None:
        return options.concurrency
    # Validated with the settings (a bad value is a configuration error there); what is
    # left is turning a percentage into a number of CPUs.
    configured = config.settings.concurrency
    return parse_concurrency(configured if configured is not None else "100%")
