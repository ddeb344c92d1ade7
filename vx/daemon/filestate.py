"""File state the warm server keeps between requests, kept current by a file watcher.

What is kept: the content digest of every input file a request asked for, and the output of
``git ls-files`` (raw and parsed per project set). What keeps it current: a recursive
watchfiles watcher (the Rust notify crate, inotify on Linux) on the workspace root. Each
request first **syncs**: it writes a cookie file into ``.vx/daemon/`` and takes the
watcher's changes until the cookie's own event arrives, so every change made before the
request is applied before anything is read (Watchman's and Turborepo's cookie sync).

Applying a change: the changed path's digest is forgotten; a path created or deleted (also
each side of a rename) forgets every digest below it, since a directory moved or replaced
brings files that had no event of their own; a change under ``.git/``, of a
``.gitignore``, ``CACHEDIR.TAG`` or ``pyproject.toml``, or any file created or deleted
outside the directories vx never lists forgets the git listing.

When it cannot be sure, it forgets everything (the next request reads from disk like a new
process): a sync that does not see its cookie in time, more changes at once than
:data:`FLOOD` (the watcher may have overflowed: watchfiles does not report the kernel's
queue overflow), the watcher's error or death (it then stops watching for good: the server
works as without file state). Without watchfiles, on a network file system (events from
other machines never arrive) or when the kernel's watch limit is reached, the server keeps
no file state at all (one log line).

Only the server imports this module; :mod:`vx.filehash` and :mod:`vx.gitfiles` consult it
through their ``memo`` hooks, set for a synced request only.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

__all__ = ["FLOOD", "FileState"]

#: More changes than this between two syncs: forget everything (an inotify queue
#: overflow loses events silently behind watchfiles; a burst this large may have been one).
FLOOD = 2000

#: How long a sync waits for its cookie before it gives up and forgets everything.
SYNC_TIMEOUT = 2.0

#: More created/deleted paths than this at once: forget every digest instead of searching.
_MANY_MOVES = 64

_ADDED, _MODIFIED, _DELETED = 1, 2, 3

#: File systems whose changes made elsewhere never reach inotify.
_REMOTE_FS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "ceph", "glusterfs", "fuse.sshfs", "afs"}
)

#: Files whose change may change what ``git ls-files`` reports.
_LISTING_FILES = frozenset({".gitignore", "CACHEDIR.TAG", "pyproject.toml"})

#: Variables that change what ``git ls-files`` reports (every ``GIT_*`` one counts too).
_GIT_VARIABLES = ("HOME", "XDG_CONFIG_HOME", "VX_NO_GIT_LISTING")


class FileState:
    """The server's file memo and its watcher (one per server, one workspace root)."""

    def __init__(self, root: Path, log: Callable[[str], None]) -> None:
        self.root = str(root)
        self.prefix = self.root + os.sep
        self.log = log
        self.cookie_dir = os.path.join(self.root, ".vx", "daemon")
        self.cookie_prefix = self.cookie_dir + os.sep
        self.notify: Any = None
        self.state = "off"
        """``watching``, ``off`` (never started) or ``stopped`` (the watcher failed)."""
        self.reason = "not started"
        self.known: dict[str, str] = {}
        """Absolute path -> content digest, for files unchanged since they were read."""
        self.listing: tuple[tuple[object, ...], bytes] | None = None
        """(signature, output) of ``git ls-files`` in the root."""
        self.parsed: dict[object, dict[str, list[str]]] = {}
        """The listing split per project, per project set."""
        self._real_dirs: dict[str, bool] = {}
        self._cookies = 0
        self._changed = 0
        """Changes applied since the last sync (a flood means a possible overflow)."""
        self._identity: tuple[int, int] | None = None
        """The root directory's device and inode when watching started."""
        self.rescans = 0
        self.synced = False

    # -- the watcher ---------------------------------------------------------------

    def start(self) -> None:
        """Start watching the root; on any obstacle, log one line and keep no file state."""
        fs = _filesystem(self.root)
        if fs in _REMOTE_FS:
            self._off(f"the workspace is on {fs}: changes made elsewhere are not reported")
            return
        try:
            from watchfiles._rust_notify import RustNotify
        except ImportError as exc:
            self._off(f"watchfiles is not importable ({exc}); pip install watchfiles")
            return
        try:
            self._cookie_dir()
            self._identity = _identity(self.root)
            self.notify = RustNotify([self.root], False, False, 300, True, True)
        except Exception as exc:  # the kernel's watch limit, a vanished root, ...
            self._off(f"cannot watch {self.root}: {exc}")
            return
        self.state, self.reason = "watching", ""
        self.log(f"file state: watching {self.root}")

    def _cookie_dir(self) -> None:
        """``.vx/daemon``; a ``.vx`` made here gets its ``.gitignore`` and ``CACHEDIR.TAG``
        as when a run makes it (``git add -A`` must never pick it up)."""
        from vx.statedir import make_dirs

        make_dirs(Path(self.cookie_dir))

    def _off(self, reason: str) -> None:
        self.state, self.reason = "off", reason
        self.log(f"file state not kept (runs read from disk as without a server): {reason}")

    def stop(self, reason: str) -> None:
        """Stop watching for good and forget everything (the watcher cannot be trusted)."""
        notify, self.notify = self.notify, None
        if notify is not None:
            with contextlib.suppress(Exception):
                notify.close()
        self.forget(reason)
        self.state, self.reason = "stopped", reason

    def forget(self, reason: str) -> None:
        """Forget every digest and listing (the next request reads from disk)."""
        self.known.clear()
        self.listing = None
        self.parsed.clear()
        self._real_dirs.clear()
        self._changed = 0
        self.rescans += 1
        self.log(f"file state: rescan ({reason})")

    def sync(self) -> bool:
        """Apply every change made before now; False (and nothing kept) when that cannot be
        guaranteed: this request then reads everything from disk."""
        self.synced = False
        if self.notify is None:
            return False
        if _identity(self.root) != self._identity:
            # Deleted and made again (a fresh clone in its place): the watch is on the old one.
            self.stop("the workspace root directory was replaced")
            return False
        self._cookies += 1
        cookie = os.path.join(self.cookie_dir, f"cookie-{os.getpid()}-{self._cookies}")
        if not os.path.lexists(self.cookie_dir):
            # Removed (``rm -rf .vx``): the watcher may not watch the new one yet, and its
            # cookie could never arrive. Read from disk this once.
            with contextlib.suppress(OSError):
                self._cookie_dir()
            self.forget("the sync directory was made again")
            return False
        try:
            os.close(os.open(cookie, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        except OSError as exc:
            self.forget(f"cannot write the sync cookie: {exc}")
            return False
        deadline = time.monotonic() + SYNC_TIMEOUT
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.forget(f"no event for the sync cookie within {SYNC_TIMEOUT:g} s")
                    return False
                changes = self.notify.watch(50, 1, max(1, int(remaining * 1000)), None)
                if isinstance(changes, str):  # "timeout", or "signal" (changes were cleared)
                    self.forget(f"the watcher returned {changes!r}")
                    return False
                if self.apply(changes, cookie):
                    self._changed = 0
                    self.synced = True
                    return True
        except Exception as exc:  # the watcher's own error, or it was closed
            self.stop(f"watcher error: {type(exc).__name__}: {exc}")
            return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(cookie)

    def drain(self) -> None:
        """Apply what changed while idle (bounds the watcher's buffer between requests)."""
        if self.notify is None:
            return
        try:
            changes = self.notify.watch(50, 1, 1, None)
        except Exception as exc:
            self.stop(f"watcher error: {type(exc).__name__}: {exc}")
            return
        if isinstance(changes, str):
            if changes != "timeout":
                self.forget(f"the watcher returned {changes!r}")
            return
        self.apply(changes, None)

    def apply(self, changes: Iterable[tuple[int, str]], cookie: str | None) -> bool:
        """Forget what ``changes`` may have changed; whether ``cookie`` was among them."""
        changes = list(changes)
        seen = False
        moved: list[str] = []
        listing = False
        known = self.known
        for change, path in changes:
            if path.startswith(self.cookie_prefix):
                seen = seen or path == cookie
                continue
            known.pop(path, None)
            if change != _MODIFIED:
                moved.append(path)
            if not listing and self._changes_listing(change, path):
                listing = True
        self._changed += len(changes)
        if self._changed > FLOOD:
            self.forget(f"{self._changed} changes at once")
            self._changed = 0
            return seen
        if moved:
            self._forget_below(moved)
        if listing:
            self.listing = None
            self.parsed.clear()
        return seen

    def _changes_listing(self, change: int, path: str) -> bool:
        from vx.filelist import default_ignored

        if not path.startswith(self.prefix):
            return True  # the root itself
        relative = path[len(self.prefix) :]
        if relative == ".git" or relative.startswith(".git/"):
            return True
        name = relative.rpartition("/")[2]
        if name in _LISTING_FILES:
            return True
        if change == _MODIFIED:
            return False
        return not (default_ignored(relative) or default_ignored(relative + "/"))

    def _forget_below(self, moved: list[str]) -> None:
        """A created, deleted or renamed path may be a directory: forget what is below it."""
        if len(moved) > _MANY_MOVES:
            self.known.clear()
            self._real_dirs.clear()
            return
        below = tuple(path + os.sep for path in moved)
        for table in (self.known, self._real_dirs):
            for path in [p for p in table if p.startswith(below)]:
                del table[path]
        for path in moved:
            self._real_dirs.pop(path, None)

    # -- what vx.filehash and vx.gitfiles ask ----------------------------------------

    def remember(self, path: str, digest: str) -> None:
        """Keep the digest just read of ``path`` if its changes reach the watcher: under the
        root, with no symbolic link among its directories (their events would carry another
        path, or none)."""
        if not (self.synced and path.startswith(self.prefix)):
            return
        directory = path.rpartition(os.sep)[0]
        real = self._real_dirs.get(directory)
        if real is None:
            real = self._real_dirs[directory] = os.path.realpath(directory) == directory
        if real:
            self.known[path] = digest

    def git_listing(self, root: Path) -> bytes | None:
        """The kept ``git ls-files`` output for ``root``, or None."""
        if not self.synced or self.listing is None or str(root) != self.root:
            return None
        signature, output = self.listing
        return output if signature == _git_signature(self.root, signature[0]) else None

    def keep_git_listing(self, root: Path, output: bytes) -> None:
        """Keep ``output`` while nothing it depends on changes (the repository must be the
        root's own ``.git`` directory, which the watcher sees)."""
        if not self.synced or str(root) != self.root:
            return
        if not os.path.isdir(os.path.join(self.root, ".git")):
            return
        self.listing = (_git_signature(self.root, _excludes_file(self.root)), output)
        self.parsed.clear()

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "reason": self.reason,
            "files": len(self.known),
            "listing": self.listing is not None,
            "rescans": self.rescans,
        }


def _identity(path: str) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _git_signature(root: str, excludes: object) -> tuple[object, ...]:
    """What ``git ls-files`` depends on outside the root: the variables, and the stat of
    git's global and system configuration and of the global excludes file."""
    env = os.environ
    home = env.get("HOME", "")
    config = env.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    files = [
        os.path.join(home, ".gitconfig"),
        os.path.join(config, "git", "config"),
        os.path.join(config, "git", "ignore"),
        "/etc/gitconfig",
        env.get("GIT_CONFIG_GLOBAL", ""),
        env.get("GIT_CONFIG_SYSTEM", ""),
    ]
    if isinstance(excludes, str):
        files.append(excludes)
    stats = []
    for file in files:
        try:
            st = os.stat(file) if file else None
        except OSError:
            st = None
        stats.append(
            None if st is None else (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        )
    variables = sorted(
        (name, value)
        for name, value in env.items()
        if name.startswith("GIT_") or name in _GIT_VARIABLES
    )
    return (excludes, tuple(variables), tuple(stats))


def _excludes_file(root: str) -> str | None:
    """git's ``core.excludesFile``, if set (its stat then joins the listing's signature)."""
    try:
        done = subprocess.run(
            ("git", "config", "--path", "--get", "core.excludesFile"),
            cwd=root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
    except OSError:
        return None
    value = done.stdout.decode(errors="surrogateescape").strip()
    return os.path.join(root, value) if value else None


def _filesystem(path: str) -> str:
    """The file system type of the mount holding ``path`` (``/proc/self/mounts``)."""
    best, kind = "", ""
    try:
        with open("/proc/self/mounts", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = path == point or path.startswith(point.rstrip("/") + "/")
                if inside and len(point) > len(best):
                    best, kind = point, fields[2]
    except OSError:
        return ""
    return kind
