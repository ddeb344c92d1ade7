"""Pydantic models of ``[tool.vx]`` (imported only when configuration is validated)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from vx.runoptions import parse_concurrency

__all__ = [
    "CoreSettings",
    "ProjectSettings",
    "ReadySettings",
    "TaskModels",
    "TaskSettings",
    "TemplateSettings",
    "parse_duration",
    "task_models",
]


def _dependency_syntax(item: str) -> str:
    name = item.removeprefix("^").rpartition("#")[2]
    if not name or item.count("#") > 1 or (item.startswith("^") and "#" in item):
        raise ValueError(f"invalid dependency {item!r}: expected 'task', '^task' or 'project#task'")
    return item


#: One ``depends_on`` entry; validated per item so errors name its index.
Dependency = Annotated[str, AfterValidator(_dependency_syntax)]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: float | str) -> float:
    """``30``, ``"30s"``, ``"500ms"``, ``"2m"`` -> seconds (> 0). Raises ValueError."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        match = _DURATION.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(
                f"expected seconds or a duration like '30s', '500ms', '2m', got {value!r}"
            )
        seconds = float(match.group(1)) * _DURATION_UNITS[match.group(2) or "s"]
    if seconds <= 0:
        raise ValueError(f"must be greater than 0, got {value!r}")
    return seconds


class ReadySettings(BaseModel):
    """``ready = {port = N}``, ``{log = "text"}`` or ``{http = "URL"}`` of a persistent task."""

    model_config = ConfigDict(extra="forbid")

    port: int | None = Field(default=None, ge=1, le=65535)
    log: str | None = Field(default=None, min_length=1)
    http: str | None = None

    @field_validator("http")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    @model_validator(mode="after")
    def _exactly_one(self) -> ReadySettings:
        if len(self.model_fields_set) != 1:
            raise ValueError("set exactly one of port, log or http")
        return self

    def probe(self) -> tuple[str, str]:
        """``("port", "8000")``, ``("log", text)`` or ``("http", url)``."""
        kind = next(iter(self.model_fields_set))
        return kind, str(getattr(self, kind))


