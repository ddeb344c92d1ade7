"""``CACHEDIR.TAG`` (https://bford.info/cachedir/): the local cache writes one, so a cache
directory inside a project is never one of its inputs."""

from __future__ import annotations

from pathlib import Path

__all__ = ["CACHEDIR_TAG", "CACHEDIR_TAG_SIGNATURE", "is_cache_dir"]

#: The tag's file name.
CACHEDIR_TAG = "CACHEDIR.TAG"

#: First bytes of a ``CACHEDIR.TAG`` file.
CACHEDIR_TAG_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"


def is_cache_dir(directory: Path) -> bool:
    """Whether ``directory`` holds a valid ``CACHEDIR.TAG``."""
    try:
        with open(directory / CACHEDIR_TAG, "rb") as handle:
            return handle.read(len(CACHEDIR_TAG_SIGNATURE)) == CACHEDIR_TAG_SIGNATURE
    except OSError:
        return False
