"""The options of one ``vx run``, parsed once by the ``run`` command and passed explicitly to
planning (:mod:`vx.planning`), the cache (:mod:`vx.cache`) and the scheduler (:mod:`vx.runner`).

No kernel module reads a command-line option by name: what a run needs is a field here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal, final

from vx.errors import UsageError
from vx.execution import ContinueMode

__all__ = ["LayerAccess", "RunOptions", "parse_cache_spec", "parse_concurrency"]

_PERCENT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*%\s*$")


def parse_concurrency(value: int | str) -> int:
    """``4`` -> 4; ``"50%"`` -> half the CPUs (at least 1). Raises ValueError."""
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ValueError(f"must be at least 1, got {value}")
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return parse_concurrency(int(text))
        match = _PERCENT.match(text)
        if match:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
            return max(1, int((cpus or os.cpu_count() or 1) * float(match.group(1)) / 100))
    raise ValueError(f"expected a positive integer or a percentage like '50%', got {value!r}")


@final
@dataclass(frozen=True, slots=True)
class LayerAccess:
    """What ``--cache`` allows for one layer."""

    read: bool
    write: bool


def parse_cache_spec(spec: str) -> dict[str, LayerAccess]:
    """``local:rw,remote:r`` -> ``{"local": LayerAccess(True, True), "remote": (True, False)}``."""
    result: dict[str, LayerAccess] = {}
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, mode = part.partition(":")
        if not sep or not name or set(mode) - {"r", "w"}:
            raise UsageError(
                f"--cache={spec!r}: expected LAYER:MODE pairs like local:rw,remote:r "
                "(MODE is r, w, rw or empty)"
            )
        result[name.strip()] = LayerAccess("r" in mode, "w" in mode)
    return result


@final
@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """What to run and how: built once from the command line by the ``run`` command
    (``vx.commands.run.run_options``); other commands and tests build one directly."""

    tasks: tuple[str, ...] = ()
    """Task names (``test``) or exact task ids (``acme-api#test``); empty means every task
    of the selected projects."""
    filters: tuple[str, ...] = ()
    """Project selectors (``--filter``, plus ``...[BASE]`` for ``--affected``)."""
    concurrency: int | None = None
    """``-j``, parsed; None: ``[tool.vx] concurrency``, else the CPU count."""
    continue_mode: ContinueMode = ContinueMode.NEVER
    dry: Literal["text", "json"] | None = None
    force: bool = False
    """Ignore cache reads (results are still written)."""
    cache: Mapping[str, LayerAccess] | None = None
    """``--cache``: per-layer access; layers not named are off. None: every layer as
    configured."""
    env_mode: Literal["strict", "loose"] | None = None
    """None: ``[tool.vx] env_mode``."""
