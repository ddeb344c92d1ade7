"""pytest plugin shipped with vx (entry point ``pytest11``): when pytest runs as a vx task
with a runner-aware channel (``VX_IPC`` set), report at the end of the session every
imported module file, conftest and pytest configuration file inside the workspace, so the
task's cache entry is valid only while they keep their content. Inactive otherwise.

Files under the interpreter's prefix (a virtualenv inside the workspace) and under
``site-packages``/``dist-packages`` are left out: installed distributions are not workspace
sources. Data files the tests open are not reported (see ``docs/runner-aware.md``); a test
suite can report them itself with ``vx_ipc.add_inputs``. The ``.pytest_cache`` directory is
reported as ignored output.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from typing import Any

__all__ = ["imported_files", "pytest_sessionfinish"]


def imported_files(root: str, extra: Iterable[object] = ()) -> list[str]:
    """Source files of loaded modules (plus those of ``extra`` module objects) inside
    ``root``, outside the interpreter's installation."""
    root = os.path.realpath(root) + os.sep
    excluded = tuple(
        os.path.realpath(prefix) + os.sep for prefix in {sys.prefix, sys.base_prefix} if prefix
    )
    found: set[str] = set()
    for module in [*list(sys.modules.values()), *extra]:
        path = getattr(module, "__file__", None)
        if not isinstance(path, str):
            continue
        path = os.path.realpath(path)
        if (
            path.startswith(root)
            and not path.startswith(excluded)
            and "/site-packages/" not in path
            and "/dist-packages/" not in path
        ):
            found.add(path)
    return sorted(found)


def pytest_sessionfinish(session: Any, exitstatus: int) -> None:
    if not os.environ.get("VX_IPC"):
        return
    import vx_ipc

    config = session.config
    root = os.environ.get("VX_WORKSPACE_ROOT") or str(config.rootpath)
    files = imported_files(root, config.pluginmanager.get_plugins())
    inipath = getattr(config, "inipath", None)
    if inipath is not None and os.path.realpath(inipath).startswith(os.path.realpath(root) + "/"):
        files.append(str(inipath))
    vx_ipc.add_inputs(files)
    cache = getattr(config, "cache", None)
    directory = getattr(cache, "_cachedir", None)
    if directory is not None:
        vx_ipc.ignore_outputs([str(directory)])
