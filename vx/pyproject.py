"""Built-in plugin ``workspace``: reads projects and tasks from pyproject.toml files."""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import vx
from vx.config import format_validation_error, read_toml, tool_vx
from vx.errors import ConfigError, CycleError, did_you_mean
from vx.workspace import ROOT_PROJECT, Project, TaskDefinition, Workspace, normalize_name

if TYPE_CHECKING:
    from vx.config import Config
    from vx.settings import CoreSettings, TaskModels, TaskSettings

_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


@vx.hookimpl
def vx_load_workspace(root: Path, config: Config) -> Workspace:
    settings = config.settings
    root_file = root / "pyproject.toml"
    loaded: list[tuple[Path, dict[str, Any]]] = []
    if settings.tasks or settings.depends_on:
        loaded.append((root, config.root_data))
    for directory in _member_dirs(root, settings.members, root_file):
        loaded.append((directory, read_toml(directory / "pyproject.toml")))

    by_name: dict[str, tuple[Path, dict[str, Any]]] = {}
    for directory, data in loaded:
        name = _project_name(directory, data, is_root=directory == root)
        if name in by_name:
            first = by_name[name][0] / "pyproject.toml"
            raise ConfigError(
                f"project name '{name}' is also used by {first}; project names must be unique "
                "(set a distinct [project].name)",
                file=str(directory / "pyproject.toml"),
                key="project.name",
            )
        by_name[name] = (directory, data)

    locked, warnings, lock_file = _dynamic_dependencies(root, by_name)
    projects: dict[str, Project] = {}
    edges: dict[tuple[str, str], tuple[str, str]] = {}
    for name, (directory, data) in by_name.items():
        projects[name] = _project(
            root,
            directory,
            data,
            name,
            by_name,
            settings,
            edges,
            locked.get(name, ()),
            models=config.task_models,
        )
    _check_project_cycles(projects, edges)
    watch_dirs = _watch_dirs(root, settings.members)
    config_files = (root_file, *(d / "pyproject.toml" for d, _ in loaded if d != root))
    if lock_file is not None:  # its stat (or its appearance) invalidates the cached workspace
        config_files = (*config_files, lock_file)
    return Workspace(
        root=root,
        projects=projects,
        global_inputs=tuple(settings.global_inputs),
        global_env=tuple(settings.global_env),
        # A ``**`` members glob cannot be watched cheaply: such workspaces are not cached.
        config_files=config_files if watch_dirs is not None else (),
        watch_dirs=watch_dirs or (),
        warnings=tuple(warnings),
    )


def _has_dynamic_dependencies(data: dict[str, Any]) -> bool:
    project = data.get("project")
    dynamic = project.get("dynamic") if isinstance(project, dict) else None
    return isinstance(dynamic, list) and "dependencies" in dynamic


def _dynamic_dependencies(
    root: Path, by_name: dict[str, tuple[Path, dict[str, Any]]]
) -> tuple[dict[str, tuple[str, ...]], list[str], Path | None]:
    """Edges of projects with dynamic dependencies, from ``uv.lock``: ``(edges by project,
    warnings, the lock file to watch or None when no project is dynamic)``."""
    from vx.uvlock import LOCK_FILE, LockError, read_lock

    dynamic = [name for name, (_, data) in by_name.items() if _has_dynamic_dependencies(data)]
    if not dynamic:
        return {}, [], None
    lock_file = root / LOCK_FILE
    warnings: list[str] = []
    members = None
    unreadable = False
    if lock_file.is_file():
        try:
            members = read_lock(lock_file)
        except LockError as exc:
            unreadable = True
            warnings.append(
                f"{lock_file}: {exc}; the workspace edges of projects with dynamic dependencies "
                f"({', '.join(dynamic)}) are unknown (run `uv lock` to rewrite it)"
            )
    edges: dict[str, tuple[str, ...]] = {}
    for name in dynamic:
        directory, data = by_name[name]
        file = directory / "pyproject.toml"
        member = members.get(name) if members is not None else None
        if member is not None:
            edges[name] = tuple(d for d in member.dependencies if d in by_name and d != name)
        elif members is not None:
            warnings.append(
                f"{lock_file} does not list project '{name}' ({file}), whose dependencies are "
                "dynamic: its workspace edges are unknown (the lock is stale; run `uv lock`)"
            )
        elif not unreadable and not (tool_vx(data) or {}).get("depends_on"):
            warnings.append(
                f"{file}: project '{name}' declares dynamic dependencies, so vx cannot see "
                "which workspace projects it depends on; declare them in its [tool.vx] "
                f"depends_on, or commit a {LOCK_FILE} (uv lock) at the workspace root"
            )
    return edges, warnings, lock_file


