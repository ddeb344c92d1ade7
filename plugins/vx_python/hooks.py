"""Hooks of the ``python`` plugin."""

from __future__ import annotations

import os
import sys
from functools import cache
from typing import TYPE_CHECKING

import vx

if TYPE_CHECKING:
    from vx import Config, TaskGraph


@cache
def _interpreter() -> str:
    version = ".".join(map(str, sys.version_info[:2]))
    machine = os.uname().machine if hasattr(os, "uname") else "unknown"
    return f"{sys.implementation.name}-{version}-{sys.platform}-{machine}"


@vx.hookimpl
def vx_graph_hash_components(graph: TaskGraph, config: Config) -> dict[str, dict[str, str]]:
    components = {"python.interpreter": _interpreter()}  # one mapping shared by every task
    return dict.fromkeys((task.id for task in graph), components)
