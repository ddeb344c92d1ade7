"""History-aware priorities: the expected remaining critical path from each task.

A task's priority is the time, in seconds, from its start to the end of the longest
chain of tasks that depend on it, each costed at its expected duration:

    priority(t) = cost(t) + max(priority(d) for d in dependents(t), default 0)

Ready tasks with the longest remaining path start first (HLFET list scheduling), so
long chains are not left waiting behind wide layers of short tasks.

``cost(t)``:

- 0 when ``t`` is expected to be a cache hit: caching is on, ``--force`` is not given,
  and its current key already passed (or was restored) in a recorded run;
- else the median (p50) of its newest ``window`` executed durations. The median, not
  the mean: one slow outlier (a cold disk, a busy machine) does not reorder the run,
  and list scheduling only needs durations right relative to each other;
- without history of its own: the median p50 of tasks with the same name in other
  projects (``test`` tasks resemble each other), else the median p50 of every task
  with history.

With no history at all the hook returns None and the kernel's default (number of
transitive dependents) applies. Ties keep the kernel's topological order.
"""

from __future__ import annotations

from statistics import median
from typing import TYPE_CHECKING

from vx_history.store import HistoryStore, percentile

if TYPE_CHECKING:
    from vx import TaskGraph


def expected_costs(
    graph: TaskGraph, store: HistoryStore, *, window: int, force: bool
) -> dict[str, float] | None:
    """``{task_id: expected seconds}`` for every task of ``graph``; None without history."""
    durations = store.durations(window=window)
    p50 = {task_id: percentile(sorted(ms), 0.5) / 1000 for task_id, ms in durations.items()}
    if not p50:
        return None
    by_name: dict[str, list[float]] = {}
    for task_id, seconds in p50.items():
        by_name.setdefault(task_id.rpartition("#")[2], []).append(seconds)
    fallback = median(p50.values())
    hits: set[tuple[str, str]] = set()
    if not force:
        hits = store.passed_keys(
            (t.id, t.hash) for t in graph if t.hash and t.definition.cache and t.command
        )
    costs = {}
    for task in graph:
        if task.command is None or (task.hash is not None and (task.id, task.hash) in hits):
            costs[task.id] = 0.0
        elif task.id in p50:
            costs[task.id] = p50[task.id]
        else:
            same_name = by_name.get(task.name)
            costs[task.id] = median(same_name) if same_name else fallback
    return costs


def critical_path_priorities(graph: TaskGraph, costs: dict[str, float]) -> dict[str, float]:
    """``priority(t) = cost(t) + max(priority(dependent))``, over ``graph`` (which iterates
    in topological order)."""
    priorities: dict[str, float] = {}
    for task in reversed(graph.topological_order()):
        after = max((priorities[d] for d in task.dependents if d in priorities), default=0.0)
        priorities[task.id] = costs[task.id] + after
    return priorities