def _listed_dirs(root: Path, glob: str) -> set[Path] | None:
    """Directories whose listing decides what ``glob`` matches (None for ``**`` globs)."""
    current = {root}
    listed: set[Path] = set()
    for part in glob.strip("/").split("/"):
        if "**" in part:
            return None
        following: set[Path] = set()
        for directory in current:
            if not directory.is_dir():
                continue
            if any(char in part for char in "*?["):
                listed.add(directory)  # a new or removed entry changes what matches
                following.update(p for p in directory.glob(part) if p.is_dir())
            else:
                child = directory / part
                if not child.is_dir():
                    listed.add(directory)  # watch for it to appear
                following.add(child)
        current = following
    # A pyproject.toml appearing in a matched directory changes that directory's mtime; one
    # that exists is a config file (its removal is noticed through its own stat).
    return listed | {d for d in current if d.is_dir() and not (d / "pyproject.toml").is_file()}


def _watch_dirs(root: Path, members: list[str]) -> tuple[Path, ...] | None:
    watched: set[Path] = set()
    for pattern in members:
        listed = _listed_dirs(root, pattern.removeprefix("!"))
        if listed is None:
            return None
        watched |= listed
    return tuple(sorted(watched))


def _member_dirs(root: Path, members: list[str], root_file: Path) -> list[Path]:
    found: dict[Path, None] = {}
    excluded: set[Path] = set()
    for index, pattern in enumerate(members):
        key = f"tool.vx.members[{index}]"
        negate = pattern.startswith("!")
        glob = pattern[1:] if negate else pattern
        if not glob or Path(glob).is_absolute() or ".." in Path(glob).parts:
            raise ConfigError(
                f"expected a glob relative to the workspace root, got {pattern!r}",
                file=str(root_file),
                key=key,
            )
        matches = sorted(p for p in root.glob(glob) if (p / "pyproject.toml").is_file())
        if negate:
            excluded.update(matches)
            continue
        if not matches:
            dirs = sorted(p for p in root.glob(glob) if p.is_dir())
            detail = (
                f"it matches {len(dirs)} director{'y' if len(dirs) == 1 else 'ies'} but none "
                "holds a pyproject.toml"
                if dirs
                else "it matches no directory"
            )
            raise ConfigError(
                f"members glob {pattern!r} matches no project: {detail} (under {root})",
                file=str(root_file),
                key=key,
            )
        for match in matches:
            if match.resolve() != root.resolve():
                found[match] = None
    return [p for p in found if p not in excluded]


def _project_name(directory: Path, data: dict[str, Any], *, is_root: bool) -> str:
    project = data.get("project")
    declared = project.get("name") if isinstance(project, dict) else None
    if isinstance(declared, str) and declared.strip():
        return normalize_name(declared)
    return ROOT_PROJECT if is_root else normalize_name(directory.name)


