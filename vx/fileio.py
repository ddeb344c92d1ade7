"""Atomic file writes: a temporary file in the same directory, then ``os.replace``.

Readers never see a half-written file, and concurrent writers each replace the file whole.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from vx.statedir import make_dirs

__all__ = ["atomic_write"]


def atomic_write(
    path: Path,
    data: bytes | str | Callable[[BinaryIO], None],
    *,
    best_effort: bool = True,
) -> bool:
    """Write ``data`` (bytes, text, or a function writing to a binary handle) to ``path``,
    creating its directory (a ``.vx`` on the way is marked:
    :mod:`vx.statedir`). Returns whether the file was written.

    ``best_effort`` (for derived data such as caches): an :class:`OSError` is swallowed and
    the call returns False. Exceptions raised by a writer function always propagate. The
    temporary file never outlives a failed write.
    """
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        try:
            handle = open(temporary, "wb")  # noqa: SIM115 (closed below, before the replace)
        except FileNotFoundError:
            make_dirs(path.parent)
            handle = open(temporary, "wb")  # noqa: SIM115
        with handle:
            if callable(data):
                data(handle)
            else:
                handle.write(data.encode() if isinstance(data, str) else data)
        os.replace(temporary, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        if best_effort and isinstance(exc, OSError):
            return False
        raise
    return True
