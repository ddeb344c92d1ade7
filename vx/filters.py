"""``--filter`` / ``--affected``: choosing which projects a run covers."""

from __future__ import annotations

import fnmatch
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vx.errors import UsageError, did_you_mean, some_names
from vx.workspace import Project, Workspace, normalize_name

__all__ = ["FilterSpec", "parse_filter", "select_projects"]


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """One parsed ``--filter`` value."""

    text: str
    exclude: bool
    selector: str
    """Name glob, ``./path/glob`` or ``[REV]`` / ``[A...B]``."""
    with_dependencies: bool
    with_dependents: bool


def parse_filter(text: str) -> FilterSpec:
    """Parse ``[!][...]SELECTOR[...]``; raise :class:`UsageError` on bad syntax."""
    body = text.strip()
    exclude = body.startswith("!")
    body = body[1:] if exclude else body
    with_dependents = body.startswith("...")
    body = body[3:] if with_dependents else body
    with_dependencies = body.endswith("...")
    body = body[:-3] if with_dependencies else body
    if not body:
        raise UsageError(
            f"--filter {text!r}: empty selector; expected a project name or glob (acme-*), "
            "./path, NAME... (with dependencies), ...NAME (with dependents), !NAME or [REV]"
        )
    if body.startswith("[") != body.endswith("]") or body.count("[") != body.count("]"):
        raise UsageError(f"--filter {text!r}: unbalanced brackets; a git range is written [REV]")
    if body == "[]":
        raise UsageError(f"--filter {text!r}: empty git revision; write e.g. [main] or [A...B]")
    return FilterSpec(text, exclude, body, with_dependencies, with_dependents)


def select_projects(workspace: Workspace, filters: list[str], invocation_dir: Path) -> list[str]:
    """Names of the selected projects, in workspace order (all when ``filters`` is empty)."""
    specs = [parse_filter(text) for text in filters]
    includes = [spec for spec in specs if not spec.exclude]
    excludes = [spec for spec in specs if spec.exclude]
    selected: set[str] = set(workspace.projects) if not includes else set()
    for spec in includes:
        selected |= _expand(workspace, spec, invocation_dir)
    for spec in excludes:
        selected -= _expand(workspace, spec, invocation_dir)
    return [name for name in workspace.projects if name in selected]


def _expand(workspace: Workspace, spec: FilterSpec, invocation_dir: Path) -> set[str]:
    matched = _match(workspace, spec, invocation_dir)
    result = set(matched)
    if spec.with_dependencies:
        result |= _closure(workspace, matched, dependents=False)
    if spec.with_dependents:
        result |= _closure(workspace, matched, dependents=True)
    return result


def _match(workspace: Workspace, spec: FilterSpec, invocation_dir: Path) -> set[str]:
    selector = spec.selector
    if selector.startswith("["):
        return _changed_projects(workspace, selector[1:-1], spec.text)
    if selector == "." or selector.startswith(("./", "../")):
        directory = (invocation_dir / selector).resolve()
        matched = {
            name
            for name, project in workspace.projects.items()
            if project.path == directory or fnmatch.fnmatchcase(str(project.path), str(directory))
        }
        if not matched:
            raise UsageError(f"--filter {spec.text!r}: no project directory matches {directory}")
        return matched
    pattern = normalize_name(selector) if not any(c in selector for c in "*?[") else selector
    matched = {name for name in workspace.projects if fnmatch.fnmatchcase(name, pattern)}
    if not matched:
        raise UsageError(
            f"--filter {spec.text!r}: no project named '{selector}'"
            f"{did_you_mean(pattern, workspace.projects)}; "
            f"projects: {some_names(list(workspace.projects))}"
        )
    return matched


def _closure(workspace: Workspace, names: set[str], *, dependents: bool) -> set[str]:
    edges: dict[str, list[str]] = {name: [] for name in workspace.projects}
    for name, project in workspace.projects.items():
        for dependency in project.dependencies:
            if dependents:
                edges[dependency].append(name)
            else:
                edges[name].append(dependency)
    seen: set[str] = set()
    stack = list(names)
    while stack:
        for next_name in edges[stack.pop()]:
            if next_name not in seen:
                seen.add(next_name)
                stack.append(next_name)
    return seen


def _git(root: Path, *args: str, context: str) -> str:
    try:
        completed = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        raise UsageError(f"{context}: git is not installed") from None
    if completed.returncode != 0:
        detail = completed.stderr.strip().splitlines()
        raise UsageError(f"{context}: git {' '.join(args)} failed: {detail[-1] if detail else ''}")
    return completed.stdout


def _check_revision(root: Path, revision: str, context: str) -> None:
    try:
        _git(root, "rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}", context=context)
    except UsageError:
        hint = (
            "; with --affected, pass --base REV (e.g. --base main) or fetch origin"
            if revision == "origin/main"
            else ""
        )
        raise UsageError(f"{context}: unknown git revision '{revision}'{hint}") from None


def _changed_projects(workspace: Workspace, revisions: str, text: str) -> set[str]:
    """Projects with files changed in ``A...B``, or since ``REV`` (including uncommitted work)."""
    context = f"--filter {text!r}"
    root = workspace.root
    toplevel = Path(_git(root, "rev-parse", "--show-toplevel", context=context).strip()).resolve()
    for revision in filter(None, revisions.split("...")):
        _check_revision(root, revision, context)
    if "..." in revisions:
        changed = _git(root, "diff", "--name-only", "-z", revisions, "--", context=context)
    else:
        changed = _git(root, "diff", "--name-only", "-z", revisions, "--", context=context)
        changed += _git(
            root, "ls-files", "--others", "--exclude-standard", "--full-name", "-z", context=context
        )
    paths = [toplevel / name for name in changed.split("\0") if name]
    globals_ = [root / pattern for pattern in workspace.global_inputs]
    state = root / ".vx"
    projects: set[str] = set()
    for path in paths:
        if state in path.parents:
            continue  # vx's own state is never a source change
        if any(fnmatch.fnmatchcase(str(path), str(pattern)) for pattern in globals_):
            return set(workspace.projects)
        project = workspace.project_for_path(path.resolve() if path.exists() else path)
        if project is not None and not _is_output(project, path):
            projects.add(project.name)
        if project is None or project.relpath == ".":
            projects.update(_root_input_users(workspace, path))
    return projects


def _root_input_users(workspace: Workspace, path: Path) -> set[str]:
    """Projects with a task whose ``//`` inputs match ``path`` (a file of the root)."""
    from vx.globs import globs
    from vx.keys import ROOT_INPUT

    try:
        relative = path.relative_to(workspace.root).as_posix()
    except ValueError:
        return set()
    return {
        project.name
        for project in workspace.projects.values()
        for task in project.tasks.values()
        if (rooted := tuple(p[2:] for p in task.inputs or () if p.startswith(ROOT_INPUT)))
        and globs(rooted).match(relative)
    }


def _is_output(project: Project, path: Path) -> bool:
    """Whether ``path`` matches a declared ``outputs`` glob of one of the project's tasks
    (a result of a previous run, not a source change)."""
    from vx.globs import globs

    outputs = tuple(o for task in project.tasks.values() for o in task.outputs)
    if not outputs:
        return False
    try:
        relative = path.relative_to(project.path).as_posix()
    except ValueError:
        relative = path.resolve().relative_to(project.path).as_posix()
    return globs(outputs).match(relative)
