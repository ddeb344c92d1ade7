"""Built-in plugin ``why``: ``vx why PROJECT#TASK`` explains a cache miss."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import vx
from vx.errors import UsageError
from vx.workspace import normalize_name

if TYPE_CHECKING:
    from vx.cli import CommandRegistry, Parser
    from vx.config import Config


@vx.hookimpl
def vx_add_commands(registry: CommandRegistry) -> None:
    registry.add(
        "why", help="explain whether a task would hit the cache, and what changed", handler=why
    )


@vx.hookimpl
def vx_addoption(parser: Parser) -> None:
    parser.add_option("task", metavar="PROJECT#TASK", command="why", help="the task to explain")
    parser.add_option("--json", action="store_true", command="why", help="print JSON")


def why(config: Config) -> int:
    from vx.cache import create_cache
    from vx.planning import plan
    from vx.runoptions import RunOptions

    spec: str = config.option.task
    project, sep, name = spec.partition("#")
    if not sep or not project or not name:
        raise UsageError(f"vx why {spec!r}: expected PROJECT#TASK, e.g. acme-api#build")
    task_id = f"{normalize_name(project)}#{name}"
    options = RunOptions(tasks=(spec,))
    graph = plan(config, options)
    cache = create_cache(config, graph, options)
    task = graph[task_id]
    found = cache.lookup(task)
    source = found.layer
    if found.changes is not None:
        changes = list(found.changes)
    else:
        changes = [] if source else cache.reason(task)
    if config.option.json:
        document = {
            "id": task_id,
            "hash": task.hash,
            "status": found.status,
            "source": source,
            "changes": changes,
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
        return 0
    key = (task.hash or "")[:16]
    if not task.definition.cache:
        sys.stdout.write(f"{task_id}: not cached (cache = false), key {key}\n")
    elif source:
        sys.stdout.write(f"{task_id}: cache hit in '{source}', key {key}\n")
    else:
        sys.stdout.write(f"{task_id}: cache miss, key {key}\n")
        sys.stdout.writelines(f"  - {change}\n" for change in changes)
    return 0
