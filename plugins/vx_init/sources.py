"""Task sources a repository already has: poe tasks, hatch scripts, tox environments, nox
sessions, and templates for the tools its configuration mentions.

Each source returns ``{task name: task table}`` (tables in ``[tool.vx.tasks.<name>]`` form)
plus notes for what it could not translate cleanly.
"""

from __future__ import annotations

import ast
import configparser
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "Found",
    "brace_expand",
    "dependency_names",
    "hatch_scripts",
    "nox_sessions",
    "poe_tasks",
    "tool_templates",
    "tox_envs",
]

Table = dict[str, Any]
Found = tuple[dict[str, Table], list[str]]

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_BRACES = re.compile(r"\{([^{}]*)\}")


def brace_expand(pattern: str) -> list[str]:
    """``py{311,312}`` -> ``[py311, py312]``; ``*.{ts,tsx}`` -> ``[*.ts, *.tsx]``."""
    match = _BRACES.search(pattern)
    if match is None or "," not in match.group(1):
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [
        expanded
        for option in match.group(1).split(",")
        for expanded in brace_expand(head + option.strip() + tail)
    ]


def _tool(data: dict[str, Any], *path: str) -> Any:
    current: Any = data.get("tool", {})
    for part in path:
        if not isinstance(current, dict):
            return None
        current = current.get(part)
    return current


def _requirements(value: Any) -> Iterator[str]:
    if isinstance(value, list):
        for item in value:
            if isinstance(item, str):
                match = _NAME.match(item)
                if match:
                    yield match.group(1).lower().replace("_", "-")
    elif isinstance(value, dict):  # poetry: {name = version}
        yield from (str(name).lower().replace("_", "-") for name in value)


def dependency_names(data: dict[str, Any]) -> set[str]:
    """Every distribution named in dependencies, extras, dependency groups and poetry groups."""
    names: set[str] = set()
    project = data.get("project")
    if isinstance(project, dict):
        names.update(_requirements(project.get("dependencies")))
        extras = project.get("optional-dependencies")
        for group in extras.values() if isinstance(extras, dict) else ():
            names.update(_requirements(group))
    groups = data.get("dependency-groups")
    for group in groups.values() if isinstance(groups, dict) else ():
        names.update(_requirements(group))
    names.update(_requirements(_tool(data, "uv", "dev-dependencies")))
    poetry = _tool(data, "poetry")
    if isinstance(poetry, dict):
        names.update(_requirements(poetry.get("dependencies")))
        names.update(_requirements(poetry.get("dev-dependencies")))
        poetry_groups = poetry.get("group")
        for group in poetry_groups.values() if isinstance(poetry_groups, dict) else ():
            if isinstance(group, dict):
                names.update(_requirements(group.get("dependencies")))
    return names


# -------------------------------------------------------------------------
# poethepoet: [tool.poe.tasks]
# -------------------------------------------------------------------------


def poe_tasks(data: dict[str, Any], where: str) -> Found:
    """``cmd``/``shell`` tasks (strings or tables) map to a vx ``cmd``; ``deps`` to
    ``depends_on``; ``cwd`` to ``cwd``. Other task kinds and options are listed, not guessed."""
    tasks_table = _tool(data, "poe", "tasks")
    if not isinstance(tasks_table, dict):
        return {}, []
    tasks: dict[str, Table] = {}
    notes: list[str] = []
    for name, spec in tasks_table.items():
        if isinstance(spec, str):
            tasks[name] = {"cmd": spec}
            continue
        if isinstance(spec, list):
            notes.append(
                f"{where}: poe task '{name}' is a sequence; not translated "
                f'(give it depends_on, or cmd = "poe {name}")'
            )
            continue
        if not isinstance(spec, dict):
            continue
        command = spec.get("cmd", spec.get("shell"))
        if not isinstance(command, str):
            kinds = ("script", "sequence", "ref", "expr", "switch")
            kind = next((k for k in kinds if k in spec), "")
            notes.append(
                f"{where}: poe task '{name}'{f' ({kind})' if kind else ''} is not a cmd or shell "
                f'task; not translated (cmd = "poe {name}" runs it through poe)'
            )
            continue
        unsupported = sorted(set(spec) - {"cmd", "shell", "help", "deps", "cwd", "interpreter"})
        if unsupported:
            notes.append(
                f"{where}: poe task '{name}' uses {', '.join(unsupported)}; not translated "
                f'(cmd = "poe {name}" runs it through poe)'
            )
            continue
        table: Table = {"cmd": command}
        deps = spec.get("deps")
        if isinstance(deps, list) and all(isinstance(d, str) and " " not in d for d in deps):
            table["depends_on"] = list(deps)
        elif deps is not None:
            notes.append(f"{where}: poe task '{name}': deps with arguments are not translated")
        if isinstance(spec.get("cwd"), str) and not Path(spec["cwd"]).is_absolute():
            table["cwd"] = spec["cwd"]
        tasks[name] = table
    # A deps entry naming a task that was not translated would be a dangling edge.
    for name, table in tasks.items():
        missing = [d for d in table.get("depends_on", []) if d not in tasks]
        if missing:
            table["depends_on"] = [d for d in table["depends_on"] if d in tasks]
            if not table["depends_on"]:
                del table["depends_on"]
            notes.append(
                f"{where}: poe task '{name}': dependency {', '.join(missing)} was not translated"
            )
    return tasks, notes


