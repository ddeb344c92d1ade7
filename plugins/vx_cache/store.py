"""The local artifact store: one file per entry, indexed in SQLite (WAL)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import blake3

from vx import (
    CACHEDIR_TAG_SIGNATURE,
    Artifact,
    ArtifactInfo,
    CacheLayer,
    CorruptArtifactError,
    make_cache_dir,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    key TEXT PRIMARY KEY,
    file TEXT NOT NULL,
    digest TEXT NOT NULL,
    task_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    duration_ms REAL NOT NULL,
    created_at REAL NOT NULL,
    accessed_at REAL NOT NULL,
    info TEXT,
    log BLOB
);
CREATE INDEX IF NOT EXISTS entries_accessed ON entries (accessed_at);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    finished_at REAL NOT NULL,
    hits INTEGER NOT NULL,
    remote_hits INTEGER NOT NULL,
    misses INTEGER NOT NULL
);
"""

#: Seconds within which a hit does not write an entry's ``accessed_at`` again.
ACCESS_RESOLUTION = 60.0

_TAG = (
    CACHEDIR_TAG_SIGNATURE + b"\n# This file is a cache directory tag created by vx.\n"
    b"# For information about cache directory tags, see https://bford.info/cachedir/\n"
)


def _write_tag(directory: Path) -> None:
    with contextlib.suppress(OSError), open(directory / "CACHEDIR.TAG", "xb") as handle:
        handle.write(_TAG)


def _pack_log(log: bytes) -> bytes:
    """Small logs are kept as is (``r`` prefix), larger ones zstd-compressed (``z``)."""
    if len(log) < 4096:
        return b"r" + log
    import zstandard  # only for large logs: a full hit with small logs never loads it

    return b"z" + zstandard.ZstdCompressor().compress(log)


def _unpack_log(blob: bytes | None) -> bytes:
    if not blob:
        return b""
    if blob[:1] == b"z":
        import zstandard

        try:
            return bytes(zstandard.ZstdDecompressor().decompress(blob[1:]))
        except zstandard.ZstdError as exc:
            raise ValueError(f"corrupt log: {exc}") from None
    return bytes(blob[1:])


@dataclass(slots=True)
class _Pending:
    """An index row waiting to be committed, and what its transaction raised."""

    row: tuple[object, ...]
    error: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Entry:
    key: str
    task_id: str
    size: int
    accessed_at: float


