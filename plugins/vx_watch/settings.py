"""``[tool.vx.watch]``."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = ["WatchSettings", "parse_seconds"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s)?\s*$")


def parse_seconds(value: Any) -> float:
    """``0.3``, ``"300ms"``, ``"1s"`` -> seconds (>= 0). Raises ValueError."""
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    match = _DURATION.match(value) if isinstance(value, str) else None
    if match is None:
        raise ValueError(f"expected seconds or a duration like '300ms' or '1s', got {value!r}")
    return float(match.group(1)) * (0.001 if match.group(2) == "ms" else 1.0)


class WatchSettings(BaseModel):
    """Settings of ``vx watch``."""

    model_config = ConfigDict(extra="forbid")

    debounce: float = 0.2
    """Quiet time that ends a burst of changes (``--debounce`` overrides it)."""
    ignore: list[str] = Field(default_factory=list)
    """Extra gitignore-style patterns (relative to the workspace root) whose changes are
    ignored, on top of .gitignore files, declared outputs, .git and .vx."""

    @field_validator("debounce", mode="before")
    @classmethod
    def _seconds(cls, value: Any) -> float:
        return parse_seconds(value)
