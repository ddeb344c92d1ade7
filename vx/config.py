"""Finding the workspace root, reading TOML, and the ``Config`` object every hook receives."""

from __future__ import annotations

import argparse
import os
import re
import types
import typing
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from vx.errors import ConfigError, UsageError, did_you_mean
from vx.stash import Stash
from vx.usercache import cached_toml

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from vx.plugin_manager import HookRelay, VxPluginManager
    from vx.settings import CoreSettings, TaskModels
    from vx.workspace import Workspace
    from vx.workspace_cache import WorkspaceCache

__all__ = ["Config", "find_workspace_root", "format_validation_error", "read_toml"]


def read_toml(path: Path) -> dict[str, Any]:
    """Parse ``path``; a syntax error names the file, line and column."""
    import tomllib

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=str(path)) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None


def tool_vx(data: dict[str, Any]) -> dict[str, Any] | None:
    tool = data.get("tool")
    table = tool.get("vx") if isinstance(tool, dict) else None
    return table if isinstance(table, dict) else None


def find_workspace_root(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """Nearest ancestor whose pyproject ``[tool.vx]`` declares ``members``, else nearest with
    ``[tool.vx]``. Returns ``(directory, parsed pyproject)``."""
    nearest: tuple[Path, dict[str, Any]] | None = None
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if not candidate.is_file():
            continue
        data = cached_toml(candidate, read_toml)
        table = tool_vx(data)
        if table is None:
            continue
        if "members" in table:
            return directory, data
        if nearest is None:
            nearest = (directory, data)
    return nearest


_UNION_TAG = re.compile(r"^(str|int|float|bool|none|list\[.*\]|dict\[.*\]|[a-z-]+\[.*\])$")


def _key_path(loc: tuple[int | str, ...], prefix: str) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the model reached by following ``loc`` from ``model``."""
    from pydantic import BaseModel

    def model_in(annotation: Any) -> Any:
        # ``Model | None`` -> ``Model``; containers are left for the next ``loc`` part
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            for arg in typing.get_args(annotation):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    return arg
        return annotation

    current: Any = model
    for part in loc:
        fields = getattr(current, "model_fields", None)
        if fields is not None and isinstance(part, str) and part in fields:
            current = model_in(fields[part].annotation)
        else:  # a list index or a dict key: the item type
            args = typing.get_args(current)
            current = model_in(args[-1]) if args else None
    return list(getattr(current, "model_fields", {}))


def format_validation_error(
    exc: ValidationError,
    file: str,
    model: type[BaseModel],
    prefix: str = "tool.vx",
    env_prefix: str | None = None,
) -> ConfigError:
    """Turn pydantic's errors into one message naming the file (or env var), keys and fix."""
    lines: list[str] = []
    seen: dict[str, int] = {}
    for error in exc.errors():
        loc = tuple(p for p in error["loc"] if not (isinstance(p, str) and _UNION_TAG.match(p)))
        key = _key_path(loc, prefix)
        source = file
        if env_prefix:
            env_name = env_prefix + "__".join(str(p) for p in loc).upper()
            if env_name in {name.upper() for name in os.environ}:
                source, key = f"environment variable {env_name}", ""
        kind = error["type"]
        if kind == "extra_forbidden":
            name = str(loc[-1])
            known = _fields_at(model, loc[:-1])
            hint = did_you_mean(name, known) or (
                f"; known keys: {', '.join(known)}" if known else ""
            )
            message = f"unknown key '{name}'{hint}"
        elif kind == "missing":
            message = "required key is missing"
        else:
            got = repr(error.get("input"))
            message = error["msg"].rstrip(".").removeprefix("Value error, ")
            if f"got {got}" not in message:
                message += f", got {got[:60]}"
        where = f"{source}: {key}" if key else source
        if where in seen:
            lines[seen[where]] += f"; or {message[0].lower()}{message[1:]}"
            continue
        seen[where] = len(lines)
        lines.append(f"{where}: {message}")
    return ConfigError("\n".join(lines))


class Config:
    """The parsed command line, the plugins and (lazily) the validated settings and workspace."""

    def __init__(
        self,
        pluginmanager: VxPluginManager,
        option: argparse.Namespace,
        invocation_dir: Path,
        root: Path | None,
        root_data: dict[str, Any] | None,
    ) -> None:
        self.pluginmanager = pluginmanager
        self.option = option
        self.invocation_dir = invocation_dir
        self.root = root
        self.root_data = root_data or {}
        self.stash = Stash()
        """Per-run state of plugins, typed by :class:`~vx.StashKey` keys."""
        self.args: list[str] = []
        """The command-line arguments as given (without the program name)."""
        self.started: float | None = None
        """``time.monotonic()`` when the command started (set by the CLI; the terminal's
        ``Time:`` is the wall time of the whole command)."""
        self._unsaved: tuple[Workspace, Any] | None = None

    @property
    def hook(self) -> HookRelay:
        return self.pluginmanager.hooks

    @property
    def root_file(self) -> Path:
        return self.require_root() / "pyproject.toml"

    def require_root(self) -> Path:
        if self.root is None:
            raise UsageError(
                f"no vx workspace found in {self.invocation_dir} or any parent directory; "
                'create a pyproject.toml with a [tool.vx] table (members = ["packages/*"]), '
                "or pass -C DIR"
            )
        return self.root

    @property
    def raw_settings(self) -> dict[str, Any]:
        """The root's ``[tool.vx]`` table as parsed, before validation."""
        return tool_vx(self.root_data) or {}

    @cached_property
    def _workspace_cache(self) -> WorkspaceCache:
        from vx.workspace_cache import WorkspaceCache

        plugins = [
            (name, f"{info.version}:{info.module}")
            for name, info in self.pluginmanager.infos.items()
        ]
        return WorkspaceCache(self.require_root(), plugins)

    @cached_property
    def _cached(self) -> tuple[Workspace, Any] | None:
        return self._workspace_cache.load()

    @cached_property
    def settings(self) -> CoreSettings:
        """The validated root ``[tool.vx]`` table, including every plugin's section.

        On warm runs this comes from the workspace cache as a read-only
        :class:`~vx.workspace_cache.SettingsView` with the same attributes.
        """
        cached = self._cached
        if cached is not None:
            return cast("CoreSettings", cached[1])
        return self._validate_settings()

    def _validate_settings(self) -> CoreSettings:
        from pydantic import Field, ValidationError, create_model
        from pydantic_settings import SettingsError

        from vx.settings import CoreSettings, TaskSettings

        models = self.hook.settings_models()
        fields: dict[str, Any] = {
            name: (model, Field(default_factory=model)) for name, model in models.items()
        }
        for name in self.pluginmanager.blocked_names:
            if name not in fields and name not in CoreSettings.model_fields:
                fields[name] = (Any, None)  # a blocked plugin's section: accepted, not validated
        task_models = self.task_models
        if task_models.task is not TaskSettings:
            fields["tasks"] = (dict[str, task_models.task], Field(default_factory=dict))  # type: ignore[name-defined]
            fields["defaults"] = (task_models.defaults, Field(default_factory=task_models.defaults))
        model = create_model("VxSettings", __base__=CoreSettings, **fields)
        self.require_root()
        try:
            return model(**self.raw_settings)
        except ValidationError as exc:
            raise format_validation_error(
                exc, str(self.root_file), model, env_prefix="VX_"
            ) from None
        except SettingsError as exc:
            raise ConfigError(f"invalid VX_* environment variable: {exc}") from None

    def reload(self, *, revalidate: bool = True) -> None:
        """Read the configuration again (``vx watch``, before each run).

        The root ``pyproject.toml`` is parsed now (a syntax error raises
        :class:`~vx.errors.ConfigError`); settings and the workspace are computed again on
        next use: validated from the files when ``revalidate`` (a ``pyproject.toml`` changed),
        else taken from the workspace cache while the stats of the files and directories it
        was built from are unchanged (a new project directory invalidates it). Plugins are
        not reloaded.
        """
        self.root_data = read_toml(self.require_root() / "pyproject.toml")
        for name in ("settings", "workspace", "_cached"):
            self.__dict__.pop(name, None)
        if revalidate:
            self.__dict__["_cached"] = None

    @cached_property
    def task_models(self) -> TaskModels:
        """Task schema models including plugin-owned task keys (``vx_task_settings``)."""
        from vx.errors import PluginError
        from vx.settings import task_models

        try:
            return task_models(self.hook.task_settings(), self.pluginmanager.blocked_names)
        except ValueError as exc:
            raise PluginError(str(exc)) from None

    def section(self, name: str) -> Any:
        """The validated ``[tool.vx.<name>]`` model of a plugin."""
        return getattr(self.settings, name)

    @cached_property
    def workspace(self) -> Workspace:
        workspace = self._load_workspace()
        if workspace.warnings:
            from vx import _log

            for warning in workspace.warnings:
                _log.warning(warning)
        return workspace

    def _load_workspace(self) -> Workspace:
        cached = self._cached
        if cached is not None:
            return cached[0]
        root = self.require_root()
        workspace = self.hook.load_workspace(root, self)
        if workspace is None:
            raise ConfigError("no plugin could load the workspace", file=str(self.root_file))
        from vx.workspace_cache import freeze_settings

        self._unsaved = (workspace, freeze_settings(self.settings))
        return workspace

    def save_state(self) -> None:
        """Write the validated workspace to its cache; called once the command has completed
        (a command that fails on bad input leaves no ``.vx/`` behind)."""
        unsaved, self._unsaved = self._unsaved, None
        if unsaved is not None:
            self._workspace_cache.save(*unsaved)
