"""Content digests (blake3) of input files, with a persistent stat cache so that unchanged
files are not re-read."""

from __future__ import annotations

import marshal
import os
import stat
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Protocol

import blake3

from vx.fileio import atomic_write

__all__ = ["DigestMemo", "FileHasher", "digest_text"]


class DigestMemo(Protocol):
    """Digests kept across runs and invalidated by a file watcher (the warm server's
    :class:`vx.daemon.filestate.FileState`)."""

    known: dict[str, str]

    def remember(self, path: str, digest: str) -> None: ...


#: The warm server's file state while a request is synced with its watcher: digests of
#: files unchanged since they were read, kept across requests. None in a run of its own.
memo: DigestMemo | None = None

#: Files at least this big are hashed in worker threads.
_PARALLEL_SIZE = 256 * 1024

#: Files modified this recently are re-read even when their stat matches (racy mtime).
_RACY_SECONDS = 2.0


def digest_text(text: str | bytes) -> str:
    data = text.encode() if isinstance(text, str) else text
    return blake3.blake3(data).hexdigest()


class FileHasher:
    """Content digests with a persistent stat cache (path -> size, mtime, inode, ctime ->
    digest). ctime catches an edit whose size and mtime were put back (``touch -d``)."""

    def __init__(self, cache_file: Path | None) -> None:
        self.cache_file = cache_file
        self._loaded: dict[str, tuple[int, int, int, int, str]] | None = None
        self._dirty = False
        self._started = time.time()

    @property
    def _cache(self) -> dict[str, tuple[int, int, int, int, str]]:
        """The stat cache, read on first use (the warm server's memo often answers all)."""
        if self._loaded is None:
            self._loaded = {}
            if self.cache_file is not None:
                try:
                    loaded = marshal.loads(self.cache_file.read_bytes())
                    if isinstance(loaded, dict):
                        self._loaded = loaded
                except (OSError, EOFError, ValueError, TypeError):
                    pass
        return self._loaded

    def digests(self, paths: Iterable[str]) -> dict[str, str | None]:
        """Digest of each absolute path (None if it does not exist or is a directory);
        unchanged files are not re-read."""
        result: dict[str, str | None] = {}
        todo: list[tuple[str, os.stat_result]] = []
        lstat, cache = os.lstat, None
        kept = memo
        known = kept.known if kept is not None else {}
        for path in paths:
            found = known.get(path)
            if found is not None:
                result[path] = found
                continue
            if cache is None:
                cache = self._cache
            try:
                st = lstat(path)
            except (FileNotFoundError, NotADirectoryError):
                result[path] = None
                continue
            if stat.S_ISDIR(st.st_mode):
                result[path] = None
                continue
            cached = cache.get(path)
            if cached and cached[:4] == (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns):
                result[path] = cached[4]
                if kept is not None:
                    kept.remember(path, cached[4])
            else:
                todo.append((path, st))
        # Small files are cheaper to hash inline than to hand to a thread; large ones are
        # hashed in parallel (blake3 releases the GIL).
        large = [item for item in todo if item[1].st_size >= _PARALLEL_SIZE]
        for item in todo:
            if item[1].st_size < _PARALLEL_SIZE:
                result[item[0]] = self._digest_one(item)
        if len(large) > 1:
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=min(8, (os.cpu_count() or 1) * 2)) as pool:
                for (path, _), digest in zip(large, pool.map(self._digest_one, large), strict=True):
                    result[path] = digest
        else:
            result.update((path, self._digest_one((path, st))) for path, st in large)
        if kept is not None:
            for path, _ in todo:
                computed = result[path]
                if computed is not None:
                    kept.remember(path, computed)
        return result

    def _digest_one(self, item: tuple[str, os.stat_result]) -> str:
        path, st = item
        if stat.S_ISLNK(st.st_mode):
            digest = "symlink:" + digest_text(os.readlink(path))
        else:
            hasher = blake3.blake3(max_threads=blake3.blake3.AUTO if st.st_size > 1 << 22 else 1)
            with open(path, "rb") as handle:
                while chunk := handle.read(1 << 20):
                    hasher.update(chunk)
            digest = hasher.hexdigest()
        if max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 < self._started - _RACY_SECONDS:
            entry = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, digest)
            self._cache[path] = entry
            self._dirty = True
        return digest

    def save(self) -> None:
        """Persist the stat cache atomically (best effort)."""
        if self.cache_file is None or not self._dirty:
            return
        if atomic_write(self.cache_file, marshal.dumps(self._cache)):
            self._dirty = False
