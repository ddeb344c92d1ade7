"""The controlled environment a task's process receives."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from vx.graph import Task

__all__ = ["BASE_ENV", "resolve_env_names", "task_environment"]

#: Passed to every task in strict mode (not part of the cache key).
BASE_ENV = (
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LANGUAGE",
    "LC_*",
    "TERM",
    "COLORTERM",
    "NO_COLOR",
    "FORCE_COLOR",
    "TMPDIR",
    "TEMP",
    "TMP",
    "TZ",
    "CI",
    "VIRTUAL_ENV",
    "SYSTEMROOT",
)


def resolve_env_names(patterns: Iterable[str], environ: Mapping[str, str]) -> list[str]:
    """Names in ``environ`` matching ``patterns`` (``NAME`` or a glob like ``AWS_*``), sorted."""
    names: set[str] = set()
    for pattern in patterns:
        if any(char in pattern for char in "*?["):
            names.update(fnmatch.filter(environ, pattern))
        elif pattern in environ:
            names.add(pattern)
    return sorted(names)


def task_environment(
    task: Task,
    *,
    root: Path,
    global_env: Iterable[str],
    loose: bool,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Strict mode: the base set, ``global_env``, the task's ``env`` and ``pass_env`` only;
    loose mode: everything. Plus ``VX_TASK_ID``, ``VX_PROJECT_DIR``, ``VX_WORKSPACE_ROOT``."""
    source = os.environ if environ is None else environ
    if loose:
        env = dict(source)
    else:
        definition = task.definition
        patterns = (*BASE_ENV, *global_env, *definition.env, *definition.pass_env)
        env = {name: source[name] for name in resolve_env_names(patterns, source)}
    env.setdefault("PYTHONUNBUFFERED", "1")
    env["VX_TASK_ID"] = task.id
    env["VX_PROJECT_DIR"] = str(task.project.path)
    env["VX_WORKSPACE_ROOT"] = str(root)
    return env
