"""vx_watch: the ``vx watch`` command, and the workspace watcher it shares with other
long-lived vx processes.

``from vx_watch import WorkspaceWatcher, ChangeFilter, ChangeSet`` (imported lazily: loading
the plugin does not import watchfiles).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vx_watch.watcher import ChangeFilter, ChangeSet, WorkspaceWatcher

__all__ = ["ChangeFilter", "ChangeSet", "WorkspaceWatcher"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from vx_watch import watcher

        return getattr(watcher, name)
    raise AttributeError(f"module 'vx_watch' has no attribute {name!r}")
