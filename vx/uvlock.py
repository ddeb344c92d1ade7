"""Workspace edges from ``uv.lock``, for projects whose dependencies are dynamic.

Projects that declare ``dynamic = ["dependencies"]`` (hatch metadata hooks, setuptools
``dynamic``) have no ``[project].dependencies`` to read. uv resolves them and records, in
``uv.lock``, each workspace member (a package whose ``source`` is ``editable``, ``virtual``
or ``directory``) with its resolved ``dependencies``. vx reads the runtime ``dependencies``
only, exactly like static metadata: ``optional-dependencies`` and ``dev-dependencies``
(dependency groups) are not edges in either source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vx.workspace import normalize_name

__all__ = ["LOCK_FILE", "LockError", "LockedMember", "read_lock"]

LOCK_FILE = "uv.lock"

#: ``source`` kinds of packages built from the workspace itself.
_LOCAL_SOURCES = ("editable", "virtual", "directory")


class LockError(Exception):
    """The lock cannot be read or does not have uv's layout (the message says why)."""


@dataclass(frozen=True, slots=True)
class LockedMember:
    """A workspace member as uv locked it."""

    name: str
    """PEP 503-normalised."""
    path: str
    """Its directory relative to the workspace root, as uv wrote it."""
    dependencies: tuple[str, ...]
    """Normalised names of its runtime dependencies (any package, member or not)."""


def read_lock(path: Path) -> dict[str, LockedMember]:
    """The local packages of ``uv.lock`` by normalised name; raises :class:`LockError`."""
    import tomllib

    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"invalid TOML: {exc}") from None
    except OSError as exc:
        raise LockError(f"cannot read: {exc.strerror}") from None
    packages = data.get("package")
    if not isinstance(data.get("version"), int) or not isinstance(packages, list):
        raise LockError("not a uv lock file (expected 'version' and [[package]] entries)")
    members: dict[str, LockedMember] = {}
    for index, package in enumerate(packages):
        member = _member(package, index)
        if member is not None:
            members[member.name] = member
    return members


def _member(package: Any, index: int) -> LockedMember | None:
    if not isinstance(package, dict) or not isinstance(package.get("name"), str):
        raise LockError(f"package[{index}] has no name")
    source = package.get("source")
    local = (
        next((source[kind] for kind in _LOCAL_SOURCES if kind in source), None)
        if isinstance(source, dict)
        else None
    )
    if not isinstance(local, str):
        return None
    dependencies = package.get("dependencies", [])
    if not isinstance(dependencies, list) or not all(
        isinstance(d, dict) and isinstance(d.get("name"), str) for d in dependencies
    ):
        raise LockError(f"package[{index}] ({package['name']}): malformed dependencies")
    return LockedMember(
        name=normalize_name(package["name"]),
        path=local,
        dependencies=tuple(dict.fromkeys(normalize_name(d["name"]) for d in dependencies)),
    )
