"""Turn a proposal into new file contents: tomlkit edits of existing pyproject files (their
comments and formatting are kept), tomli-w for a root pyproject written from scratch."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vx import ConfigError
from vx_init.propose import Proposal

__all__ = ["FileChange", "changes", "unified_diff"]


@dataclass
class FileChange:
    path: Path
    before: str | None
    """None: the file does not exist yet."""
    after: str


def _root_additions(proposal: Proposal) -> dict[str, Any]:
    additions: dict[str, Any] = {}
    if proposal.members is not None:
        additions["members"] = proposal.members
    if proposal.global_inputs:
        additions["global_inputs"] = proposal.global_inputs
    if proposal.global_env:
        additions["global_env"] = proposal.global_env
    return additions


def _new_file(proposal: Proposal) -> str:
    import tomli_w

    table: dict[str, Any] = _root_additions(proposal)
    if proposal.templates:
        table["defaults"] = {"tasks": proposal.templates}
    root_tasks = proposal.project_tasks.get(proposal.root)
    if root_tasks:
        table["tasks"] = root_tasks
    header = "# Workspace root written by `vx init`; see docs/init.md of vx.\n\n"
    return header + tomli_w.dumps({"tool": {"vx": table}})


def _edit(
    path: Path,
    text: str,
    scalars: dict[str, Any],
    templates: dict[str, Any],
    tasks: dict[str, Any],
) -> str:
    """``text`` with the additions: new keys of an explicit ``[tool.vx]`` go into that table,
    everything else is one block of new tables appended at the end of the file, so the
    existing text stays as it was, byte for byte, and the additions read as one piece."""
    import tomllib

    import tomlkit
    from tomlkit.container import OutOfOrderTableProxy
    from tomlkit.items import Table

    doc = tomlkit.parse(text)
    current: Any = doc
    for key in ("tool", "vx"):
        current = current.get(key) if current is not None else None
        if current is not None and not isinstance(current, Table | OutOfOrderTableProxy):
            raise ConfigError(
                "vx init adds tables here, but this is an inline table or a value; "
                "write it as a [table] and run vx init again",
                file=str(path),
                key="tool" if key == "tool" else "tool.vx",
            )
    head = text
    if scalars and isinstance(current, Table) and not current.is_super_table():
        for key, value in scalars.items():
            current[key] = value
        head = tomlkit.dumps(doc)
        scalars = {}

    fragment = tomlkit.document()
    vx = tomlkit.table(is_super_table=not scalars)
    for key, value in scalars.items():
        vx[key] = value
    for parent, entries in ((("defaults", "tasks"), templates), (("tasks",), tasks)):
        if not entries:
            continue
        container = vx
        for key in parent:
            if key not in container:
                container[key] = tomlkit.table(is_super_table=True)
            container = container[key]
        for name, values in entries.items():
            table = tomlkit.table()
            for key, value in values.items():
                table[key] = value
            container[name] = table
    tool = tomlkit.table(is_super_table=True)
    tool["vx"] = vx
    fragment["tool"] = tool
    addition = tomlkit.dumps(fragment).strip("\n")
    result = head if head.endswith("\n") or not head else head + "\n"
    result += ("\n" if result.strip() else "") + addition + "\n"
    try:
        tomllib.loads(result)
    except tomllib.TOMLDecodeError:
        raise ConfigError(
            "vx init cannot add [tool.vx] tables next to keys written as dotted keys "
            "(tool.vx.x = ...); write them as [tool.vx] tables and run vx init again",
            file=str(path),
            key="tool.vx",
        ) from None
    return result


def changes(proposal: Proposal) -> list[FileChange]:
    """The files the proposal changes, root first."""
    root = proposal.root
    root_file = root / "pyproject.toml"
    result: list[FileChange] = []
    root_tasks = proposal.project_tasks.get(root, {})
    if not root_file.is_file():
        if not proposal.empty:
            result.append(FileChange(root_file, None, _new_file(proposal)))
    elif _root_additions(proposal) or proposal.templates or root_tasks:
        before = root_file.read_text()
        after = _edit(root_file, before, _root_additions(proposal), proposal.templates, root_tasks)
        result.append(FileChange(root_file, before, after))
    for directory, tasks in proposal.project_tasks.items():
        if directory == root or not tasks:
            continue
        path = directory / "pyproject.toml"
        before = path.read_text()
        result.append(FileChange(path, before, _edit(path, before, {}, {}, tasks)))
    return result


def unified_diff(change: FileChange, root: Path) -> str:
    relative = change.path.relative_to(root).as_posix()
    before = change.before.splitlines(keepends=True) if change.before is not None else []
    return "".join(
        difflib.unified_diff(
            before,
            change.after.splitlines(keepends=True),
            fromfile="/dev/null" if change.before is None else f"a/{relative}",
            tofile=f"b/{relative}",
        )
    )
