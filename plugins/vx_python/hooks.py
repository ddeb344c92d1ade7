"""Hooks of the ``python`` plugin."""

from __future__ import annotations

import platform
import sys
from functools import cache
from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    from vx import Config, Task


@cache
def _interpreter() -> str:
    version = ".".join(map(str, sys.version_info[:2]))
    return f"{platform.python_implementation()}-{version}-{sys.platform}-{platform.machine()}"


@vx.hookimpl
def vx_task_hash_components(task: Task, config: Config) -> dict[str, str]:
    return {"python.interpreter": _interpreter()}