class TaskSettings(BaseModel):
    """``[tool.vx.tasks.<name>]`` and ``[tool.vx.defaults.tasks.<name>]``."""

    model_config = ConfigDict(extra="forbid")

    cmd: str | list[str] | None = None
    depends_on: list[Dependency] = Field(default_factory=list)
    inputs: list[str] | None = None
    outputs: list[str] = Field(default_factory=list)
    env: list[str] = Field(default_factory=list)
    pass_env: list[str] = Field(default_factory=list)
    cache: bool = True
    cwd: str = "."
    retries: int | None = Field(default=None, ge=0)
    """Run a failing command again up to this many times (default: ``[tool.vx] retries``)."""
    persistent: bool = False
    ready: ReadySettings | None = None
    ready_timeout: float = 30.0

    @field_validator("ready_timeout", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> float:
        return parse_duration(value)

    requires: list[str] = Field(default_factory=list)

    @field_validator("cmd")
    @classmethod
    def _nonempty_cmd(cls, value: str | list[str] | None) -> str | list[str] | None:
        if value is not None and not (value.strip() if isinstance(value, str) else value):
            raise ValueError("must not be empty (omit `cmd` for a task that only groups others)")
        return value

    @field_validator("requires")
    @classmethod
    def _resource_names(cls, value: list[str]) -> list[str]:
        for item in value:
            name, _, amount = item.partition("=")
            if not name.strip() or (amount and not _is_number(amount)):
                raise ValueError(f"invalid resource {item!r}: expected 'name' or 'name=amount'")
        return value

    @field_validator("cwd")
    @classmethod
    def _relative_cwd(cls, value: str) -> str:
        if os.path.isabs(value):
            raise ValueError("must be relative to the project directory")
        return value


class TemplateSettings(TaskSettings):
    """``[tool.vx.defaults.tasks.<name>]``: a task template."""

    projects: list[str] | None = None
    """Project-name globs the template applies to without a per-project opt-in (``["*"]``:
    every project; ``!glob`` excludes); None: only projects declaring the task."""

    @field_validator("projects")
    @classmethod
    def _globs(cls, value: list[str] | None) -> list[str] | None:
        for pattern in value or []:
            if not pattern.removeprefix("!").strip():
                raise ValueError("expected project-name globs like 'acme-*' or '*'")
        return value


def _is_number(text: str) -> bool:
    try:
        return float(text) > 0
    except ValueError:
        return False


class DefaultsSettings(BaseModel):
    """``[tool.vx.defaults]``: templates projects opt into (or that name their projects)."""

    model_config = ConfigDict(extra="forbid")

    tasks: dict[str, TemplateSettings] = Field(default_factory=dict)


class ProjectSettings(BaseModel):
    """``[tool.vx]`` of a member project."""

    model_config = ConfigDict(extra="forbid")

    depends_on: list[str] = Field(default_factory=list)
    tasks: dict[str, TaskSettings] = Field(default_factory=dict)
    skip_templates: list[str] = Field(default_factory=list)
    """Templates (``[tool.vx.defaults.tasks.<name>]`` with ``projects``) not to apply here."""


class TaskModels(NamedTuple):
    """The task, template, defaults and project models, extended with plugin-owned task
    keys."""

    task: type[TaskSettings]
    template: type[TemplateSettings]
    defaults: type[DefaultsSettings]
    project: type[ProjectSettings]
    plugin_keys: tuple[str, ...]


def task_models(plugin_keys: Mapping[str, Any], ignored: Iterable[str] = ()) -> TaskModels:
    """Models accepting the plugin-owned task keys (``vx_task_settings``) besides the built-in
    ones; each plugin key is optional and only stored when a task sets it. ``ignored`` keys
    (those of plugins blocked with ``-p no:NAME``) are accepted, never validated or stored."""
    ignored = [key for key in ignored if key not in plugin_keys]
    if not plugin_keys and not ignored:
        return TaskModels(TaskSettings, TemplateSettings, DefaultsSettings, ProjectSettings, ())
    for key in plugin_keys:
        if key in TemplateSettings.model_fields:
            raise ValueError(f"plugin task key '{key}' shadows a built-in task key")
    fields: dict[str, Any] = {key: (kind | None, None) for key, kind in plugin_keys.items()}
    fields.update((key, (Any, None)) for key in ignored if key not in TemplateSettings.model_fields)
    task = create_model("TaskSettings", __base__=TaskSettings, **fields)
    template = create_model("TemplateSettings", __base__=TemplateSettings, **fields)
    templates: tuple[Any, Any] = (dict[str, template], Field(default_factory=dict))  # type: ignore[valid-type]
    tasks: tuple[Any, Any] = (dict[str, task], Field(default_factory=dict))  # type: ignore[valid-type]
    defaults = create_model("DefaultsSettings", __base__=DefaultsSettings, tasks=templates)
    project = create_model("ProjectSettings", __base__=ProjectSettings, tasks=tasks)
    return TaskModels(task, template, defaults, project, tuple(plugin_keys))


#: Keys only valid in the workspace root's ``[tool.vx]``.
ROOT_ONLY_KEYS = (
    "members",
    "global_inputs",
    "global_env",
    "plugins",
    "required_plugins",
    "concurrency",
    "env_mode",
    "grace_period",
    "retries",
    "fail_on_flaky",
    "runner_aware",
    "defaults",
)


class _ListFriendlyEnv(EnvSettingsSource):
    """``VX_GLOBAL_ENV=A,B`` works as well as JSON; ``VX_PLUGINS`` is read by the loader."""

    def prepare_field_value(
        self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool
    ) -> Any:
        if (
            isinstance(value, str)
            and not value.lstrip().startswith(("[", "{"))
            and getattr(field.annotation, "__origin__", None) is list
        ):
            return [item.strip() for item in value.split(",") if item.strip()]
        return super().prepare_field_value(field_name, field, value, value_is_complex)

    def __call__(self) -> dict[str, Any]:
        data = super().__call__()
        data.pop("plugins", None)
        return data


class CoreSettings(BaseSettings):
    """The workspace root's ``[tool.vx]`` table; ``VX_<KEY>`` overrides a key."""

    model_config = SettingsConfigDict(
        env_prefix="VX_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    members: list[str] = Field(default_factory=list)
    global_inputs: list[str] = Field(default_factory=list)
    global_env: list[str] = Field(default_factory=list)
    plugins: list[str] = Field(default_factory=list)
    required_plugins: list[str] = Field(default_factory=list)
    concurrency: int | str | None = None
    env_mode: Literal["strict", "loose"] = "strict"
    grace_period: float = Field(default=5.0, ge=0)
    retries: int = Field(default=0, ge=0)
    """Default ``retries`` of every task."""
    fail_on_flaky: bool = False
    """Exit 1 when a task was flaky (failed, then passed on a retry)."""
    runner_aware: bool = True
    """Serve each task a runner-aware channel (``VX_IPC``, see docs/runner-aware.md)."""
    daemon: bool | Literal["auto"] = "auto"
    """The warm server (docs/daemon.md): auto = on a developer machine, off on CI."""
    daemon_idle_timeout: float | str = 3 * 3600.0
    """The warm server exits after this long without a request (seconds or ``"30m"``)."""
    defaults: DefaultsSettings = Field(default_factory=DefaultsSettings)
    depends_on: list[str] = Field(default_factory=list)
    tasks: dict[str, TaskSettings] = Field(default_factory=dict)
    skip_templates: list[str] = Field(default_factory=list)

    @field_validator("daemon", mode="before")
    @classmethod
    def _daemon(cls, value: Any) -> Any:
        # VX_DAEMON= (set but empty) means "not said", as the client reads it.
        return "auto" if isinstance(value, str) and not value.strip() else value

    @field_validator("daemon_idle_timeout")
    @classmethod
    def _idle_timeout(cls, value: float | str) -> float | str:
        parse_duration(value)
        return value

    @field_validator("concurrency")
    @classmethod
    def _concurrency(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            parse_concurrency(value)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment variables override the file (which arrives as init kwargs).
        return (_ListFriendlyEnv(settings_cls), init_settings)
