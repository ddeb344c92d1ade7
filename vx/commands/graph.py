"""Built-in plugin ``graph``: the ``vx graph`` command."""

from __future__ import annotations

import json
import re
import sys
from typing import TYPE_CHECKING

import vx
from vx.commands.run import add_selection_options, selection_filters
from vx.planning import inferred_scope, plan
from vx.runoptions import RunOptions

if TYPE_CHECKING:
    from vx.cli import CommandRegistry, Parser
    from vx.config import Config
    from vx.graph import TaskGraph


@vx.hookimpl
def vx_add_commands(registry: CommandRegistry) -> None:
    registry.add("graph", help="print the task graph", handler=graph_command)


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    parser.add_option(
        "tasks",
        nargs="*",
        metavar="TASK",
        command="graph",
        help="tasks to show (default: every task)",
    )
    parser.add_option(
        "--format",
        choices=["text", "dot", "mermaid", "json"],
        default="text",
        command="graph",
        help="output format (default: text)",
    )
    add_selection_options(parser, "graph")


def graph_command(config: Config) -> int:
    options = RunOptions(tasks=tuple(config.option.tasks), filters=selection_filters(config.option))
    graph = plan(config, options)
    scope = inferred_scope(config)
    if scope is not None and config.option.format == "text":
        from vx.terminal import scope_note

        sys.stderr.write(scope_note(scope) + "\n")
    render = {"text": _text, "dot": _dot, "mermaid": _mermaid, "json": _json}
    sys.stdout.write(render[config.option.format](graph))
    return 0


def _text(graph: TaskGraph) -> str:
    lines = []
    for task in graph:
        dependencies = ", ".join(task.dependencies)
        lines.append(f"{task.id}" + (f" -> {dependencies}" if dependencies else ""))
    return "\n".join(lines) + "\n"


def _dot(graph: TaskGraph) -> str:
    lines = ["digraph vx {", "  rankdir=BT;"]
    for task in graph:
        lines.append(f'  "{task.id}";')
        lines.extend(f'  "{task.id}" -> "{dependency}";' for dependency in task.dependencies)
    return "\n".join([*lines, "}"]) + "\n"


def _mermaid(graph: TaskGraph) -> str:
    ids = {task.id: f"t{index}_" + re.sub(r"\W", "_", task.id) for index, task in enumerate(graph)}
    lines = ["graph TD"]
    for task in graph:
        lines.append(f'  {ids[task.id]}["{task.id}"]')
    for task in graph:
        lines.extend(f"  {ids[task.id]} --> {ids[d]}" for d in task.dependencies)
    return "\n".join(lines) + "\n"


def _json(graph: TaskGraph) -> str:
    selected = {task.project.name for task in graph}
    document = {
        "workspace": str(graph.workspace.root),
        "tasks": [
            {
                "id": task.id,
                "project": task.project.name,
                "task": task.name,
                "dependencies": task.dependencies,
                "dependents": task.dependents,
            }
            for task in graph
        ],
        # The projects of those tasks (tools such as `vx mcp` list projects from here).
        "projects": [
            {
                "name": project.name,
                "path": project.relpath,
                "dependencies": list(project.dependencies),
                "tasks": sorted(project.tasks),
            }
            for project in graph.workspace.projects.values()
            if project.name in selected
        ],
    }
    return json.dumps(document, indent=2) + "\n"
