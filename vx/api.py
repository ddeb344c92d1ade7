"""Planning and running a selection of tasks from code: what ``vx run`` does, for commands
that run tasks more than once (``vx watch``) and for scripts.

Typical use inside a command handler (a command registered with ``options_of="run"`` gets
every ``vx run`` option)::

    options = vx.run_options(config.option)           # or vx.RunOptions(tasks=("test",))
    graph, cache = vx.plan_run(config, options)       # keys in task.hash
    runner = vx.create_runner(config, graph, cache, options)
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
    from vx.runoptions import RunOptions
    from vx.services import ServicePool

__all__ = ["create_runner", "plan_run"]


def plan_run(config: Config, options: RunOptions) -> tuple[TaskGraph, TaskCache]:
    """The graph of ``options.tasks`` over the projects its filters select, and its cache
    with every task's key computed (``task.hash``)."""
    from vx.cache import create_cache
    from vx.planning import plan

    graph = plan(config, options)
    return graph, create_cache(config, graph, options)


def create_runner(
    config: Config,
    graph: TaskGraph,
    cache: TaskCache,
    options: RunOptions,
    *,
    settled: Collection[str] = (),
    services: ServicePool | None = None,
) -> Runner:
    """A :class:`~vx.runner.Runner` set up as ``vx run`` sets it up: the executor and
    priorities from plugins, concurrency and ``--continue`` from ``options``.

    ``settled`` tasks count as done without running; ``services`` keeps the persistent tasks
    the run starts running after it ends (see :class:`~vx.runner.Runner`).
    """
    from vx.planning import resolve_concurrency
    from vx.runner import Runner

    executor = config.hook.executor(config)
    return Runner(
        config,
        graph,
        executor,
        options,
        concurrency=resolve_concurrency(
            config, options, getattr(executor, "default_concurrency", None)
        ),
        # Asked lazily: only when the scheduler starts (a full hit never needs them).
        priorities=lambda: config.hook.task_priorities(graph, config),
        cache=cache,
        settled=settled,
        services=services,
    )
