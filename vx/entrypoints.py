"""Discovering ``vx`` entry points, with an on-disk cache.

Scanning every installed distribution (and importing ``importlib.metadata``) costs tens of
milliseconds per invocation. The result is cached in ``$XDG_CACHE_HOME/vx`` (default
``~/.cache/vx``), one file per interpreter and ``sys.path``, valid while the modification
time of every ``sys.path`` directory is unchanged: installing, upgrading or removing a
distribution changes its directory's mtime. ``sys.path[0]`` (the script directory, or the
current directory for ``python -m vx``) is not considered. Set ``VX_NO_ENTRYPOINT_CACHE=1``
to always scan.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from vx.fileio import atomic_write
from vx.usercache import user_cache_dir

__all__ = ["EntryPoint", "vx_entry_points"]

_FORMAT = 1


@dataclass(frozen=True, slots=True)
class EntryPoint:
    name: str
    value: str
    distribution: str | None
    version: str | None

    def load(self) -> object:
        import importlib

        module_name, _, attribute = self.value.partition(":")
        target: object = importlib.import_module(module_name.strip())
        for part in filter(None, attribute.strip().split(".")):
            target = getattr(target, part)
        return target


def _cache_file() -> Path:
    identity = repr((sys.prefix, sys.version, sys.path[1:]))
    import blake3

    digest = blake3.blake3(identity.encode()).hexdigest()[:16]
    return user_cache_dir() / f"entry-points-{digest}.json"


def _path_key() -> list[tuple[str, int]]:
    key: list[tuple[str, int]] = []
    for entry in sys.path[1:]:
        try:
            key.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            continue
    return key


def _scan(group: str) -> list[EntryPoint]:
    from importlib.metadata import entry_points

    found = []
    for ep in entry_points(group=group):
        dist = ep.dist
        found.append(
            EntryPoint(
                ep.name, ep.value, dist.name if dist else None, dist.version if dist else None
            )
        )
    return found


def vx_entry_points(group: str = "vx") -> list[EntryPoint]:
    """Every entry point of ``group`` with its distribution name and version."""
    if os.environ.get("VX_NO_ENTRYPOINT_CACHE"):
        return _scan(group)
    cache = _cache_file()
    key = [_FORMAT, group, _path_key()]
    try:
        data = json.loads(cache.read_text())
        if data["key"] == json.loads(json.dumps(key)):
            return [EntryPoint(*entry) for entry in data["entries"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    found = _scan(group)
    entries = [[e.name, e.value, e.distribution, e.version] for e in found]
    atomic_write(cache, json.dumps({"key": key, "entries": entries}))
    return found