class LocalCache(CacheLayer):
    """The cache layer named ``local``: ``<dir>/artifacts/<ab>/<key>.<digest>.tar.zst``.

    Writes are atomic (temp file, rename, then the index row; the last writer wins, so
    ``--force`` replaces an entry), so a crash leaves a whole entry or none, and concurrent
    vx processes never mix entries. The directory holds a ``CACHEDIR.TAG``, which also keeps
    it out of a project's inputs when it lives inside one.
    """

    name = "local"
    local = True

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.artifacts = directory / "artifacts"
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._touched: dict[str, float] = {}
        self._queue: list[_Pending] = []
        """Index rows waiting for a transaction (see _index)."""
        self._queue_lock = threading.Lock()
        """key -> time of a hit not yet written to the index (see flush_access_times)."""

    @contextlib.contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            if self._db is None:
                make_cache_dir(self.directory)
                _write_tag(self.directory)
                db = sqlite3.connect(
                    self.directory / "index.sqlite",
                    timeout=60,
                    isolation_level=None,
                    check_same_thread=False,
                )
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.executescript(_SCHEMA)
                columns = {row[1] for row in db.execute("PRAGMA table_info(entries)")}
                for column, kind in (("info", "TEXT"), ("log", "BLOB")):
                    if column not in columns:  # an index written by an earlier vx
                        db.execute(f"ALTER TABLE entries ADD COLUMN {column} {kind}")
                self._db = db
            yield self._db

    def flush_access_times(self) -> None:
        """Write the ``accessed_at`` of every hit since the last flush, in one transaction."""
        if not self._touched:
            return
        with self._connect() as db:
            touched, self._touched = self._touched, {}
            db.execute("BEGIN")
            db.executemany(
                "UPDATE entries SET accessed_at = ? WHERE key = ?",
                [(when, key) for key, when in touched.items()],
            )
            db.execute("COMMIT")

    def close(self) -> None:
        self.flush_access_times()
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- CacheLayer ------------------------------------------------------------

    def get(self, key: str) -> Artifact | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT file, digest, duration_ms FROM entries WHERE key = ?", (key,)
            ).fetchone()
        if row is None:
            return None
        file, digest, duration_ms = row
        try:
            data = (self.artifacts / file).read_bytes()
        except FileNotFoundError:
            self._forget(key, file)
            return None
        if blake3.blake3(data).hexdigest() != digest:
            self._forget(key, file)
            raise CorruptArtifactError(
                f"local cache entry {key[:16]} is corrupt (digest mismatch: {len(data)} bytes)"
            )
        self._touched[key] = time.time()
        return Artifact(key=key, data=data, duration_ms=duration_ms)

    def put(self, key: str, artifact: Artifact) -> None:
        digest = blake3.blake3(artifact.data).hexdigest()
        file = f"{key[:2]}/{key}.{digest[:16]}.tar.zst"
        path = self._directory_of(file)
        temporary = path.with_name(f".tmp-{os.getpid()}-{os.urandom(4).hex()}")
        temporary.write_bytes(artifact.data)
        os.replace(temporary, path)
        self._index(key, file, digest, len(artifact.data), artifact)

    def put_file(self, key: str, artifact: Artifact, path: Path, digest: str) -> None:
        """Move the kernel's archive file into place (a copy when it is on another file
        system), then index it: the archive is never read back."""
        file = f"{key[:2]}/{key}.{digest[:16]}.tar.zst"
        target = self._directory_of(file)
        size = os.stat(path).st_size
        try:
            os.replace(path, target)
        except OSError:  # another file system (a cache directory elsewhere)
            temporary = target.with_name(f".tmp-{os.getpid()}-{os.urandom(4).hex()}")
            shutil.copyfile(path, temporary)
            os.replace(temporary, target)
        self._index(key, file, digest, size, artifact)

    def _directory_of(self, file: str) -> Path:
        """The path of artifact ``file``, its directory created."""
        path = self.artifacts / file
        make_cache_dir(self.directory)
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def _index(self, key: str, file: str, digest: str, size: int, artifact: Artifact) -> None:
        """Replace the index row of ``key`` by the entry in ``file`` (already in place).

        Group commit: rows of concurrent puts (a fresh clone's remote hits are written
        here from several threads) queue up, and whichever thread holds the database
        writes all the queued rows in one transaction. A put returns once its own row is
        committed (or raises what its transaction raised)."""
        now = time.time()
        info = artifact.info
        extra = (json.dumps(dict(info.outputs)), _pack_log(info.log)) if info else (None, None)
        pending = _Pending(
            (key, file, digest, artifact.task_id, size, artifact.duration_ms, now, now, *extra)
        )
        with self._queue_lock:
            self._queue.append(pending)
        with self._connect() as db:
            with self._queue_lock:
                batch, self._queue = self._queue, []
            if batch:
                self._commit(db, batch)
        if pending.error is not None:
            raise pending.error

    def _commit(self, db: sqlite3.Connection, batch: list[_Pending]) -> None:
        """Write ``batch`` in one transaction; then remove the files the rows replaced."""
        replaced: list[str] = []
        db.execute("BEGIN IMMEDIATE")
        try:
            for pending in batch:
                key, file = pending.row[0], pending.row[1]
                old = db.execute("SELECT file FROM entries WHERE key = ?", (key,)).fetchone()
                db.execute(
                    "INSERT OR REPLACE INTO entries (key, file, digest, task_id, size, "
                    "duration_ms, created_at, accessed_at, info, log) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    pending.row,
                )
                if old is not None and old[0] != file:
                    replaced.append(old[0])
            db.execute("COMMIT")
        except BaseException as exc:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            for pending in batch:
                pending.error = exc
            return
        for old_file in replaced:
            (self.artifacts / old_file).unlink(missing_ok=True)

    def info_many(self, keys: Sequence[str]) -> dict[str, ArtifactInfo]:
        """The output listing and log of every entry among ``keys``, from the index alone."""
        found: dict[str, ArtifactInfo] = {}
        accessed: dict[str, float] = {}
        wanted = list(dict.fromkeys(keys))
        with self._connect() as db:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                rows = db.execute(
                    "SELECT key, info, log, duration_ms, accessed_at FROM entries "
                    f"WHERE info IS NOT NULL AND key IN ({','.join('?' * len(chunk))})",
                    chunk,
                ).fetchall()
                for key, info, log, duration_ms, accessed_at in rows:
                    try:
                        found[key] = ArtifactInfo(json.loads(info), _unpack_log(log), duration_ms)
                    except ValueError:
                        continue
                    accessed[key] = accessed_at
        # A warm run hits the same entries again and again: their use is written at most
        # once per ACCESS_RESOLUTION (plenty for least-recently-used pruning).
        now = time.time()
        self._touched.update(
            (key, now) for key in found if now - accessed[key] >= ACCESS_RESOLUTION
        )
        return found

    def delete(self, key: str) -> None:
        with self._connect() as db:
            row = db.execute("SELECT file FROM entries WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self._forget(key, row[0])

    def _forget(self, key: str, file: str) -> None:
        with self._connect() as db:
            db.execute("DELETE FROM entries WHERE key = ? AND file = ?", (key, file))
        (self.artifacts / file).unlink(missing_ok=True)

    # -- maintenance -----------------------------------------------------------

    def entries(self) -> list[Entry]:
        """Every entry, least recently used first."""
        self.flush_access_times()
        with self._connect() as db:
            rows = db.execute(
                "SELECT key, task_id, size, accessed_at FROM entries ORDER BY accessed_at, key"
            ).fetchall()
        return [Entry(*row) for row in rows]

    def prune(self, max_size: int | None, max_age: float | None, dry: bool = False) -> list[Entry]:
        """Evict entries older than ``max_age`` seconds, then least recently used ones until
        the total is at most ``max_size`` bytes. Returns the evicted (or, with ``dry``,
        the would-be evicted) entries."""
        entries = self.entries()
        now = time.time()
        evict: list[Entry] = []
        keep: list[Entry] = []
        for entry in entries:
            if max_age is not None and now - entry.accessed_at > max_age:
                evict.append(entry)
            else:
                keep.append(entry)
        if max_size is not None:
            total = sum(entry.size for entry in keep)
            for entry in list(keep):
                if total <= max_size:
                    break
                evict.append(entry)
                keep.remove(entry)
                total -= entry.size
        if not dry:
            for entry in evict:
                self.delete(entry.key)
            self._remove_orphans()
        return evict

    def _remove_orphans(self) -> None:
        """Artifact files without an index row (a crash between rename and insert)."""
        with self._connect() as db:
            known = {row[0] for row in db.execute("SELECT file FROM entries")}
        cutoff = time.time() - 3600
        for path in self.artifacts.glob("*/*"):
            name = path.relative_to(self.artifacts).as_posix()
            with contextlib.suppress(OSError):
                if name not in known and path.stat().st_mtime < cutoff:
                    path.unlink()

    def clear(self) -> int:
        """Remove every entry; returns how many there were."""
        count = len(self.entries())
        with self._connect() as db:
            db.execute("DELETE FROM entries")
            db.execute("DELETE FROM runs")
        for path in sorted(self.artifacts.glob("**/*"), reverse=True):
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()
        return count

    def record_run(self, run_id: str, hits: int, remote_hits: int, misses: int) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO runs VALUES (?, ?, ?, ?, ?)",
                (run_id, time.time(), hits, remote_hits, misses),
            )

    def recent_runs(self, limit: int = 50) -> list[tuple[int, int, int]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT hits, remote_hits, misses FROM runs ORDER BY finished_at DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [tuple(row) for row in rows]
