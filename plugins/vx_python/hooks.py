"""Hooks of the ``python`` plugin."""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    from vx import Config, Task


@cache
def _interpreter() -> str:
    version = ".".join(map(str, sys.version_info[:2]))
    machine = os.uname().machine if hasattr(os, "uname") else "unknown"
    return f"{sys.implementation.name}-{version}-{sys.platform}-{machine}"


@vx.hookimpl
def vx_task_hash_components(task: Task, config: Config) -> dict[str, str]:
    return {"python.interpreter": _interpreter()}
