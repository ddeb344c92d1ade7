"""vx: a pytest-style, plugin-first build system and monorepo task runner.

The public API is exactly the names in ``vx.__all__`` (plus the ``vx.testing`` pytest
plugin for plugin authors' tests): import them from ``vx`` itself (``from vx import
Config, Task``), like ``pytest.Config`` or ``httpx.BaseTransport``. Every other module
(``vx.cache``, ``vx.runner``, ``vx.keys``, ...) is the kernel's own and may change in any
release; first-party plugins follow the same rule (a test checks it).

Attributes are imported lazily so that ``vx --version`` stays fast.

Exceptions: :class:`VxError` is the base of every error vx reports without a traceback:
:class:`UsageError` (bad command line, exit 2), :class:`ConfigError` (bad configuration,
exit 78) and :class:`PluginError` (a plugin failed to load or broke a contract, exit 78).
:class:`CorruptArtifactError` is raised by cache layers for entries that fail their
integrity check.
"""

from __future__ import annotations

from vx._version import __version__

# Not ``typing.TYPE_CHECKING``: importing typing costs the warm server's thin client ~5 ms.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pluggy import HookimplMarker

    from vx._log import warning
    from vx.api import create_runner, plan_run
    from vx.cachedir import CACHEDIR_TAG_SIGNATURE
    from vx.caching import (
        Artifact,
        ArtifactInfo,
        CacheLayer,
        CacheResult,
        CacheSource,
        CacheStatus,
        CorruptArtifactError,
    )
    from vx.cli import Command, CommandRegistry, Parser
    from vx.commands.run import run_options
    from vx.config import Config
    from vx.errors import ConfigError, PluginError, UsageError, VxError
    from vx.execution import (
        CommandSpec,
        ContinueMode,
        Executor,
        OutputCallback,
        RemoteExecution,
        RunInfo,
        TaskResult,
        TaskStatus,
    )
    from vx.graph import Task, TaskGraph
    from vx.plugin_manager import PluginInfo, VxPluginManager
    from vx.runner import Runner
    from vx.runoptions import LayerAccess, RunOptions
    from vx.services import ServicePool
    from vx.stash import Stash, StashKey
    from vx.statedir import make_cache_dir
    from vx.transfer import pack_outputs, restore_outputs
    from vx.workspace import Project, TaskDefinition, Workspace

    hookimpl: HookimplMarker

__all__ = [
    "CACHEDIR_TAG_SIGNATURE",
    "Artifact",
    "ArtifactInfo",
    "CacheLayer",
    "CacheResult",
    "CacheSource",
    "CacheStatus",
    "Command",
    "CommandRegistry",
    "CommandSpec",
    "Config",
    "ConfigError",
    "ContinueMode",
    "CorruptArtifactError",
    "Executor",
    "LayerAccess",
    "OutputCallback",
    "Parser",
    "PluginError",
    "PluginInfo",
    "Project",
    "RemoteExecution",
    "RunInfo",
    "RunOptions",
    "Runner",
    "ServicePool",
    "Stash",
    "StashKey",
    "Task",
    "TaskDefinition",
    "TaskGraph",
    "TaskResult",
    "TaskStatus",
    "UsageError",
    "VxError",
    "VxPluginManager",
    "Workspace",
    "__version__",
    "create_runner",
    "hookimpl",
    "make_cache_dir",
    "pack_outputs",
    "plan_run",
    "restore_outputs",
    "run_options",
    "warning",
]

_LAZY = {
    "CACHEDIR_TAG_SIGNATURE": "vx.cachedir",
    "Artifact": "vx.caching",
    "ArtifactInfo": "vx.caching",
    "CacheLayer": "vx.caching",
    "CacheResult": "vx.caching",
    "CacheSource": "vx.caching",
    "CacheStatus": "vx.caching",
    "Command": "vx.cli",
    "CommandRegistry": "vx.cli",
    "CommandSpec": "vx.execution",
    "Config": "vx.config",
    "ConfigError": "vx.errors",
    "ContinueMode": "vx.execution",
    "CorruptArtifactError": "vx.caching",
    "Executor": "vx.execution",
    "LayerAccess": "vx.runoptions",
    "OutputCallback": "vx.execution",
    "Parser": "vx.cli",
    "PluginError": "vx.errors",
    "PluginInfo": "vx.plugin_manager",
    "Project": "vx.workspace",
    "RemoteExecution": "vx.execution",
    "RunInfo": "vx.execution",
    "Runner": "vx.runner",
    "ServicePool": "vx.services",
    "RunOptions": "vx.runoptions",
    "Stash": "vx.stash",
    "StashKey": "vx.stash",
    "Task": "vx.graph",
    "TaskDefinition": "vx.workspace",
    "TaskGraph": "vx.graph",
    "TaskResult": "vx.execution",
    "TaskStatus": "vx.execution",
    "UsageError": "vx.errors",
    "VxError": "vx.errors",
    "VxPluginManager": "vx.plugin_manager",
    "Workspace": "vx.workspace",
    "make_cache_dir": "vx.statedir",
    "pack_outputs": "vx.transfer",
    "restore_outputs": "vx.transfer",
    "warning": "vx._log",
    "create_runner": "vx.api",
    "plan_run": "vx.api",
    "run_options": "vx.commands.run",
}


def __getattr__(name: str) -> Any:
    if name == "hookimpl":
        import pluggy

        marker = pluggy.HookimplMarker("vx")
        globals()["hookimpl"] = marker
        return marker
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vx' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
