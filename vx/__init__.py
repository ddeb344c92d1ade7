"""vx: a pytest-style, plugin-first build system and monorepo task runner.

Public API for plugin authors; attributes are imported lazily so that
``vx --version`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from vx._version import __version__

if TYPE_CHECKING:
    from pluggy import HookimplMarker

    from vx._log import warning
    from vx.caching import Artifact, ArtifactInfo, CacheLayer, CorruptArtifactError
    from vx.config import Config
    from vx.errors import ConfigError, PluginError, UsageError, VxError
    from vx.execution import CommandSpec, Executor, RunInfo, TaskResult, TaskStatus
    from vx.graph import Task, TaskGraph
    from vx.hashing import CACHEDIR_TAG_SIGNATURE
    from vx.statedir import make_cache_dir
    from vx.workspace import Project, TaskDefinition, Workspace

    hookimpl: HookimplMarker

__all__ = [
    "CACHEDIR_TAG_SIGNATURE",
    "Artifact",
    "ArtifactInfo",
    "CacheLayer",
    "CommandSpec",
    "Config",
    "ConfigError",
    "CorruptArtifactError",
    "Executor",
    "PluginError",
    "Project",
    "RunInfo",
    "Task",
    "TaskDefinition",
    "TaskGraph",
    "TaskResult",
    "TaskStatus",
    "UsageError",
    "VxError",
    "Workspace",
    "__version__",
    "hookimpl",
    "make_cache_dir",
    "warning",
]

_LAZY = {
    "CACHEDIR_TAG_SIGNATURE": "vx.hashing",
    "Artifact": "vx.caching",
    "ArtifactInfo": "vx.caching",
    "CacheLayer": "vx.caching",
    "CommandSpec": "vx.execution",
    "Config": "vx.config",
    "ConfigError": "vx.errors",
    "CorruptArtifactError": "vx.caching",
    "Executor": "vx.execution",
    "PluginError": "vx.errors",
    "Project": "vx.workspace",
    "RunInfo": "vx.execution",
    "Task": "vx.graph",
    "TaskDefinition": "vx.workspace",
    "TaskGraph": "vx.graph",
    "TaskResult": "vx.execution",
    "TaskStatus": "vx.execution",
    "UsageError": "vx.errors",
    "VxError": "vx.errors",
    "Workspace": "vx.workspace",
    "make_cache_dir": "vx.statedir",
    "warning": "vx._log",
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
