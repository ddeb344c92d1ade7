"""Translate a Turborepo ``turbo.json`` into vx task templates.

What maps: ``tasks`` (or v1 ``pipeline``) with ``dependsOn``, ``inputs``, ``outputs``,
``env``, ``passThroughEnv`` and ``cache``; ``globalDependencies`` and ``globalEnv``. A
project's command for a task is its ``package.json`` script of the same name, copied as is.
Everything else is listed by :attr:`TurboConfig.notes`, never silently dropped.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vx import ConfigError
from vx_init.sources import brace_expand

__all__ = ["TurboConfig", "package_scripts", "read_turbo"]

_COMMENTS = re.compile(r'("(?:\\.|[^"\\])*")|//[^\n]*|/\*.*?\*/', re.DOTALL)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
_TRANSLATED = {"dependsOn", "inputs", "outputs", "env", "passThroughEnv", "cache"}


@dataclass
class TurboConfig:
    templates: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``{task: template}``: ``[tool.vx.defaults.tasks.<task>]`` without ``cmd``."""
    project_tasks: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    """``{package name: {task: table}}`` from ``package#task`` entries."""
    persistent: set[str] = field(default_factory=set)
    global_inputs: list[str] = field(default_factory=list)
    global_env: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _load_jsonc(path: Path) -> Any:
    text = path.read_text(errors="replace")
    stripped = _COMMENTS.sub(lambda m: m.group(1) or "", text)
    try:
        return json.loads(_TRAILING_COMMA.sub(r"\1", stripped))
    except ValueError as exc:
        raise ConfigError(
            f"invalid JSON: {exc}; fix it and run vx init again", file=str(path)
        ) from None


def package_scripts(directory: Path) -> tuple[str | None, dict[str, str]]:
    """``(package name, scripts)`` of ``directory/package.json`` (``(None, {})`` if absent)."""
    path = directory / "package.json"
    if not path.is_file():
        return None, {}
    data = _load_jsonc(path)
    if not isinstance(data, dict):
        return None, {}
    scripts = data.get("scripts")
    name = data.get("name")
    return (
        name if isinstance(name, str) else None,
        {k: v for k, v in scripts.items() if isinstance(v, str)}
        if isinstance(scripts, dict)
        else {},
    )


def _globs(values: Any, task: str, key: str, notes: list[str]) -> list[str]:
    out: list[str] = []
    for value in values if isinstance(values, list) else []:
        if not isinstance(value, str):
            continue
        if value == "$TURBO_DEFAULT$":
            out.append("**")
        elif "$TURBO_ROOT$" in value or value.startswith("../"):
            notes.append(f"turbo.json: {task}.{key}: {value!r} points outside the project")
        else:
            out.extend(brace_expand(value))
    return out


def _task(name: str, spec: dict[str, Any], config: TurboConfig) -> dict[str, Any]:
    notes = config.notes
    table: dict[str, Any] = {}
    depends_on: list[str] = []
    env: list[str] = []
    for item in spec.get("dependsOn", []) or []:
        if not isinstance(item, str):
            continue
        if item.startswith("$"):  # turbo v1: an environment dependency
            env.append(item[1:])
        else:
            depends_on.append(item)
    if depends_on:
        table["depends_on"] = depends_on
    if "inputs" in spec:
        inputs = _globs(spec["inputs"], name, "inputs", notes)
        if inputs and inputs != ["**"]:
            table["inputs"] = inputs
    outputs = _globs(spec.get("outputs"), name, "outputs", notes)
    if outputs:
        table["outputs"] = outputs
    for item in spec.get("env", []) or []:
        if isinstance(item, str) and item.startswith("!"):
            notes.append(f"turbo.json: {name}.env: the exclusion {item!r} has no vx equivalent")
        elif isinstance(item, str):
            env.append(item)
    if env:
        table["env"] = env
    passthrough = [v for v in spec.get("passThroughEnv", []) or [] if isinstance(v, str)]
    if passthrough:
        table["pass_env"] = passthrough
    if spec.get("cache") is False:
        table["cache"] = False
    for key in sorted(set(spec) - _TRANSLATED):
        if key == "persistent" and spec[key]:
            config.persistent.add(name)
            notes.append(
                f"turbo.json: {name} is persistent (a long-running server); not translated"
            )
        elif key != "persistent":
            notes.append(f"turbo.json: {name}.{key} has no vx equivalent; not translated")
    return table


def read_turbo(root: Path) -> TurboConfig | None:
    """Read ``root/turbo.json`` (comments and trailing commas allowed), or None."""
    path = root / "turbo.json"
    if not path.is_file():
        return None
    data = _load_jsonc(path)
    if not isinstance(data, dict):
        raise ConfigError("expected a JSON object; fix it and run vx init again", file=str(path))
    config = TurboConfig()
    tasks = data.get("tasks", data.get("pipeline"))
    for key, spec in (tasks if isinstance(tasks, dict) else {}).items():
        if not isinstance(spec, dict):
            continue
        package, sep, task = key.rpartition("#")
        table = _task(key, spec, config)
        if not sep:
            config.templates[task] = table
        elif package == "/" or package == "":
            config.notes.append(f"turbo.json: root task '{key}' is not translated")
        else:
            config.project_tasks.setdefault(package, {})[task] = table
    for item in data.get("globalDependencies", []) or []:
        if isinstance(item, str) and item.startswith("$"):
            config.global_env.append(item[1:])
        elif isinstance(item, str):
            config.global_inputs.extend(brace_expand(item))
    config.global_env.extend(v for v in data.get("globalEnv", []) or [] if isinstance(v, str))
    for key in ("globalPassThroughEnv", "globalDotEnv", "remoteCache", "ui", "daemon", "envMode"):
        if key in data:
            config.notes.append(f"turbo.json: {key} has no vx equivalent; not translated")
    for extra in sorted(root.glob("*/*/turbo.json")) + sorted(root.glob("*/turbo.json")):
        if extra != path:
            relative = extra.relative_to(root).as_posix()
            config.notes.append(f"{relative}: package configuration not translated")
    return config
