"""``[tool.vx.cache]``."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict

T = TypeVar("T")

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB)?\s*$", re.IGNORECASE)
_AGE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {"b": 1, "kb": 1 << 10, "mb": 1 << 20, "gb": 1 << 30, "tb": 1 << 40}
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_size(value: str | int) -> int:
    """``"5GB"`` -> bytes (binary units: 1 KB = 1024 B); a bare number is bytes."""
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"expected a size like 500MB or 5GB (B, KB, MB, GB, TB), got {value!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[(match.group(2) or "b").lower()])


def parse_age(value: str | int) -> float:
    """``"7d"`` -> seconds (s, m, h, d, w); a bare number is seconds."""
    match = _AGE.match(str(value))
    if not match:
        raise ValueError(f"expected an age like 12h or 7d (s, m, h, d, w), got {value!r}")
    return float(match.group(1)) * _AGE_UNITS[(match.group(2) or "s").lower()]


def _optional(parse: Callable[[str | int], T]) -> Callable[[Any], T | None]:
    """``parse`` as a pydantic before-validator that lets None through."""

    def validate(value: Any) -> T | None:
        return None if value is None else parse(value)

    return validate


class CacheSettings(BaseModel):
    """Where the local cache lives and how big it may grow; sizes and ages are parsed once,
    here (a bad value is a configuration error naming the key)."""

    model_config = ConfigDict(extra="forbid")

    dir: str | None = None
    """Cache directory; relative paths are relative to the workspace root (default .vx/cache)."""
    max_size: Annotated[int | None, BeforeValidator(_optional(parse_size))] = None
    """Prune least-recently-used entries after each run beyond this size, in bytes (written
    like "5GB")."""
    max_age: Annotated[float | None, BeforeValidator(_optional(parse_age))] = None
    """Prune entries not used for this long after each run, in seconds (written like "7d")."""
