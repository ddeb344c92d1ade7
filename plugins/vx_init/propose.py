"""Build the proposal: members, task templates and each project's tasks.

Sources are tried in a fixed order per project, and the first one to name a task wins:
turbo.json (with the project's package.json script), poe tasks, hatch scripts, tox
environments, nox sessions, then templates for the tools the configuration mentions. A tool
template names the members it applies to (``projects = [...]``), so only a member that needs
something different gets a table of its own. Tasks and keys the files already declare are
never changed: running ``vx init`` again proposes nothing new.
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vx import ConfigError, UsageError
from vx_init import sources
from vx_init.turbo import package_scripts, read_turbo

__all__ = ["Proposal", "find_root", "propose"]

Table = dict[str, Any]

_SKIP_DIRS = {"node_modules", "build", "dist", "site-packages", "__pycache__", "venv", "env"}
_MAX_DEPTH = 4


@dataclass
class Proposal:
    root: Path
    members: list[str] | None = None
    """New ``members`` (None: keep what is there, or a single-project workspace)."""
    global_inputs: list[str] | None = None
    global_env: list[str] | None = None
    templates: dict[str, Table] = field(default_factory=dict)
    project_tasks: dict[Path, dict[str, Table]] = field(default_factory=dict)
    """``{project directory: {task: table}}``; the root directory means root tasks."""
    detected: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (
            self.members
            or self.global_inputs
            or self.global_env
            or self.templates
            or any(self.project_tasks.values())
        )


def read_pyproject(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"invalid TOML ({exc}); fix it and run vx init again", file=str(path)
        ) from None
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", file=str(path)) from None


def _tool(data: dict[str, Any], *path: str) -> Any:
    current: Any = data.get("tool", {})
    for part in path:
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def find_root(start: Path, vx_root: Path | None) -> Path:
    """The vx workspace root if there is one, else the nearest uv workspace root above
    ``start``, else ``start``."""
    if vx_root is not None:
        return vx_root
    for directory in (start, *start.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            try:
                data = tomllib.loads(candidate.read_text(errors="replace"))
            except tomllib.TOMLDecodeError:
                continue  # reported when the proposal reads it
            if isinstance(_tool(data, "uv", "workspace"), dict):
                return directory
    return start


def _discover(root: Path) -> list[Path]:
    """Directories below ``root`` holding a pyproject.toml (hidden, virtualenv and build
    directories skipped)."""
    found: list[Path] = []
    for directory, dirnames, filenames in os.walk(root):
        path = Path(directory)
        depth = len(path.relative_to(root).parts)
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not d.startswith((".", "_"))
            and d not in _SKIP_DIRS
            and not (path / d / "pyvenv.cfg").exists()
            and depth < _MAX_DEPTH
        )
        if path != root and "pyproject.toml" in filenames:
            found.append(path)
    return found


def _member_globs(root: Path, directories: list[Path]) -> list[str]:
    """``parent/*`` for parents holding several projects, exact paths otherwise."""
    by_parent: dict[Path, list[Path]] = {}
    for directory in directories:
        by_parent.setdefault(directory.parent, []).append(directory)
    globs: list[str] = []
    for parent, children in by_parent.items():
        relative = parent.relative_to(root).as_posix()
        if len(children) > 1 and parent != root:
            globs.append(f"{relative}/*")
        else:
            globs.extend(child.relative_to(root).as_posix() for child in children)
    return sorted(globs)


def _resolve_members(root: Path, globs: list[str]) -> tuple[list[Path], list[str]]:
    """Directories the member globs select, and the positive globs that select none."""
    found: dict[Path, None] = {}
    excluded: set[Path] = set()
    empty: list[str] = []
    for pattern in globs:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        if not body or Path(body).is_absolute() or ".." in Path(body).parts:
            continue
        matches = sorted(p for p in root.glob(body) if (p / "pyproject.toml").is_file())
        if negate:
            excluded.update(matches)
        elif not matches:
            empty.append(pattern)
        else:
            found.update((m, None) for m in matches if m.resolve() != root.resolve())
    return [p for p in found if p not in excluded], empty


def _existing_tasks(data: dict[str, Any]) -> set[str]:
    tasks = _tool(data, "vx", "tasks")
    return set(tasks) if isinstance(tasks, dict) else set()


def _skipped(data: dict[str, Any]) -> set[str]:
    skipped = _tool(data, "vx", "skip_templates")
    return {s for s in skipped if isinstance(s, str)} if isinstance(skipped, list) else set()


def _globs(template: Any) -> list[str]:
    """A template's ``projects`` globs (none: projects opt in one by one)."""
    projects = template.get("projects") if isinstance(template, dict) else None
    return [p for p in projects if isinstance(p, str)] if isinstance(projects, list) else []


def _selects(globs: list[str], name: str) -> bool:
    """Whether ``projects`` globs select the member ``name`` (as vx matches them)."""
    return any(fnmatch.fnmatchcase(name, g) for g in globs if not g.startswith("!")) and not any(
        fnmatch.fnmatchcase(name, g[1:]) for g in globs if g.startswith("!")
    )


def _excludes(globs: list[str], name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, g[1:]) for g in globs if g.startswith("!"))


def _most_common(tables: list[Table]) -> Table:
    """The table most projects have (the first of those on a tie)."""
    return max(tables, key=lambda table: (tables.count(table), -tables.index(table)))


def _projects_value(using: list[str], without: list[str]) -> list[str]:
    """``projects`` for a template ``using`` members take as it is, where ``without`` do not
    have the task at all: ``["*"]`` when none lacks it, else the shorter of the names and
    ``"*"`` with exclusions (the names on a tie)."""
    if not without:
        return ["*"]
    if len(without) + 1 < len(using):
        return ["*", *(f"!{name}" for name in without)]
    return using


class _Offer:
    """A project's tasks as sources offer them: the first source to name a task wins."""

    def __init__(self, where: str, existing: set[str], notes: list[str]) -> None:
        self.where = where
        self.existing = existing
        self.notes = notes
        self.tasks: dict[str, tuple[str, Table]] = {}

    def add(self, found: dict[str, Table], source: str) -> None:
        for name, table in found.items():
            if name in self.existing:
                continue
            if name in self.tasks:
                self.notes.append(
                    f"{self.where}: {source} '{name}' not used (the {self.tasks[name][0]} "
                    "task of the same name is)"
                )
                continue
            self.tasks[name] = (source, table)


def propose(root: Path) -> Proposal:
    root_file = root / "pyproject.toml"
    root_data = read_pyproject(root_file) if root_file.is_file() else {}
    proposal = Proposal(root)
    vx_table = _tool(root_data, "vx")
    vx_table = vx_table if isinstance(vx_table, dict) else {}
    uv_workspace = _tool(root_data, "uv", "workspace")
    uv = isinstance(uv_workspace, dict) or (root / "uv.lock").is_file()

    # Members
    if isinstance(vx_table.get("members"), list):
        globs = [g for g in vx_table["members"] if isinstance(g, str)]
        proposal.detected.append("existing [tool.vx] members")
        member_dirs, _ = _resolve_members(root, globs)
    else:
        if isinstance(uv_workspace, dict):
            members = uv_workspace.get("members", [])
            exclude = uv_workspace.get("exclude", [])
            globs = [g for g in members if isinstance(g, str)]
            globs += [f"!{g}" for g in exclude if isinstance(g, str)]
            source = "uv workspace"
        else:
            globs = _member_globs(root, _discover(root))
            source = "directories with a pyproject.toml"
        member_dirs, empty = _resolve_members(root, globs)
        for pattern in empty:
            globs.remove(pattern)
            proposal.notes.append(
                f"members glob {pattern!r} selects no directory with a pyproject.toml; left out"
            )
        if member_dirs:
            proposal.members = globs
            proposal.detected.append(f"{source}: {len(member_dirs)} project(s)")
    if not member_dirs and not root_file.is_file():
        raise UsageError(
            f"vx init: no pyproject.toml in {root} or below; vx init needs at least one "
            "Python project (run it at the repository root)"
        )
    if not member_dirs:
        proposal.detected.append("single project (no workspace members)")

    datas = {d: read_pyproject(d / "pyproject.toml") for d in member_dirs}
    turbo = read_turbo(root)
    if turbo is not None:
        proposal.detected.append("turbo.json")
        proposal.notes.extend(turbo.notes)
        if turbo.global_inputs and "global_inputs" not in vx_table:
            proposal.global_inputs = turbo.global_inputs
        if turbo.global_env and "global_env" not in vx_table:
            proposal.global_env = turbo.global_env

    existing_defaults = _tool(root_data, "vx", "defaults", "tasks")
    existing_defaults = existing_defaults if isinstance(existing_defaults, dict) else {}
    workspace = bool(member_dirs)
    projects = [(d, datas[d]) for d in member_dirs] if workspace else [(root, root_data)]
    names = {d: _project_name(d, datas[d]) for d in member_dirs}
    # Tasks each project has already: its own tables, and existing templates whose projects
    # globs select it (minus its skip_templates).
    have: dict[Path, set[str]] = {
        directory: _existing_tasks(data)
        | {
            name
            for name, template in existing_defaults.items()
            if workspace
            and name not in _skipped(data)
            and _selects(_globs(template), names[directory])
        }
        for directory, data in projects
    }
    # Pass 1: every project's tasks as complete tables, with the source each came from.
    found_tasks: dict[Path, dict[str, tuple[str, Table]]] = {}
    scripts_of: dict[Path, dict[str, str]] = {}
    packages: dict[str, Path] = {}
    for directory, data in projects:
        where = (directory.relative_to(root).as_posix() or ".") + "/pyproject.toml"
        offer = _Offer(where, have[directory] | _skipped(data), proposal.notes)
        tasks = offer.tasks
        if turbo is not None:
            package, scripts = package_scripts(directory)
            if package:
                packages[package] = directory
            own = turbo.project_tasks.get(package or "", {})
            offer.add(
                {
                    name: {"cmd": command, **turbo.templates.get(name, {}), **own.get(name, {})}
                    for name, command in scripts.items()
                    if (name in turbo.templates or name in own) and name not in turbo.persistent
                },
                "turbo.json",
            )
            scripts_of[directory] = scripts
        for source, (found, notes) in (
            ("poe", sources.poe_tasks(data, where)),
            ("hatch", sources.hatch_scripts(data, where)),
            ("tox", sources.tox_envs(directory, data, where)),
            ("nox", sources.nox_sessions(directory, where)),
        ):
            proposal.notes.extend(notes)
            offer.add(found, source)
        templates = sources.tool_templates(directory, data, root_data, uv=uv, root=root)
        for name, template in templates.items():
            if name not in offer.existing and name not in tasks:
                tasks[name] = ("tool", template)
        found_tasks[directory] = tasks

    # Pass 2: shared settings become templates ([tool.vx.defaults.tasks]) that name the
    # members taking them as they are (projects = [...]); the others keep what differs.
    by_name: dict[str, set[str]] = {}
    for tasks in found_tasks.values():
        for name, (source, _) in tasks.items():
            by_name.setdefault(name, set()).add(source)
    if turbo is not None:
        unused = [
            name
            for name in turbo.templates
            if name not in turbo.persistent and "turbo.json" not in by_name.get(name, set())
        ]
        if unused:
            proposal.notes.append(
                f"turbo.json: no Python project has a package.json script for "
                f"{', '.join(unused)}; not translated"
            )
    template_source: dict[str, str] = {}
    final_tasks: dict[Path, set[str]] = {}
    if workspace:
        for name, used in by_name.items():
            if name in existing_defaults:
                continue
            if "turbo.json" in used and turbo is not None and turbo.templates.get(name):
                template_source[name] = "turbo.json"
                proposal.templates[name] = turbo.templates[name]
            elif "tool" in used:
                template_source[name] = "tool"
                # The table most projects have is the template; a project whose tools differ
                # (pyright instead of mypy) keeps a table with what differs.
                proposal.templates[name] = _most_common(
                    [
                        tasks[name][1]
                        for tasks in found_tasks.values()
                        if name in tasks and tasks[name][0] == "tool"
                    ]
                )
    covered: dict[str, list[str]] = {}
    for directory, tasks in found_tasks.items():
        excluded: set[str] = set()
        proposal.project_tasks[directory] = {}
        for name, (source, table) in tasks.items():
            if workspace and source == "tool" and name in existing_defaults:
                # The workspace's own template of that name: declaring the task opts in,
                # unless the template names its projects and leaves this one out on purpose.
                if _excludes(_globs(existing_defaults[name]), names[directory]):
                    proposal.notes.append(
                        f"{directory.relative_to(root).as_posix()}/pyproject.toml: template "
                        f"'{name}' excludes {names[directory]} (its projects); not enabled"
                    )
                    excluded.add(name)
                    continue
                table = {}
            elif template_source.get(name) == source == "tool":
                template = proposal.templates[name]
                if table == template:
                    covered.setdefault(name, []).append(names[directory])
                    continue  # the template's projects select it: nothing to write here
                if set(template) <= set(table):
                    table = {k: v for k, v in table.items() if template.get(k) != v}
            elif template_source.get(name) == source == "turbo.json":
                table = {"cmd": scripts_of[directory][name]}
                own = turbo.project_tasks if turbo is not None else {}
                package = next((p for p, d in packages.items() if d == directory), "")
                table.update(own.get(package, {}).get(name, {}))
            proposal.project_tasks[directory][name] = table
        final_tasks[directory] = have[directory] | (set(tasks) - excluded)
    for name, using in covered.items():
        without = [names[d] for d, tasks in final_tasks.items() if name not in tasks]
        proposal.templates[name] = {
            **proposal.templates[name],
            "projects": _projects_value(using, without),
        }
    used_sources = {source for used in by_name.values() for source in used}
    if workspace:
        _root_tasks(proposal, root_data, final_tasks, used_sources, uv=uv)
    _check_dependencies(proposal, final_tasks, packages, names, root)
    labels = {"tool": "tool templates"}
    proposal.detected.extend(sorted(labels.get(s, s) for s in used_sources if s != "turbo.json"))
    return proposal


def _root_tasks(
    proposal: Proposal,
    root_data: dict[str, Any],
    final_tasks: dict[Path, set[str]],
    used: set[str],
    *,
    uv: bool,
) -> None:
    """Tasks the workspace root declares (e.g. poe tasks in a virtual root) become root
    tasks, except names the members have: ``vx run test`` already runs every member's. A
    root that is a package itself gets ``build``, and ``test`` for its own tests directory."""
    root = proposal.root
    member_names = {name for tasks in final_tasks.values() for name in tasks}
    existing = _existing_tasks(root_data)
    tasks: dict[str, Table] = {}
    for source, (found, notes) in (
        ("poe", sources.poe_tasks(root_data, "pyproject.toml")),
        ("hatch", sources.hatch_scripts(root_data, "pyproject.toml")),
        ("tox", sources.tox_envs(root, root_data, "pyproject.toml")),
        ("nox", sources.nox_sessions(root, "pyproject.toml")),
    ):
        proposal.notes.extend(notes)
        for name, table in found.items():
            if name in existing or name in tasks:
                continue
            if name in member_names:
                proposal.notes.append(
                    f"pyproject.toml: root {source} task '{name}' not translated: the members' "
                    f"'{name}' tasks run it per project"
                )
                continue
            tasks[name] = table
            used.add(source)
    templates = sources.tool_templates(root, root_data, {}, uv=uv)
    own_tests = next((d for d in ("tests", "test") if (root / d).is_dir()), None)
    if own_tests and "test" in templates and "test" not in tasks and "test" not in existing:
        # Only the root's own tests: a bare pytest at the root would collect the members' too.
        tasks["test"] = {**templates["test"], "cmd": f"python -m pytest -q {own_tests}"}
        used.add("tool")
    if "build" in templates and "build" not in tasks and "build" not in existing:
        tasks["build"] = templates["build"]
        used.add("tool")
    for table in tasks.values():
        kept = [d for d in table.get("depends_on", []) if d in tasks or d in existing]
        if kept != table.get("depends_on", []):
            table["depends_on"] = kept
            if not kept:
                del table["depends_on"]
    for name, table in tasks.items():
        # A template applies to the root's task of that name (never through its globs): the
        # root's table keeps only what differs from it.
        template = {k: v for k, v in proposal.templates.get(name, {}).items() if k != "projects"}
        if template and set(template) <= set(table):
            tasks[name] = {k: v for k, v in table.items() if template.get(k) != v}
    if tasks:
        proposal.project_tasks[root] = tasks
        final_tasks[root] = existing | set(tasks)


def _check_dependencies(
    proposal: Proposal,
    final_tasks: dict[Path, set[str]],
    packages: dict[str, Path],
    names: dict[Path, str],
    root: Path,
) -> None:
    """Same-project and ``package#task`` dependencies must name tasks that exist in vx
    (turbo ignores missing ones; vx reports them as errors)."""

    def resolve(items: list[str], task: str) -> list[str]:
        kept = []
        for item in items:
            package, sep, name = item.rpartition("#")
            directory = packages.get(package)
            if not sep:
                kept.append(item)
            elif directory is not None and name in final_tasks.get(directory, set()):
                kept.append(f"{names[directory]}#{name}")
            else:
                proposal.notes.append(
                    f"turbo.json: {task} depends on {item}, which is not a task of a Python "
                    "project; left out"
                )
        return kept

    for name, template in proposal.templates.items():
        if "depends_on" in template:
            template["depends_on"] = resolve(template["depends_on"], name)
    for directory, tasks in proposal.project_tasks.items():
        where = directory.relative_to(root).as_posix() or "."
        for name, table in tasks.items():
            if "depends_on" in table:
                table["depends_on"] = resolve(table["depends_on"], name)
            declared = table.get("depends_on", proposal.templates.get(name, {}).get("depends_on"))
            if not declared:
                continue
            missing = [
                d
                for d in declared
                if "#" not in d
                and not d.startswith("^")
                and d not in final_tasks.get(directory, set())
            ]
            if missing:
                table["depends_on"] = [d for d in declared if d not in missing]
                proposal.notes.append(
                    f"{where}: task '{name}' would depend on {', '.join(missing)}, which this "
                    "project does not have; left out for it"
                )


def _project_name(directory: Path, data: dict[str, Any]) -> str:
    """vx's name for the project in ``directory``: PEP 503-normalised [project].name, else
    the directory name."""
    project = data.get("project")
    name = project.get("name") if isinstance(project, dict) else None
    chosen = name if isinstance(name, str) and name.strip() else directory.name
    return re.sub(r"[-_.]+", "-", chosen).lower()