# -------------------------------------------------------------------------
# hatch: [tool.hatch.envs.default.scripts]
# -------------------------------------------------------------------------


def hatch_scripts(data: dict[str, Any], where: str) -> Found:
    """Scripts of hatch's default environment run through ``hatch run NAME`` (hatch owns the
    environment they need); scripts of other environments are listed."""
    envs = _tool(data, "hatch", "envs")
    if not isinstance(envs, dict):
        return {}, []
    tasks: dict[str, Table] = {}
    notes: list[str] = []
    for env_name, env in envs.items():
        scripts = env.get("scripts") if isinstance(env, dict) else None
        if not isinstance(scripts, dict):
            continue
        if env_name != "default":
            notes.append(
                f"{where}: hatch environment '{env_name}' scripts ({', '.join(scripts)}) not "
                f'translated (add tasks with cmd = "hatch run {env_name}:NAME")'
            )
            continue
        for name in scripts:
            tasks[name] = {"cmd": f"hatch run {name}"}
    return tasks, notes


# -------------------------------------------------------------------------
# tox and nox
# -------------------------------------------------------------------------


def _tox_names(envlist: str) -> list[str]:
    """Names in a tox ``envlist`` (comma or newline separated, braces expanded)."""
    parts: list[str] = []
    current, depth = "", 0
    for char in envlist + ",":
        depth += {"{": 1, "}": -1}.get(char, 0)
        if char in ",\n" and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [n for part in parts if part and not part.startswith("#") for n in brace_expand(part)]


def tox_envs(directory: Path, data: dict[str, Any], where: str) -> Found:
    """tox environments (tox.ini, ``[tool.tox]`` or ``legacy_tox_ini``) run as ``tox -e NAME``."""
    names: list[str] = []
    text: str | None = None
    tox = _tool(data, "tox")
    if isinstance(tox, dict) and isinstance(tox.get("legacy_tox_ini"), str):
        text = tox["legacy_tox_ini"]
    elif isinstance(tox, dict):
        env_list = tox.get("env_list", tox.get("envlist"))
        if isinstance(env_list, list):
            names.extend(n for n in env_list if isinstance(n, str))
        envs = tox.get("env")
        names.extend(n for n in (envs if isinstance(envs, dict) else {}) if n not in names)
    elif (directory / "tox.ini").is_file():
        text = (directory / "tox.ini").read_text(errors="replace")
    if text is not None:
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        try:
            parser.read_string(text)
        except configparser.Error as exc:
            return {}, [f"{where}: tox configuration not read ({exc.__class__.__name__})"]
        if parser.has_option("tox", "envlist"):
            names.extend(_tox_names(parser.get("tox", "envlist")))
        elif parser.has_option("tox", "env_list"):
            names.extend(_tox_names(parser.get("tox", "env_list")))
        for section in parser.sections():
            if section.startswith("testenv:"):
                names.extend(n for n in brace_expand(section[8:]) if n not in names)
    tasks = {name: {"cmd": f"tox -e {name}"} for name in dict.fromkeys(names) if name}
    return tasks, []


