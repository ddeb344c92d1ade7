"""vx's own directories (``.vx/`` and a cache directory vx creates), marked the way pytest
marks ``.pytest_cache``: a ``.gitignore`` containing ``*`` (``git add -A`` never commits
them) and a ``CACHEDIR.TAG`` (backup tools skip them)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from vx.cachedir import CACHEDIR_TAG_SIGNATURE

__all__ = ["CACHEDIR_TAG", "make_cache_dir", "make_dirs"]

#: https://bford.info/cachedir/ (the first line is the signature tools look for).
CACHEDIR_TAG = (
    CACHEDIR_TAG_SIGNATURE + b"\n"
    b"# This file is a cache directory tag created by vx.\n"
    b"# For information about cache directory tags, see https://bford.info/cachedir/\n"
)
_GITIGNORE = b"# Created by vx automatically.\n*\n"

#: Name of the per-workspace state directory.
STATE_DIR = ".vx"

_marked: set[str] = set()


def make_cache_dir(directory: Path) -> None:
    """Create ``directory`` (and its parents) if needed; when this call creates it, write the
    ``.gitignore`` and ``CACHEDIR.TAG`` into it. A directory that already existed is left
    as it is (it may be the user's)."""
    key = os.fspath(directory)
    if key in _marked:
        return
    parts = directory.parts
    if STATE_DIR in parts[:-1]:  # e.g. .vx/cache: .vx is created (and marked) first
        make_cache_dir(Path(*parts[: parts.index(STATE_DIR) + 1]))
    try:
        os.makedirs(directory)
    except FileExistsError:
        _marked.add(key)
        return
    except OSError:
        return
    for name, content in ((".gitignore", _GITIGNORE), ("CACHEDIR.TAG", CACHEDIR_TAG)):
        with contextlib.suppress(OSError), open(os.path.join(key, name), "xb") as handle:
            handle.write(content)
    _marked.add(key)


def make_dirs(path: Path) -> None:
    """``path.mkdir(parents=True, exist_ok=True)``; a ``.vx`` directory on the way is created
    through :func:`make_cache_dir` (so it is marked)."""
    parts = path.parts
    if STATE_DIR in parts:
        make_cache_dir(Path(*parts[: parts.index(STATE_DIR) + 1]))
    path.mkdir(parents=True, exist_ok=True)