def _project(
    root: Path,
    directory: Path,
    data: dict[str, Any],
    name: str,
    by_name: dict[str, Any],
    settings: CoreSettings,
    edges: dict[tuple[str, str], tuple[str, str]],
    locked: tuple[str, ...] = (),
    *,
    models: TaskModels,
) -> Project:
    """The project declared in ``directory``; records where each of its edges was declared
    in ``edges`` (``(project, dependency) -> (file, key)``). ``locked``: its workspace
    dependencies according to ``uv.lock`` (when its own are dynamic)."""
    from pydantic import ValidationError

    from vx.settings import ROOT_ONLY_KEYS

    file = directory / "pyproject.toml"
    is_root = directory == root
    if is_root:
        project_settings = models.project(
            depends_on=settings.depends_on,
            tasks=settings.tasks,
            skip_templates=settings.skip_templates,
        )
    else:
        table = tool_vx(data) or {}
        for key in table:
            if key in ROOT_ONLY_KEYS:
                raise ConfigError(
                    f"'{key}' is only valid in the workspace root's [tool.vx] "
                    f"({root / 'pyproject.toml'}); move it there",
                    file=str(file),
                    key=f"tool.vx.{key}",
                )
        try:
            project_settings = models.project(**table)
        except ValidationError as exc:
            raise format_validation_error(exc, str(file), models.project) from None

    dependencies: dict[str, None] = {}
    project_table = data.get("project")
    declared = project_table.get("dependencies", []) if isinstance(project_table, dict) else []
    for index, requirement in enumerate(declared if isinstance(declared, list) else []):
        match = _REQUIREMENT_NAME.match(requirement) if isinstance(requirement, str) else None
        if match and normalize_name(match.group(1)) in by_name:
            dependencies[normalize_name(match.group(1))] = None
            edges[name, normalize_name(match.group(1))] = (
                str(file),
                f"project.dependencies[{index}]",
            )
    for other in locked:
        dependencies[other] = None
        edges[name, other] = (str(root / "uv.lock"), f"[[package]] '{name}' dependencies")
    for index, other in enumerate(project_settings.depends_on):
        key = normalize_name(other)
        if key not in by_name:
            raise ConfigError(
                f"unknown project '{other}'{did_you_mean(key, by_name)}",
                file=str(file),
                key=f"tool.vx.depends_on[{index}]",
            )
        dependencies[key] = None
        edges[name, key] = (str(file), f"tool.vx.depends_on[{index}]")
    dependencies.pop(name, None)

    defaults = settings.defaults.tasks
    root_file = root / "pyproject.toml"
    tasks = {
        task: _task_definition(
            task,
            task_settings,
            defaults.get(task),
            file,
            root_file,
            plugin_keys=models.plugin_keys,
        )
        for task, task_settings in project_settings.tasks.items()
    }
    for index, skipped in enumerate(project_settings.skip_templates):
        where = {"file": str(file), "key": f"tool.vx.skip_templates[{index}]"}
        if skipped not in defaults:
            raise ConfigError(
                f"no template [tool.vx.defaults.tasks.{skipped}] in {root_file}"
                f"{did_you_mean(skipped, defaults)}",
                **where,
            )
        if skipped in tasks:
            raise ConfigError(
                f"'{skipped}' is skipped and declared ([tool.vx.tasks.{skipped}]) in the same "
                "file; remove one of them",
                **where,
            )
    for task, template in defaults.items():
        if task in tasks or task in project_settings.skip_templates:
            continue
        if _template_applies(template.projects, name, is_root=is_root):
            tasks[task] = _task_definition(
                task,
                type(template)(),
                template,
                root_file,
                root_file,
                inherited=True,
                plugin_keys=models.plugin_keys,
            )
    return Project(
        name=name,
        path=directory,
        relpath="." if is_root else directory.relative_to(root).as_posix(),
        dependencies=tuple(dependencies),
        tasks=tasks,
    )


def _check_project_cycles(
    projects: dict[str, Project], edges: dict[tuple[str, str], tuple[str, str]]
) -> None:
    """A cycle between projects is an error of the workspace (whatever tasks are run), blamed
    on an edge the user declared: a ``[tool.vx] depends_on`` entry when one is in the cycle."""
    from vx.graph import find_cycle

    cycle = find_cycle({name: project.dependencies for name, project in projects.items()})
    if cycle is None:
        return
    pairs = list(itertools.pairwise(cycle))
    links = [edges[pair] for pair in pairs]
    blamed = next((link for link in links if link[1].startswith("tool.vx.")), links[0])
    declared = "; ".join(
        f"{a} -> {b} ({key} in {file})" for (a, b), (file, key) in zip(pairs, links, strict=True)
    )
    raise CycleError(
        f"project dependency cycle: {' -> '.join(cycle)}; declared as: {declared}; "
        "remove one of these edges",
        file=blamed[0],
        key=blamed[1],
    )


