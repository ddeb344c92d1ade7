"""The controlled environment a task's process receives."""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from vx.graph import Task

__all__ = ["BASE_ENV", "TaskEnvironments", "resolve_env_names"]

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


class TaskEnvironments:
    """Builds each task's environment; the part shared by every task is resolved once.

    Strict mode: the base set, ``global_env``, the task's ``env`` and ``pass_env`` only;
    loose mode: everything. Plus ``PYTHONUNBUFFERED=1`` (unless set), ``VX_TASK_ID``,
    ``VX_PROJECT_DIR`` and ``VX_WORKSPACE_ROOT``.
    """

    def __init__(
        self,
        *,
        root: Path,
        global_env: Iterable[str],
        loose: bool,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.source = os.environ if environ is None else environ
        self.loose = loose
        shared = (
            dict(self.source)
            if loose
            else {
                n: self.source[n] for n in resolve_env_names((*BASE_ENV, *global_env), self.source)
            }
        )
        shared.setdefault("PYTHONUNBUFFERED", "1")
        shared["VX_WORKSPACE_ROOT"] = str(root)
        self.shared = shared

    def for_task(self, task: Task) -> dict[str, str]:
        env = dict(self.shared)
        if not self.loose:
            definition = task.definition
            for name in resolve_env_names((*definition.env, *definition.pass_env), self.source):
                env[name] = self.source[name]
        env["VX_TASK_ID"] = task.id
        env["VX_PROJECT_DIR"] = str(task.project.path)
        return env
