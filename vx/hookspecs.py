"""Every extension point of vx.

Plugins implement hooks with the :data:`vx.hookimpl` marker; a hook is called
on every plugin that implements it (in LIFO registration order, like pytest),
unless marked *firstresult*, in which case the first non-``None`` return wins.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pydantic import BaseModel

    from vx.caching import CacheLayer, CacheResult, CacheStatus
    from vx.cli import CommandRegistry, Parser
    from vx.config import Config
    from vx.execution import CommandSpec, Executor, RunInfo, TaskResult
    from vx.graph import Task, TaskGraph
    from vx.plugin_manager import VxPluginManager
    from vx.workspace import Workspace

hookspec = pluggy.HookspecMarker("vx")

# -------------------------------------------------------------------------
# Bootstrap: called while the command line is being built
# -------------------------------------------------------------------------


@hookspec(historic=True)
def vx_addhooks(pluginmanager: VxPluginManager) -> None:
    """Register new hook specifications (``pluginmanager.add_hookspecs(module)``).

    Called once per plugin as soon as it is registered (historic).
    """


@hookspec
def vx_add_commands(registry: CommandRegistry) -> None:
    """Add subcommands (``vx run``, ``vx graph``, ``vx cache`` ...).

    Called once, after every plugin is loaded and before the command line is
    parsed. Use ``registry.add(name, help=..., handler=..., needs_workspace=...,
    configure=...)`` (a :class:`vx.CommandRegistry`); ``handler(config) -> int``
    returns the exit code, and ``configure(argparse_parser)`` may add the
    command's own arguments. Returns nothing.
    """


@hookspec(historic=True)
def vx_addoption(parser: Parser) -> None:
    """Add command-line options.

    ``parser.add_option(*flags, command=None, **argparse_kwargs)`` (a
    :class:`vx.Parser`) adds a global option (``command=None``), an option of one
    subcommand (``command="run"``), or of several (``command=("run", "replay")``: each
    of them that is installed; observers add their options to ``vx replay`` this way).
    Options appear in ``vx --help`` / ``vx run --help`` and are read back as
    ``config.option.<dest>``. Called once per plugin after ``vx_add_commands``
    (historic: plugins registered later are called too). Returns nothing.
    """


# -------------------------------------------------------------------------
# Configuration
# -------------------------------------------------------------------------


@hookspec
def vx_settings_models() -> Mapping[str, type[BaseModel]] | None:
    """Return ``{section: model}`` for the ``[tool.vx.<section>]`` tables this plugin owns.

    Called once when settings are first validated. Each model is a pydantic
    ``BaseModel`` (use ``extra="forbid"`` so misspelled keys get a "did you
    mean"); values are also read from ``VX_<SECTION>__<KEY>`` environment
    variables. Read them back with ``config.section(name)`` (on warm runs a
    read-only object with the same attributes, from the workspace cache).
    """


@hookspec
def vx_task_settings() -> Mapping[str, object] | None:
    """Return ``{key: type}`` for plugin-owned keys of ``[tool.vx.tasks.<name>]`` tables.

    Called once when the workspace is loaded from its pyproject files (not on warm
    runs served by the workspace cache). Each type is a pydantic-compatible annotation
    (``bool``, ``SomeModel | bool`` ...); the kernel validates the key wherever a task
    table may hold it (projects, the root, ``[tool.vx.defaults.tasks.<name>]``, which
    it is merged from like the built-in keys) and reports errors naming the file and
    key. A key must not shadow a built-in task key or another plugin's key. Validated
    values of the keys a task sets are stored, frozen (models become read-only
    attribute views), in ``TaskDefinition.plugin_settings[key]``.
    """


@hookspec
def vx_configure(config: Config) -> None:
    """Called once the command line is parsed and plugins are loaded, before the command runs.

    Register stateful helper objects here (``config.pluginmanager.register``)
    when an option enables them, like pytest's ``stepwise``. Returns nothing.
    """


@hookspec
def vx_unconfigure(config: Config) -> None:
    """Called once after the command finished (also after errors). Returns nothing."""


# -------------------------------------------------------------------------
# Workspace and graph
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def vx_load_workspace(root: Path, config: Config) -> Workspace | None:
    """Read the workspace rooted at ``root`` (the directory holding the root pyproject.toml).

    Called once per invocation that needs the workspace, unless the workspace
    cache (``.vx/workspace.pickle``) still matches the files the loader read
    (``Workspace.config_files`` and ``watch_dirs``; a workspace without
    ``config_files`` is never cached). The first plugin returning a
    :class:`vx.Workspace` wins; the built-in ``workspace`` plugin reads
    ``[tool.vx]`` of pyproject files. Raise :class:`vx.ConfigError` for invalid
    configuration.
    """


@hookspec
def vx_modify_graph(graph: TaskGraph, config: Config) -> None:
    """Inspect or change the task graph before anything runs (e.g. add inferred edges).

    Called once per ``vx run``, ``vx graph`` and ``vx why`` after the graph is
    built and before it is checked for cycles again. Returns nothing.
    """


# -------------------------------------------------------------------------
# Hashing and caching
# -------------------------------------------------------------------------


@hookspec
def vx_task_hash_components(task: Task, config: Config) -> Mapping[str, str | bytes] | None:
    """Return extra named components to include in ``task``'s cache key.

    Called once per task whenever keys are computed (``vx run``, also with
    ``--dry``, and ``vx why``), before the key is computed, and only when some
    plugin implements it. Components of all plugins are merged (a later
    plugin's name replaces an earlier one's: prefix names with your plugin's
    name) and recorded in the manifest so ``vx why`` can explain them. Prefer
    :func:`vx_graph_hash_components`, one call per run for all tasks; this
    per-task form stays for compatibility.
    """


@hookspec
def vx_graph_hash_components(
    graph: TaskGraph, config: Config
) -> Mapping[str, Mapping[str, str | bytes]] | None:
    """Return extra named key components for many tasks at once: ``{task_id: {name: value}}``.

    The batched form of :func:`vx_task_hash_components`, and the one to prefer: it is called
    once per key computation (``vx run``, also with ``--dry``, and ``vx why``) with the
    whole task graph, instead of once per task, so a plugin adds one hook call to a run
    rather than one per task (400 calls cost ~20 ms on a 200-project full hit). Task ids
    missing from the returned mapping get no component from this plugin. Components are
    merged like those of :func:`vx_task_hash_components` (prefix names with your plugin's
    name); per-task components are applied after batched ones. Not firstresult.
    """


@hookspec
def vx_cache_layers(config: Config) -> list[CacheLayer] | None:
    """Return the cache layers this plugin provides (instances of :class:`vx.CacheLayer`).

    Called once per ``vx run`` / ``vx why``. Layers are read in order: the
    :attr:`~vx.CacheLayer.local` ones first, then the rest, each group in hook
    call order. Layer names must be unique. Returns a list, or None.
    """


# -------------------------------------------------------------------------
# Scheduling and execution
# -------------------------------------------------------------------------


@hookspec(firstresult=True)
def vx_task_priorities(graph: TaskGraph, config: Config) -> Mapping[str, float] | None:
    """Return ``{task_id: priority}``; higher runs first among ready tasks.

    Called at most once per run, when the scheduler first orders ready tasks: a
    run whose tasks are all cache hits with their outputs in place never asks, nor
    does ``--dry``. By then ``task.hash`` is set for every task. The default
    priority of every task is the number of its transitive dependents; the mapping
    overrides it per task (tasks missing from it keep the default). Ties keep
    topological order. The first-party ``history`` plugin implements it
    (critical path from recorded durations, see docs/history.md).
    """


@hookspec(firstresult=True)
def vx_executor(config: Config) -> Executor | None:
    """Return the :class:`vx.Executor` that runs commands.

    Called once per run (not for ``--dry``); the built-in ``executor`` plugin
    returns one that spawns local processes in their own process group.
    Implement it with ``@vx.hookimpl(tryfirst=True)`` to replace it.

    An executor that runs commands on other machines (the ``dask`` plugin) returns a
    :class:`~vx.execution.RemoteExecution` from ``execute``: the runner then records the
    worker's name in ``TaskResult.worker`` and, when the remote side stored the task's
    artifact in the shared cache itself (``vx.pack_outputs`` on the worker), adopts that
    artifact instead of archiving local outputs. Keys, cache lookups and events stay on
    this machine. The optional attribute ``default_concurrency`` sets how many tasks are
    kept in flight when ``-j`` and ``[tool.vx] concurrency`` are not given. Raise
    :class:`~vx.errors.ConfigError` here for an unusable configuration (the run does not
    start).
    """


@hookspec
def vx_wrap_command(task: Task, spec: CommandSpec, config: Config) -> CommandSpec | None:
    """Rewrite how ``task`` is started (sandbox, container, timing wrapper ...).

    Called before each spawn; implementations are chained in hook call order,
    each receiving the spec returned by the previous one. Return a new
    :class:`vx.CommandSpec`, or None to keep ``spec`` unchanged. Not called for
    cache hits. A spec may carry ``confine`` (called on a fresh thread that then starts
    the process: thread-scoped restrictions such as Landlock or seccomp are inherited) or
    ``preexec`` (called in the forked child just before ``exec``); local executors honour
    both. The same spec is used for every attempt of a retried task.
    """


# -------------------------------------------------------------------------
# Run and task lifecycle events (observers)
#
# An observer that raises is disabled for the rest of the run with one
# warning; the run goes on. Return values are ignored.
#
# ``vx replay RUN_ID`` calls these same hooks, in the original order, with a
# stored run's events (no command runs, nothing is restored or saved): then
# ``run.replay`` is True, ``run`` and each result carry the original ids and
# timings, and ``task.hash`` is the recorded key. Hooks that do not receive
# ``run`` (``vx_task_cache``, ``vx_task_output``) are called between the
# ``vx_run_start`` and ``vx_run_finish`` of that replayed run. Observers that
# act on the world (recording, uploads, notifications) return early on a replay.
# -------------------------------------------------------------------------


@hookspec
def vx_run_start(run: RunInfo, graph: TaskGraph, config: Config) -> None:
    """Called once before the first task of a run starts."""


@hookspec
def vx_task_start(task: Task, run: RunInfo) -> None:
    """Called when ``task`` is about to be looked up in the cache or spawned."""


@hookspec
def vx_task_cache(task: Task, status: CacheStatus, details: CacheResult) -> None:
    """Called after the cache lookup of ``task`` that is about to run.

    ``status`` (also ``details.status``) is ``hit`` (restored), ``miss`` (the task
    runs; ``details.reason``/``details.changes`` say what changed, ``--force``
    included) or ``disabled`` (``cache = false``). ``details`` is a
    :class:`~vx.CacheResult`: ``key`` and, on a hit, ``source`` (``local`` or
    ``remote``, see :attr:`vx.CacheLayer.local`), ``layer`` (the layer's name),
    ``time_saved_ms`` and ``restored_outputs``. Not called for tasks without a
    command, nor for skipped tasks.

    Timings in milliseconds, when a lookup took place: ``details.lookup_ms`` (until a
    layer answered, or until every layer missed) and, on a hit, ``details.restore_ms``
    (restoring outputs and log). Hits completed before the scheduler starts (outputs
    already in place) report zero for both.
    """


@hookspec
def vx_task_output(task: Task, data: bytes) -> None:
    """Called for each chunk of output (stdout and stderr combined) as it arrives,
    and once with the whole replayed log of a cache hit."""


@hookspec
def vx_task_finish(result: TaskResult, run: RunInfo) -> None:
    """Called once per task of the run with its final :class:`vx.TaskResult`,
    including tasks that were skipped or cancelled.

    Besides status, exit code, duration, output and cache details, the result carries
    ``attempts`` (commands started: ``1 +`` retries used; a task that failed and then
    passed on a retry has status ``flaky``), ``start_ms`` (its start, in milliseconds
    since the run started; it ended at ``start_ms + duration_ms``) and ``slot`` (the
    concurrency slot it ran in, ``0 .. run.concurrency - 1``); both None when skipped.
    A plugin may record JSON-serialisable facts about the execution in
    ``result.plugin_data[<plugin name>]``; they are written to the run summary.

    A persistent task finishes when it is stopped or exits, not when it becomes ready; in
    ``vx watch``, a persistent task left running when its run ends finishes with that run
    (``result.cache["persistent"] == "running"``). Tasks a caller marks as settled
    (``Runner(settled=...)``) get no events at all.

    When the task ran and its outputs were archived into the local layer,
    ``result.cache.save_ms`` is the time that took (milliseconds).
    """


@hookspec
def vx_cache_upload(
    task: Task, layer: str, key: str, duration_ms: float, error: str | None
) -> None:
    """Called when a background upload of ``task``'s artifact to cache layer ``layer``
    (a non-local writable layer, e.g. ``remote``) has ended, usually after
    ``vx_task_finish`` of that task and always before ``vx_run_finish``.

    ``error`` is None on success, else the exception's class name (the layer's own warning
    tells the user what happened). Uploads abandoned at the end of the run are not reported.
    """


@hookspec
def vx_run_finish(run: RunInfo, config: Config) -> None:
    """Called once after the last task, with ``run.exit_code`` and ``run.results`` set.

    Also called after an interruption (``run.interrupted``). ``run.concurrency`` is the
    run's concurrency limit.
    """
