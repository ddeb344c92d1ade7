"""Built-in plugin ``run``: the ``vx run`` command."""

from __future__ import annotations

import json
import shlex
import sys
from typing import TYPE_CHECKING, Any

import vx
from vx.errors import UsageError
from vx.execution import ContinueMode

if TYPE_CHECKING:
    import argparse

    from vx.cache import TaskCache
    from vx.cli import CommandRegistry, Parser
    from vx.config import Config
    from vx.graph import Task, TaskGraph
    from vx.runoptions import RunOptions


@vx.hookimpl
def vx_add_commands(registry: CommandRegistry) -> None:
    registry.add("run", help="run tasks in dependency order, in parallel", handler=run_command)


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    add = parser.add_option
    add(
        "tasks",
        nargs="+",
        metavar="TASK",
        command="run",
        help="task names (test) or exact task ids (acme-api#test)",
    )
    add_selection_options(parser, "run")
    add(
        "-j",
        "--concurrency",
        metavar="N|P%",
        command="run",
        help="maximum tasks running at once: a number or a percentage of CPUs "
        "(default: [tool.vx] concurrency, else the number of CPUs)",
    )
    add(
        "--continue",
        dest="continue_mode",
        nargs="?",
        const="always",
        default="never",
        choices=[mode.value for mode in ContinueMode],
        command="run",
        help="after a failure: never (default, stop and cancel running tasks), "
        "dependencies-successful (run what does not depend on the failure), "
        "always (run everything); the bare flag means always",
    )
    add(
        "--dry",
        "--dry-run",
        dest="dry",
        nargs="?",
        const="text",
        choices=["text", "json"],
        command="run",
        help="print the plan without running anything (json: only JSON on stdout)",
    )
    add("--force", action="store_true", command="run", help="ignore cache reads (still writes)")
    add(
        "--cache",
        metavar="SPEC",
        command="run",
        help="per-layer reads/writes, e.g. local:rw,remote:r (unlisted layers are off)",
    )
    add(
        "--env-mode",
        choices=["strict", "loose"],
        command="run",
        help="strict: tasks see only declared and base variables (default); loose: everything",
    )


def add_selection_options(parser: Parser, command: str) -> None:
    """``--filter``, ``--affected`` and ``--base`` (shared with ``vx graph``)."""
    parser.add_option(
        "-F",
        "--filter",
        action="append",
        metavar="SPEC",
        command=command,
        help="select projects (repeatable, union): NAME, glob, ./path, NAME..., "
        "...NAME, !NAME, [REV], [A...B]",
    )
    parser.add_option(
        "--affected",
        action="store_true",
        command=command,
        help="projects changed relative to --base, and their dependents",
    )
    parser.add_option(
        "--base",
        metavar="REV",
        command=command,
        help="base revision for --affected (default: origin/main)",
    )


def selection_filters(option: argparse.Namespace) -> tuple[str, ...]:
    """The project selectors of ``--filter``, ``--affected`` and ``--base``."""
    filters = list(option.filter or [])
    if option.affected:
        filters.append(f"...[{option.base or 'origin/main'}]")
    elif option.base:
        raise UsageError("--base only applies together with --affected")
    return tuple(filters)


def run_options(option: argparse.Namespace) -> RunOptions:
    """Parse the ``vx run`` command line once; the kernel only sees the result."""
    from vx.runoptions import RunOptions, parse_cache_spec, parse_concurrency

    concurrency = None
    if option.concurrency is not None:
        try:
            concurrency = parse_concurrency(option.concurrency)
        except ValueError as exc:
            raise UsageError(f"-j/--concurrency: {exc}") from None
    return RunOptions(
        tasks=tuple(option.tasks),
        filters=selection_filters(option),
        concurrency=concurrency,
        continue_mode=ContinueMode(option.continue_mode),
        dry=option.dry,
        force=option.force,
        cache=parse_cache_spec(option.cache) if option.cache else None,
        env_mode=option.env_mode,
    )


def run_command(config: Config) -> int:
    from vx.cache import create_cache
    from vx.daemon import serving
    from vx.planning import plan, resolve_concurrency

    options = run_options(config.option)
    graph = plan(config, options)
    config.save_state()  # the input is valid: the workspace cache (and .vx/) may be written
    if not len(graph):
        sys.stderr.write("vx: no tasks to run (the filters selected no project)\n")
        if options.dry == "json":
            sys.stdout.write(json.dumps({"tasks": []}) + "\n")
        return 0
    cache = create_cache(config, graph, options)
    serving.admit(graph, cache, options)  # in the warm server: serve, or let the client run it
    if options.dry:
        return _dry_run(config, options, graph, cache, resolve_concurrency(config, options))
    runner = vx.create_runner(config, graph, cache, options)
    run = runner.run()
    assert run.exit_code is not None
    return run.exit_code


def describe_command(task: Task) -> str | None:
    command = task.command
    return shlex.join(command) if isinstance(command, list) else command


def dry_run_document(graph: TaskGraph, cache: TaskCache, concurrency: int) -> dict[str, Any]:
    """The ``--dry=json`` document."""
    tasks = []
    for task in graph:
        entry: dict[str, Any] = {
            "id": task.id,
            "project": task.project.name,
            "task": task.name,
            "command": describe_command(task),
            "cwd": str(task.cwd),
            "dependencies": list(task.dependencies),
            "dependents": list(task.dependents),
            "hash": task.hash,
            "cache": {"status": "miss" if task.definition.cache else "disabled"},
            "inputs": list(task.definition.inputs) if task.definition.inputs is not None else None,
            "outputs": list(task.definition.outputs),
            "env": list(task.definition.env),
            "pass_env": list(task.definition.pass_env),
            "persistent": task.definition.persistent,
        }
        entry.update(cache.dry_run_entry(task))
        tasks.append(entry)
    return {
        "version": vx.__version__,
        "workspace": str(graph.workspace.root),
        "concurrency": concurrency,
        "tasks": tasks,
    }


def _dry_run(
    config: Config, options: RunOptions, graph: TaskGraph, cache: TaskCache, concurrency: int
) -> int:
    document = dry_run_document(graph, cache, concurrency)
    if options.dry == "json":
        # Compact: the document is for tools (pipe it through `jq` to read it), and the
        # C encoder is several times faster than indented output on large workspaces.
        sys.stdout.write(json.dumps(document, separators=(",", ":")) + "\n")
        return 0
    from vx.planning import inferred_scope
    from vx.terminal import scope_note

    out = sys.stdout
    out.write(f"Plan: {len(graph)} task(s), concurrency {document['concurrency']}\n")
    scope = inferred_scope(config)
    if scope is not None:
        out.write(scope_note(scope) + "\n")
    for entry in document["tasks"]:
        out.write(f"\n{entry['id']}\n")
        out.write(f"  command      {entry['command'] or '(none: groups its dependencies)'}\n")
        out.write(f"  cwd          {entry['cwd']}\n")
        out.write(f"  dependencies {', '.join(entry['dependencies']) or '-'}\n")
        out.write(f"  dependents   {', '.join(entry['dependents']) or '-'}\n")
        out.write(f"  outputs      {', '.join(entry['outputs']) or '-'}\n")
        out.write(f"  hash         {entry['hash'] or '-'}\n")
        out.write(f"  cache        {entry['cache']['status']}\n")
        if entry["cache"].get("reason"):
            out.write(f"  reason       {entry['cache']['reason']}\n")
    return 0
