"""Git facts about a checkout, used on the client and on each worker."""

from __future__ import annotations

import subprocess
from pathlib import Path


class CheckoutError(Exception):
    """The directory is not a usable checkout (the message says why)."""


def _git(cwd: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, check=False, timeout=60
        )
    except FileNotFoundError:
        raise CheckoutError("git is not installed") from None
    if done.returncode != 0:
        raise CheckoutError(f"{cwd} is not a git checkout ({done.stderr.strip()})")
    return done.stdout


def toplevel(path: Path) -> Path:
    return Path(_git(path, "rev-parse", "--show-toplevel").strip())


def revision(top: Path) -> str:
    return _git(top, "rev-parse", "HEAD").strip()


def changes(top: Path, *, untracked: bool) -> list[str]:
    """Paths with uncommitted changes (``git status``), ignoring vx's own ``.vx`` folders;
    with ``untracked``, also files git does not know and does not ignore."""
    mode = "--untracked-files=all" if untracked else "--untracked-files=no"
    out = _git(top, "status", "--porcelain", "-z", mode)
    paths = []
    for entry in out.split("\0"):
        if len(entry) < 4:
            continue
        path = entry[3:]
        if path == ".vx" or path.startswith(".vx/") or "/.vx/" in f"/{path}":
            continue
        paths.append(path)
    return paths