def _template_applies(patterns: list[str] | None, project: str, *, is_root: bool) -> bool:
    """Whether a template's ``projects`` globs select ``project``. The root project only
    when named literally (``//``, or its ``[project].name``): a glob never selects it, since
    a command run at the root usually covers the members' files too."""
    import fnmatch

    if not patterns:
        return False
    include = [p for p in patterns if not p.startswith("!")]
    exclude = [p[1:] for p in patterns if p.startswith("!")]
    if is_root:
        names = {ROOT_PROJECT, project}
        return bool(names & set(include)) and not names & set(exclude)
    return any(fnmatch.fnmatchcase(project, p) for p in include) and not any(
        fnmatch.fnmatchcase(project, p) for p in exclude
    )


def _task_definition(
    name: str,
    own: TaskSettings,
    default: TaskSettings | None,
    file: Path,
    root_file: Path,
    *,
    inherited: bool = False,
    plugin_keys: tuple[str, ...] = (),
) -> TaskDefinition:
    values: dict[str, Any] = {}
    if default is not None:
        values.update(
            {key: getattr(default, key) for key in default.model_fields_set if key != "projects"}
        )
    values.update({key: getattr(own, key) for key in own.model_fields_set})
    merged = type(own)(**values)
    if merged.cmd is None and not merged.depends_on:
        if inherited:
            raise ConfigError(
                f"template '{name}' applies to projects (projects = [...]) but has no cmd and "
                "no depends_on; set cmd",
                file=str(root_file),
                key=f"tool.vx.defaults.tasks.{name}",
            )
        raise ConfigError(
            f"task '{name}' has no cmd and no depends_on; set cmd here, or add "
            f"[tool.vx.defaults.tasks.{name}] with a cmd to {root_file}",
            file=str(file),
            key=f"tool.vx.tasks.{name}",
        )
    _check_persistent(name, merged, file)
    from vx.workspace_cache import freeze_settings

    plugin_settings = {
        key: freeze_settings(getattr(merged, key))
        for key in plugin_keys
        if key in merged.model_fields_set
    }
    cmd = merged.cmd if merged.cmd is None or isinstance(merged.cmd, str) else tuple(merged.cmd)
    return TaskDefinition(
        name=name,
        cmd=cmd,
        depends_on=tuple(merged.depends_on),
        inputs=None if merged.inputs is None else tuple(merged.inputs),
        outputs=tuple(merged.outputs),
        env=tuple(merged.env),
        pass_env=tuple(merged.pass_env),
        cache=merged.cache and not merged.persistent,
        cwd=merged.cwd,
        retries=merged.retries,
        persistent=merged.persistent,
        ready=merged.ready.probe() if merged.ready is not None else None,
        ready_timeout=merged.ready_timeout,
        depends_on_template="depends_on" not in own.model_fields_set
        and default is not None
        and "depends_on" in default.model_fields_set,
        plugin_settings=plugin_settings,
        requires=tuple(merged.requires),
    )


def _check_persistent(name: str, task: TaskSettings, file: Path) -> None:
    """A persistent task is never cached; ``ready`` only applies to persistent tasks."""
    key = f"tool.vx.tasks.{name}"
    if task.persistent:
        if "cache" in task.model_fields_set and task.cache:
            raise ConfigError(
                "a persistent task is never cached; remove `cache = true`",
                file=str(file),
                key=f"{key}.cache",
            )
        if task.outputs:
            raise ConfigError(
                "a persistent task has no outputs (it is never cached); remove `outputs`, or "
                "move the build step to a task it depends on",
                file=str(file),
                key=f"{key}.outputs",
            )
        if task.cmd is None:
            raise ConfigError(
                "a persistent task needs a cmd (the long-running process)",
                file=str(file),
                key=f"{key}.cmd",
            )
        return
    for option in ("ready", "ready_timeout"):
        if option in task.model_fields_set:
            raise ConfigError(
                f"`{option}` only applies to persistent tasks; add `persistent = true`",
                file=str(file),
                key=f"{key}.{option}",
            )
