"""Small per-user caches that make start-up cheap (``$XDG_CACHE_HOME/vx``, default
``~/.cache/vx``). Everything here is derived data: deleting the directory is always safe."""

from __future__ import annotations

import marshal
import os
from pathlib import Path
from typing import Any

from vx.fileio import atomic_write

__all__ = ["cached_toml", "file_identity", "user_cache_dir"]


def user_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "vx"


def file_identity(path: Path | str) -> tuple[int, int, int] | None:
    """``(mtime_ns, size, inode)``, or None when ``path`` does not exist."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def cached_toml(path: Path, parse: Any) -> dict[str, Any]:
    """``parse(path)``, remembered per file until its stat changes (TOML files whose values
    marshal cannot hold, such as dates, are simply parsed every time)."""
    key = file_identity(path)
    import blake3

    digest = blake3.blake3(str(path).encode()).hexdigest()[:24]
    entry = user_cache_dir() / "toml" / f"{digest}.marshal"
    try:
        recorded, data = marshal.loads(entry.read_bytes())
        if recorded == key and isinstance(data, dict):
            return data
    except (OSError, EOFError, ValueError, TypeError):
        pass
    data = parse(path)
    try:
        blob = marshal.dumps((key, data))
    except ValueError:  # a value marshal cannot hold
        return dict(data)
    atomic_write(entry, blob)
    return dict(data)
