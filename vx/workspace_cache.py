"""The validated workspace and settings, cached between runs (like Nx's project graph cache).

A warm ``vx run`` loads one pickle instead of parsing every pyproject.toml and importing
pydantic. The entry is valid while vx's version, the loaded plugins, the ``VX_*``
environment, and the stat of every config file and of every directory the member globs
list are unchanged.
"""

from __future__ import annotations

import contextlib
import copyreg
import os
import pickle
import sys
from collections.abc import Iterable
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, BinaryIO

import blake3

from vx._version import __version__
from vx.fileio import atomic_write
from vx.usercache import file_identity
from vx.workspace import Project, TaskDefinition, Workspace

__all__ = ["SettingsView", "WorkspaceCache", "freeze_settings"]

_FORMAT = 2  # 2: projects and task definitions pickled as constructor calls
#: Set by vx for tasks, or read by hand and not part of the settings: they do not change
#: the configuration (``VX_IPC`` differs in every task, so a vx run inside a task would
#: never find its workspace cache).
_IGNORED_ENV = frozenset(
    {
        *("VX_TASK_ID", "VX_PROJECT_DIR", "VX_WORKSPACE_ROOT", "VX_IPC"),
        *("VX_DAEMON_DIR", "VX_NO_ENTRYPOINT_CACHE", "VX_NO_GIT_LISTING"),
        *("VX_PLUGINS", "VX_DISABLE_PLUGIN_AUTOLOAD"),  # in the key as the loaded plugins
    }
)
#: Values of ``VX_DAEMON`` that validate and are read by hand (the warm server's client):
#: switching between them (``VX_DAEMON=0`` for one run) must not revalidate everything.
_DAEMON_VALUES = frozenset({"", "auto", "1", "true", "yes", "on", "0", "false", "no", "off"})


def _configuring(name: str, value: str) -> bool:
    """Whether a ``VX_*`` variable can change the validated settings."""
    if name == "VX_DAEMON":
        return value not in _DAEMON_VALUES  # others are validated (a bad one is refused)
    return name.startswith("VX_") and name not in _IGNORED_ENV


class SettingsView:
    """Validated settings as plain attributes (what ``config.settings`` / ``config.section``
    return when they come from the cache); ``model_dump()`` gives the dict."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def model_dump(self) -> dict[str, Any]:
        return {key: _thaw(value) for key, value in self.__dict__.items()}

    def __repr__(self) -> str:
        return f"SettingsView({self.model_dump()!r})"


def _thaw(value: Any) -> Any:
    if isinstance(value, SettingsView):
        return value.model_dump()
    if isinstance(value, dict):
        return {key: _thaw(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_thaw(item) for item in value]
    return value


def freeze_settings(value: Any) -> Any:
    """A validated pydantic model (recursively) as :class:`SettingsView` objects."""
    fields = getattr(type(value), "model_fields", None)
    if fields is not None:
        return SettingsView({name: freeze_settings(getattr(value, name)) for name in fields})
    if isinstance(value, dict):
        return {key: freeze_settings(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [freeze_settings(item) for item in value]
    return value


def _layout() -> tuple[tuple[str, ...], ...]:
    """The fields of the pickled classes: a changed model never loads an old pickle."""
    from dataclasses import fields

    from vx.workspace import Project, TaskDefinition

    return tuple(tuple(f.name for f in fields(cls)) for cls in (Workspace, Project, TaskDefinition))


class WorkspaceCache:
    """``.vx/workspace.pickle`` for one invocation's plugins and environment."""

    def __init__(self, root: Path, plugins: Iterable[tuple[str, str]]) -> None:
        self.path = root / ".vx" / "workspace.pickle"
        env = sorted((k, v) for k, v in os.environ.items() if _configuring(k, v))
        # The root itself: a copied checkout (with its .vx) must not load the original's.
        key = (str(root.resolve()), sorted(plugins), env, _layout())
        digest = blake3.blake3(repr(key).encode()).hexdigest()
        self.signature = (_FORMAT, __version__, sys.version_info[:2], digest)

    def load(self) -> tuple[Workspace, Any] | None:
        """The cached ``(workspace, settings view)`` if still valid."""
        try:
            with open(self.path, "rb") as handle:
                header = pickle.load(handle)
                if not isinstance(header, dict) or header.get("signature") != self.signature:
                    return None
                for path, recorded in header["stats"]:
                    if file_identity(path) != recorded:
                        return None
                workspace, settings = pickle.load(handle)
        except _UNREADABLE:
            return None
        if not isinstance(workspace, Workspace):
            return None
        return workspace, settings

    def save(self, workspace: Workspace, settings: Any) -> None:
        """Best effort; a workspace whose loader cannot list what it read is not cached."""
        if not workspace.config_files:
            return
        watched = [*workspace.config_files, *workspace.watch_dirs]
        header = {
            "signature": self.signature,
            "stats": [(str(p), file_identity(p)) for p in watched],
        }

        def write(handle: BinaryIO) -> None:
            pickle.dump(header, handle, protocol=pickle.HIGHEST_PROTOCOL)
            pickler = pickle.Pickler(handle, protocol=pickle.HIGHEST_PROTOCOL)
            pickler.dispatch_table = {
                **copyreg.dispatch_table,
                type(self.path): _reduce_path,
                Project: _reduce_dataclass,
                TaskDefinition: _reduce_dataclass,
            }
            # What decides validity is in the header; the loaded workspace needs no copy.
            pickler.dump((replace(workspace, config_files=(), watch_dirs=()), settings))

        with contextlib.suppress(pickle.PicklingError, TypeError, AttributeError):
            atomic_write(self.path, write)


_UNREADABLE = (
    OSError,
    pickle.UnpicklingError,
    EOFError,
    AttributeError,
    ImportError,
    TypeError,
    ValueError,
    KeyError,
)


def _reduce_path(path: Path) -> tuple[type[Path], tuple[str]]:
    """Pickle paths as one string: much faster to load than pathlib's parts tuple."""
    return type(path), (str(path),)


def _reduce_dataclass(value: Project | TaskDefinition) -> tuple[type[Any], tuple[Any, ...]]:
    """Pickle a frozen dataclass as a call of its constructor with its fields in order:
    the default for slotted dataclasses (``_dataclass_setstate``) walks ``fields()`` for
    every object, which was most of loading a 2,000-project workspace."""
    return type(value), tuple(getattr(value, name) for name in _FIELDS[type(value)])


_FIELDS = {klass: tuple(f.name for f in fields(klass)) for klass in (Project, TaskDefinition)}
