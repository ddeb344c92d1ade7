"""The workspace model: projects and the tasks they declare (validated, immutable)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ROOT_PROJECT", "Project", "TaskDefinition", "Workspace", "normalize_name"]

#: Name of the workspace-root project when its pyproject declares no ``[project].name``.
ROOT_PROJECT = "//"

_NORMALIZE = re.compile(r"[-_.]+")


def normalize_name(name: str) -> str:
    """PEP 503 normalisation: ``Acme_Core`` -> ``acme-core``."""
    return _NORMALIZE.sub("-", name).lower()


@dataclass(frozen=True, slots=True)
class TaskDefinition:
    """A task as declared in ``[tool.vx.tasks.<name>]``, merged with workspace defaults."""

    name: str
    cmd: str | tuple[str, ...] | None
    depends_on: tuple[str, ...] = ()
    inputs: tuple[str, ...] | None = None
    outputs: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    pass_env: tuple[str, ...] = ()
    cache: bool = True
    cwd: str = "."
    retries: int | None = None
    """Extra attempts after a failure; None: the workspace default (``[tool.vx] retries``).
    Not part of the cache key."""
    persistent: bool = False
    """A long-running process (dev server, database): never cached, never "done"; its
    dependents start once it is ready (see docs/watch.md)."""
    ready: tuple[str, str] | None = None
    """Readiness probe of a persistent task: ``("port", "8000")``, ``("log", text)`` or
    ``("http", url)``; None means ready as soon as it is started."""
    ready_timeout: float = 30.0
    """Seconds the probe may take before the persistent task fails."""
    depends_on_template: bool = False
    """Whether ``depends_on`` comes from the root's ``[tool.vx.defaults.tasks]`` template
    (error messages then name that file and key)."""
    plugin_settings: Mapping[str, Any] = field(default_factory=dict)
    """Validated values of the plugin-owned task keys this task sets (``vx_task_settings``),
    keyed by task key; models are frozen into read-only attribute views."""
    requires: tuple[str, ...] = ()
    """Resources a machine must offer to run the task (``"gpu"``, ``"mem=8"``); used by
    remote executors (Dask worker resources), ignored by local execution, not in the key."""


@dataclass(frozen=True, slots=True)
class Project:
    """One workspace member (or the root project)."""

    name: str
    """PEP 503-normalised name; the ``project`` part of task ids."""
    path: Path
    """Absolute directory of the project."""
    relpath: str
    """POSIX path relative to the workspace root (``"."`` for the root project)."""
    dependencies: tuple[str, ...] = ()
    """Names of workspace projects this project depends on."""
    tasks: Mapping[str, TaskDefinition] = field(default_factory=dict)

    @property
    def pyproject(self) -> Path:
        """The file the project is declared in (named in configuration errors)."""
        return self.path / "pyproject.toml"


@dataclass(frozen=True, slots=True)
class Workspace:
    """All projects of a workspace, keyed by normalised name, in a stable order."""

    root: Path
    projects: Mapping[str, Project]
    global_inputs: tuple[str, ...] = ()
    global_env: tuple[str, ...] = ()
    config_files: tuple[Path, ...] = ()
    """Every file the workspace was read from (the validated workspace is cached until one
    of them changes); empty means "do not cache"."""
    watch_dirs: tuple[Path, ...] = ()
    """Directories whose listing decided the members (a new project invalidates the cache)."""
    warnings: tuple[str, ...] = ()
    """Problems that do not stop a run but leave the graph incomplete (shown by every command
    that loads the workspace, cached or not)."""

    def project_for_path(self, path: Path) -> Project | None:
        """Return the innermost project containing ``path``, if any."""
        best: Project | None = None
        for project in self.projects.values():
            inside = path == project.path or project.path in path.parents
            if inside and (best is None or len(project.path.parts) > len(best.path.parts)):
                best = project
        return best