def _session_name(decorator: ast.expr, function: str) -> str | None:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    is_session = (isinstance(target, ast.Attribute) and target.attr == "session") or (
        isinstance(target, ast.Name) and target.id == "session"
    )
    if not is_session:
        return None
    if isinstance(decorator, ast.Call):
        for keyword in decorator.keywords:
            if keyword.arg == "name" and isinstance(keyword.value, ast.Constant):
                return str(keyword.value.value)
    return function


def nox_sessions(directory: Path, where: str) -> Found:
    """``@nox.session`` functions of noxfile.py (read, never imported) run as ``nox -s NAME``."""
    noxfile = directory / "noxfile.py"
    if not noxfile.is_file():
        return {}, []
    try:
        module = ast.parse(noxfile.read_text(errors="replace"))
    except SyntaxError as exc:
        return {}, [f"{where}: noxfile.py not read (syntax error at line {exc.lineno})"]
    tasks: dict[str, Table] = {}
    for node in module.body:
        if isinstance(node, ast.FunctionDef):
            for decorator in node.decorator_list:
                name = _session_name(decorator, node.name)
                if name:
                    tasks[name] = {"cmd": f"nox -s {name}"}
    return tasks, []


# -------------------------------------------------------------------------
# Tool templates
# -------------------------------------------------------------------------

#: Inputs of tasks that import the code of the projects they depend on.
IMPORTING_INPUTS = ["**", "^**/*.py", "^pyproject.toml"]


def tool_templates(
    directory: Path,
    data: dict[str, Any],
    root_data: dict[str, Any],
    *,
    uv: bool,
    root: Path | None = None,
) -> dict[str, Table]:
    """Templates for the tools a project's configuration (or the root's) mentions. A tool
    configured at the workspace ``root`` only gets that configuration as ``//`` inputs."""
    deps = dependency_names(data) | dependency_names(root_data)

    def configured(*tool: str) -> bool:
        return any(_tool(d, *tool) is not None for d in (data, root_data))

    def has_file(*names: str) -> bool:
        return any((directory / name).exists() for name in names)

    def root_config(tool: str, *files: str) -> list[str]:
        """The root files configuring ``tool`` when the project has no configuration of
        its own (the tools read the nearest one up the tree)."""
        if root is None:
            return []
        own = _tool(data, tool)
        if own is not None or has_file(*files):
            # Its own configuration, which may extend a root one (ruff's ``extend``).
            extend = own.get("extend") if isinstance(own, dict) else None
            if isinstance(extend, str) and not extend.startswith("~"):
                target = (directory / extend).resolve()
                if target.parent == root.resolve():
                    return [f"//{target.name}"]
            return []
        found = ["//pyproject.toml"] if _tool(root_data, tool) is not None else []
        return found + [f"//{name}" for name in files if (root / name).exists()]

    found: dict[str, Table] = {}
    has_tests = has_file("tests", "test", "conftest.py", "pytest.ini")
    # Only the project's own pytest configuration: a root [tool.pytest] configures the root's
    # tests, and pytest fails (exit code 5) in a project without tests.
    if has_tests or _tool(data, "pytest") is not None:
        found["test"] = {"cmd": "python -m pytest -q", "inputs": IMPORTING_INPUTS}
    if configured("ruff") or has_file("ruff.toml", ".ruff.toml") or "ruff" in deps:
        shared = root_config("ruff", "ruff.toml", ".ruff.toml")
        found["lint"] = {"cmd": "ruff check .", **({"inputs": ["**", *shared]} if shared else {})}
    if configured("mypy") or has_file("mypy.ini", ".mypy.ini") or "mypy" in deps:
        shared = root_config("mypy", "mypy.ini", ".mypy.ini")
        found["typecheck"] = {"cmd": "mypy .", "inputs": IMPORTING_INPUTS + shared}
    elif configured("basedpyright") or configured("pyright") or has_file("pyrightconfig.json"):
        tool = "basedpyright" if "basedpyright" in deps or configured("basedpyright") else "pyright"
        shared = root_config(tool, "pyrightconfig.json")
        found["typecheck"] = {"cmd": tool, "inputs": IMPORTING_INPUTS + shared}
    build_system = data.get("build-system")
    if isinstance(build_system, dict) and build_system.get("build-backend"):
        command = "uv build --wheel --out-dir dist" if uv else "python -m build --wheel"
        found["build"] = {"cmd": command, "outputs": ["dist/**"]}
    return found
