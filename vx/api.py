"""Planning and running a selection of tasks from code: what ``vx run`` does, for commands
that run tasks more than once (``vx watch``) and for scripts.

Typical use inside a command handler::

    graph, cache = vx.plan_run(config, ["test"])      # keys in task.hash
    runner = vx.create_runner(config, graph, cache, task_names=["test"])
    run = runner.run()                                 # or: await runner.run_async()
"""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vx.cache import TaskCache
    from vx.config import Config
    from vx.graph import TaskGraph
    from vx.runner import Runner
    from vx.services import ServicePool

__all__ = ["create_runner", "plan_run"]


def plan_run(config: Config, task_names: list[str]) -> tuple[TaskGraph, TaskCache]:
    """The graph of ``task_names`` over the projects ``--filter``/``--affected`` select, and
    its cache with every task's key computed (``task.hash``)."""
    from vx.cache import create_cache
    from vx.planning import plan

    graph = plan(config, task_names)
    return graph, create_cache(config, graph)


def create_runner(
    config: Config,
    graph: TaskGraph,
    cache: TaskCache,
    *,
    task_names: list[str],
    settled: Collection[str] = (),
    services: ServicePool | None = None,
) -> Runner:
    """A :class:`~vx.runner.Runner` set up as ``vx run`` sets it up: the executor and
    priorities from plugins, ``-j``/``--continue`` from the command line (or their defaults).

    ``settled`` tasks count as done without running; ``services`` keeps the persistent tasks
    the run starts running after it ends (see :class:`~vx.runner.Runner`).
    """
    from vx.execution import ContinueMode
    from vx.planning import resolve_concurrency
    from vx.runner import Runner

    return Runner(
        config,
        graph,
        config.hook.executor(config),
        concurrency=resolve_concurrency(config),
        continue_mode=ContinueMode(getattr(config.option, "continue_mode", None) or "never"),
        # Asked lazily: only when the scheduler starts (a full hit never needs them).
        priorities=lambda: config.hook.task_priorities(graph, config),
        cache=cache,
        task_names=task_names,
        settled=settled,
        services=services,
    )
