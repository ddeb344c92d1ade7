"""``git ls-files`` for a workspace: every non-ignored file per git, tracked or not.

The CLI starts the listing in the background as soon as it knows the workspace root
(:func:`prefetch_listing`); :func:`git_ls_files` collects it when inputs are listed, or runs
git then. ``VX_NO_GIT_LISTING=1`` turns git off (the gitignore walk is used instead).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import subprocess

__all__ = ["ListingMemo", "git_ls_files", "prefetch_listing"]


class ListingMemo(Protocol):
    """A ``git ls-files`` output kept across runs while a file watcher sees nothing it
    depends on change (the warm server's :class:`vx.daemon.filestate.FileState`), and its
    split per project set (:class:`vx.filelist.FileLister`)."""

    parsed: dict[object, dict[str, list[str]]]

    def git_listing(self, root: Path) -> bytes | None: ...

    def keep_git_listing(self, root: Path, output: bytes) -> None: ...


#: Set by the warm server while a request is synced with its watcher; None in a run of its
#: own.
memo: ListingMemo | None = None

_GIT_LS_FILES = ("git", "ls-files", "-z", "--cached", "--others", "--exclude-standard")
_prefetched: dict[Path, subprocess.Popen[bytes]] = {}


def _start(root: Path) -> subprocess.Popen[bytes] | None:
    """Start ``git ls-files`` in ``root``; None when git is off or cannot be started."""
    if os.environ.get("VX_NO_GIT_LISTING"):
        return None
    import subprocess

    try:
        return subprocess.Popen(
            _GIT_LS_FILES,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
        )
    except OSError:
        return None


def prefetch_listing(root: Path) -> None:
    """Start ``git ls-files`` for ``root`` in the background (vx then loads plugins and the
    workspace while git lists files)."""
    if root not in _prefetched and not _kept(root):
        process = _start(root)
        if process is not None:
            _prefetched[root] = process


def git_ls_files(root: Path) -> bytes | None:
    """Every non-ignored file under ``root`` per git (NUL-separated), or None outside a git
    work tree."""
    kept = _kept(root)
    if kept is not None:
        return kept
    process = _prefetched.pop(root, None) or _start(root)
    if process is None:
        return None
    try:
        output, _ = process.communicate()
    except OSError:
        return None
    if process.returncode != 0:
        return None
    if memo is not None:
        memo.keep_git_listing(root, output)
    return output


def _kept(root: Path) -> bytes | None:
    """The listing the warm server kept, when git listing is on and nothing changed."""
    if memo is None or os.environ.get("VX_NO_GIT_LISTING"):
        return None
    return memo.git_listing(root)
