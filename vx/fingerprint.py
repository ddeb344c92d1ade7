"""Two-phase keys: the post-run fingerprint of what a task's tools reported (see
:mod:`vx.ipc`), stored in the artifact's metadata as ``reported`` and validated on lookup.

``{"version": 1, "inputs": {path: digest | null}, "env": {name: digest | null}}``: each
reported file's content digest (a directory's is the digest of its sorted file listing with
their digests, so an added or removed file changes it), each tracked variable's value digest.
An entry is found by its pre-run key as usual, then used only if every digest still matches.
The fingerprint comes from a cache that may be remote: it is checked like any other input.
"""

from __future__ import annotations

import os
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vx.filehash import FileHasher, digest_text

if TYPE_CHECKING:
    from vx.ipc import Reported

__all__ = ["FINGERPRINT_VERSION", "changes", "fingerprint"]

FINGERPRINT_VERSION = 1
#: Most entries a stored fingerprint may hold (a bigger one is refused as hostile).
_MAX_ENTRIES = 200_000


def _digests(root: Path, hasher: FileHasher, paths: list[str]) -> dict[str, str | None]:
    base = str(root) + os.sep
    result: dict[str, str | None] = {}
    files = [p for p in paths if not os.path.isdir(base + p)]
    found = hasher.digests([base + p for p in files])
    for path in files:
        result[path] = found[base + path]
    for path in paths:
        if path not in result:
            result[path] = _directory_digest(base + path, hasher)
    return result


def _directory_digest(directory: str, hasher: FileHasher) -> str:
    listing: list[str] = []
    for current, dirs, names in os.walk(directory):
        dirs.sort()
        listing.extend(os.path.join(current, name) for name in sorted(names))
    digests = hasher.digests(listing)
    start = len(directory) + 1
    text = "".join(f"{path[start:]}\0{digests[path]}\n" for path in listing)
    return "dir:" + digest_text(text)


def fingerprint(root: Path, hasher: FileHasher, reported: Reported) -> dict[str, Any] | None:
    """The fingerprint to store with a result (None: nothing was reported)."""
    inputs = reported.effective_inputs()
    if not inputs and not reported.env:
        return None
    return {
        "version": FINGERPRINT_VERSION,
        "inputs": _digests(root, hasher, inputs),
        "env": dict(sorted(reported.env.items())),
    }


def _valid_path(path: object) -> bool:
    return (
        isinstance(path, str)
        and bool(path)
        and not path.startswith("/")
        and "\0" not in path
        and posixpath.normpath(path) == path
        and not path.startswith("../")
        and path != ".."
    )


def changes(
    root: Path, hasher: FileHasher, stored: object, environ: Mapping[str, str]
) -> list[str]:
    """What differs between a stored fingerprint and the workspace now ([] = still valid).
    A fingerprint that is not well formed is one change (the entry is not used)."""
    if not isinstance(stored, dict) or stored.get("version") != FINGERPRINT_VERSION:
        return ["the tool-reported fingerprint is unreadable (other vx version?)"]
    inputs, env = stored.get("inputs"), stored.get("env")
    if (
        not isinstance(inputs, dict)
        or not isinstance(env, dict)
        or len(inputs) + len(env) > _MAX_ENTRIES
        or not all(_valid_path(p) for p in inputs)
        or not all(isinstance(v, str | None) for v in (*inputs.values(), *env.values()))
        or not all(isinstance(n, str) for n in env)
    ):
        return ["the tool-reported fingerprint is malformed; not used"]
    found: list[str] = []
    current = _digests(root, hasher, sorted(inputs))
    for path in sorted(inputs):
        if current[path] != inputs[path]:
            what = "removed" if current[path] is None else "changed"
            found.append(f"tool-reported input {path} {what}")
    for name in sorted(env):
        value = environ.get(name)
        if (None if value is None else digest_text(value)) != env[name]:
            found.append(f"tracked env {name} changed")
    return found
