"""The bubblewrap backend: a mount namespace holding only the policy's areas."""

from __future__ import annotations

import os
import shutil
import subprocess
from functools import cache

from vx_sandbox.policy import Policy

__all__ = ["bwrap_argv", "bwrap_path"]


@cache
def bwrap_path() -> str | None:
    """``bwrap`` if it is installed and can create a sandbox here (user namespaces)."""
    path = shutil.which("bwrap")
    if path is None:
        return None
    probe = subprocess.run(
        [path, "--ro-bind", "/", "/", "--unshare-net", "true"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        check=False,
    )
    return path if probe.returncode == 0 else None


def _depth(path: str) -> tuple[int, str]:
    return path.rstrip("/").count("/"), path


def bwrap_argv(bwrap: str, policy: Policy, cwd: str, argv: list[str]) -> list[str]:
    """``bwrap [mounts] -- argv``: read areas read-only, write areas read-write, the rest
    absent (ENOENT); directories are bound, never single files of an input set."""
    args = [bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    if policy.network is not True:
        args.append("--unshare-net")  # a new namespace with only a loopback interface
    mounts: dict[str, list[str]] = {
        "/dev": ["--dev", "/dev"],
        "/proc": ["--proc", "/proc"],
        "/tmp": ["--dir", "/tmp"],  # empty: the task's TMPDIR is bound below
    }
    for path in policy.read:
        if path in mounts or not os.path.lexists(path):
            continue
        if os.path.islink(path) and os.path.dirname(path) == "/":
            mounts[path] = ["--symlink", os.readlink(path), path]
        else:
            mounts[path] = ["--ro-bind", path, path]
    for path in policy.write:
        if os.path.exists(path) and not path.startswith("/dev/"):
            mounts[path] = ["--bind", path, path]
    bound = [m for m, op in mounts.items() if op[0] in ("--ro-bind", "--bind")]
    for path in policy.listable:
        if not any(path == m or path.startswith(m.rstrip("/") + "/") for m in bound):
            mounts[path] = ["--dir", path]
    for path in sorted(mounts, key=_depth):
        args += mounts[path]
    # The root is bwrap's own tmpfs: read-only, so that writes outside the write areas fail
    # (EROFS) instead of landing in a throwaway directory.
    return [*args, "--remount-ro", "/", "--chdir", cwd, "--", *argv]
