"""The run store: every ``vx run`` and each task's result, in SQLite (WAL) under ``.vx/``.

This module is the read API other plugins use (reports, replay, an MCP server): open the
store with :meth:`HistoryStore.open` and read :meth:`~HistoryStore.runs`,
:meth:`~HistoryStore.find_run`, :meth:`~HistoryStore.task_results`,
:meth:`~HistoryStore.task_stats` and :meth:`~HistoryStore.events` (a run's stored event
record); never open the database yourself. The schema is versioned (``PRAGMA user_version``, see
:data:`SCHEMA_VERSION` and docs/history.md); :meth:`HistoryStore.open` migrates older
databases forward and refuses newer ones.
"""

from __future__ import annotations

import fnmatch
import json
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import vx

__all__ = [
    "PASSED",
    "SCHEMA_VERSION",
    "HistoryError",
    "HistoryStore",
    "RunRecord",
    "StoredEvents",
    "TaskRecord",
    "TaskStats",
    "history_path",
    "percentile",
]

#: Version of the schema this code writes; :meth:`HistoryStore.open` upgrades older ones.
SCHEMA_VERSION = 3

#: Task statuses that count as passing.
PASSED = ("success", "flaky")

#: The columns of ``task_results`` (every version: migration 3 copies the rows with
#: ``SELECT *``, so both definitions must be this one).
_TASK_RESULT_COLUMNS = """
        run INTEGER NOT NULL,
        task_id TEXT NOT NULL,
        key TEXT,
        status TEXT NOT NULL,
        cache_status TEXT,
        cache_source TEXT,
        exit_code INTEGER NOT NULL,
        duration_ms REAL NOT NULL,
        attempts INTEGER NOT NULL,
        start_ms REAL,
        end_ms REAL,
        slot INTEGER,
"""

#: ``_MIGRATIONS[n]`` upgrades a database from version ``n`` to ``n + 1``.
_MIGRATIONS = (
    f"""
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        run_id TEXT NOT NULL UNIQUE,
        started_at REAL NOT NULL,
        duration_ms REAL,
        exit_code INTEGER,
        interrupted INTEGER NOT NULL,
        argv TEXT NOT NULL,
        task_names TEXT NOT NULL,
        git_revision TEXT,
        git_branch TEXT,
        concurrency INTEGER,
        host TEXT,
        vx_version TEXT
    );
    CREATE INDEX runs_started_at ON runs (started_at);
    CREATE TABLE task_results ({_TASK_RESULT_COLUMNS}
        PRIMARY KEY (task_id, run)
    ) WITHOUT ROWID;
    CREATE INDEX task_results_run ON task_results (run);
    """,
    # 2: each run's event record (NDJSON, zlib-compressed), pruned with its run.
    """
    CREATE TABLE run_events (
        run INTEGER PRIMARY KEY,
        schema INTEGER NOT NULL,
        encoding TEXT NOT NULL,
        size INTEGER NOT NULL,
        data BLOB NOT NULL
    );
    """,
    # 3: task results keyed by (run, task_id), so a run's rows are appended together
    # instead of scattered over the whole table (one page write per task per run); only
    # executed results are indexed by task, which is what the per-task queries read.
    f"""
    CREATE TABLE task_results_by_run ({_TASK_RESULT_COLUMNS}
        PRIMARY KEY (run, task_id)
    ) WITHOUT ROWID;
    INSERT INTO task_results_by_run SELECT * FROM task_results;
    DROP TABLE task_results;
    ALTER TABLE task_results_by_run RENAME TO task_results;
    CREATE INDEX task_results_executed ON task_results (task_id, key) WHERE attempts > 0;
    """,
)
assert len(_MIGRATIONS) == SCHEMA_VERSION


class HistoryError(Exception):
    """The store cannot be used; ``reason`` is ``missing``, ``locked``, ``corrupt``,
    ``newer`` (written by a newer schema) or ``error``."""

    def __init__(self, message: str, reason: str = "error") -> None:
        super().__init__(message)
        self.reason = reason


def _reason(exc: sqlite3.Error) -> str:
    name = getattr(exc, "sqlite_errorname", "")
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
        return "locked"
    if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
        return "corrupt"
    return "error"


def history_path(root: Path) -> Path:
    """Where the store of the workspace rooted at ``root`` lives."""
    return root / ".vx" / "history.db"


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of an ascending, non-empty sequence."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One recorded ``vx run``."""

    run_id: str
    started_at: float
    """Seconds since the epoch."""
    duration_ms: float | None
    exit_code: int | None
    interrupted: bool
    argv: list[str]
    """The command line (``["vx", "run", "test", ...]``)."""
    task_names: list[str]
    git_revision: str | None
    git_branch: str | None
    concurrency: int | None
    host: str | None
    vx_version: str | None


@dataclass(frozen=True, slots=True)
class TaskRecord:
    """One task's result in one run."""

    run_id: str
    task_id: str
    key: str | None
    """The task's cache key in that run."""
    status: str
    """``success``, ``failed``, ``cached``, ``skipped``, ``cancelled`` or ``flaky``."""
    cache_status: str | None
    """``hit``, ``miss``, ``disabled`` or ``skipped``."""
    cache_source: str | None
    """The layer a hit came from (``local``, ``remote``)."""
    exit_code: int
    duration_ms: float
    attempts: int
    """Commands started (``1 +`` retries); 0 for hits and skipped tasks."""
    start_ms: float | None
    """Offset from the run's start; None when skipped."""
    end_ms: float | None
    slot: int | None
    """The concurrency slot it ran in."""
    started_at: float = 0.0
    """The run's start (seconds since the epoch), for convenience."""

    @property
    def executed(self) -> bool:
        """The command ran to an exit code (not a hit, not skipped, not cancelled)."""
        return self.attempts > 0 and self.status in ("success", "failed", "flaky")


@dataclass(frozen=True, slots=True)
class StoredEvents:
    """A run's event record: NDJSON lines of the event schema version ``schema``
    (docs/events.md), stored zlib-compressed with the run."""

    schema: int
    ndjson: bytes


@dataclass(frozen=True, slots=True)
class TaskStats:
    """What ``vx history TASK_GLOB`` shows for one task."""

    task_id: str
    runs: int
    """Runs the task was part of (in the selection)."""
    executed: int
    """Of those, runs where its command ran to an exit code."""
    p50_ms: float | None
    p90_ms: float | None
    p99_ms: float | None
    """Percentiles of executed durations (nearest rank; cache hits excluded)."""
    success_rate: float | None
    """Passing executions / executions."""
    hit_rate: float | None
    """Cache hits / (hits + executions)."""
    last_failure: TaskRecord | None
    flaky: int
    """Distinct keys that both passed and failed, or passed only on a retry."""


_RUN_COLUMNS = (
    "run_id, started_at, duration_ms, exit_code, interrupted, argv, task_names, "
    "git_revision, git_branch, concurrency, host, vx_version"
)
_TASK_COLUMNS = (
    "r.run_id, t.task_id, t.key, t.status, t.cache_status, t.cache_source, t.exit_code, "
    "t.duration_ms, t.attempts, t.start_ms, t.end_ms, t.slot, r.started_at"
)


def _by_task_id(record: TaskRecord) -> str:
    return record.task_id


def _run(row: tuple[object, ...]) -> RunRecord:
    values = list(row)
    values[4] = bool(values[4])
    values[5] = json.loads(str(values[5]))
    values[6] = json.loads(str(values[6]))
    return RunRecord(*values)  # type: ignore[arg-type]


class HistoryStore:
    """A connection to the run store. Use :meth:`open`; close it (or use ``with``)."""

    def __init__(self, db: sqlite3.Connection, path: Path) -> None:
        self._db = db
        self.path = path

    @classmethod
    def open(cls, root: Path, *, create: bool = False, timeout: float = 5.0) -> HistoryStore:
        """Open the store of the workspace at ``root``.

        ``create``: make the database (and ``.vx/``) when missing, for writers; readers get
        :class:`HistoryError` for a missing store. Waits up to ``timeout`` seconds for
        another process's write. Raises :class:`HistoryError` when the file is not a
        usable database or was written by a newer schema.
        """
        path = history_path(root)
        if not create and not path.is_file():
            raise HistoryError(f"no run history yet ({path})", "missing")
        if create:
            vx.make_cache_dir(path.parent)  # .vx/, marked for git and backups
        try:
            db = sqlite3.connect(path, timeout=timeout, isolation_level=None)
        except sqlite3.Error as exc:
            raise HistoryError(f"cannot open {path}: {exc}", _reason(exc)) from None
        store = cls(db, path)
        try:
            store._prepare()
        except sqlite3.Error as exc:
            db.close()
            raise HistoryError(f"{path}: {exc}", _reason(exc)) from None
        except HistoryError:
            db.close()
            raise
        return store

    def _prepare(self) -> None:
        db = self._db
        version = int(db.execute("PRAGMA user_version").fetchone()[0])
        if version > SCHEMA_VERSION:
            raise HistoryError(
                f"{self.path} has schema version {version}, newer than this vx understands "
                f"({SCHEMA_VERSION}); upgrade vx-build",
                "newer",
            )
        if version < SCHEMA_VERSION:
            with self._transaction():
                # Re-read under the write lock: another process may have migrated meanwhile.
                version = int(db.execute("PRAGMA user_version").fetchone()[0])
                for script in _MIGRATIONS[version:]:
                    for statement in script.split(";"):
                        if statement.strip():
                            db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode = WAL")
        # No fsync: a killed vx leaves a consistent database (WAL); an OS crash or power
        # loss may lose recent runs or corrupt the file, which the next run moves aside.
        # fsyncs cost 10-25 ms per run on a busy disk, more than the whole write.
        db.execute("PRAGMA synchronous = OFF")

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------

    def record(
        self,
        run: RunRecord,
        results: Iterable[TaskRecord],
        *,
        keep_runs: int | None = None,
        keep_days: float | None = None,
        events: StoredEvents | None = None,
    ) -> None:
        """Store ``run``, its ``results`` and its event record in one transaction, then
        prune runs (with their results and events) beyond the newest ``keep_runs`` or
        older than ``keep_days``."""
        db = self._db
        with self._transaction():
            cursor = db.execute(
                f"INSERT INTO runs ({_RUN_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run.run_id,
                    run.started_at,
                    run.duration_ms,
                    run.exit_code,
                    int(run.interrupted),
                    json.dumps(run.argv),
                    json.dumps(run.task_names),
                    run.git_revision,
                    run.git_branch,
                    run.concurrency,
                    run.host,
                    run.vx_version,
                ),
            )
            row = cursor.lastrowid
            db.executemany(
                "INSERT INTO task_results VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                [
                    (
                        row,
                        t.task_id,
                        t.key,
                        t.status,
                        t.cache_status,
                        t.cache_source,
                        t.exit_code,
                        t.duration_ms,
                        t.attempts,
                        t.start_ms,
                        t.end_ms,
                        t.slot,
                    )
                    for t in sorted(results, key=_by_task_id)
                ],
            )
            if events is not None:
                import zlib

                # Level 1: 2.6x faster than 6 on a 400-task record (1.6 vs 4.2 ms), 24 % larger.

                db.execute(
                    "INSERT INTO run_events VALUES (?, ?, 'zlib', ?, ?)",
                    (row, events.schema, len(events.ndjson), zlib.compress(events.ndjson, 1)),
                )
            self._prune(keep_runs, keep_days)

    def _prune(self, keep_runs: int | None, keep_days: float | None) -> None:
        conditions, params = [], []
        if keep_days is not None:
            conditions.append("started_at < ?")
            params.append(time.time() - keep_days * 86400)
        if keep_runs is not None:
            conditions.append(
                "id NOT IN (SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?)"
            )
            params.append(keep_runs)
        if not conditions:
            return
        where = " OR ".join(conditions)
        old = [row[0] for row in self._db.execute(f"SELECT id FROM runs WHERE {where}", params)]
        if old:
            marks = ",".join("?" * len(old))
            self._db.execute(f"DELETE FROM task_results WHERE run IN ({marks})", old)
            self._db.execute(f"DELETE FROM run_events WHERE run IN ({marks})", old)
            self._db.execute(f"DELETE FROM runs WHERE id IN ({marks})", old)

    # -- reading ---------------------------------------------------------------

    def _run_filter(
        self, limit: int | None, since: float | None, branch: str | None
    ) -> tuple[str, list[object]]:
        """SQL selecting the ids of the chosen runs (newest ``limit`` after filters)."""
        conditions: list[str] = ["1"]
        params: list[object] = []
        if since is not None:
            conditions.append("started_at >= ?")
            params.append(since)
        if branch is not None:
            conditions.append("git_branch = ?")
            params.append(branch)
        sql = f"SELECT id FROM runs WHERE {' AND '.join(conditions)}"
        sql += " ORDER BY started_at DESC, id DESC"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        return sql, params

    def runs(
        self, *, limit: int | None = None, since: float | None = None, branch: str | None = None
    ) -> list[RunRecord]:
        """Recorded runs, newest first; ``since`` in seconds since the epoch."""
        chosen, params = self._run_filter(limit, since, branch)
        rows = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE id IN ({chosen}) "
            "ORDER BY started_at DESC, id DESC",
            params,
        )
        return [_run(row) for row in rows]

    def find_run(self, run_id: str | None = None) -> RunRecord | None:
        """The run ``run_id`` (or the only run whose id starts with it), the newest run
        when ``run_id`` is None; None when there is no such run or the prefix is ambiguous."""
        if run_id is None:
            newest = self.runs(limit=1)
            return newest[0] if newest else None
        rows = self._db.execute(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE run_id = ? OR "
            "(substr(run_id, 1, length(?)) = ?) ORDER BY run_id = ? DESC LIMIT 2",
            (run_id, run_id, run_id, run_id),
        ).fetchall()
        if not rows or (len(rows) > 1 and rows[0][0] != run_id):
            return None
        return _run(rows[0])

    def events(self, run_id: str) -> StoredEvents | None:
        """The stored event record of run ``run_id`` (None: not recorded, e.g. a run made
        with the ``records`` plugin disabled, or before schema version 2)."""
        row = self._db.execute(
            "SELECT e.schema, e.encoding, e.data FROM run_events e JOIN runs r ON r.id = e.run "
            "WHERE r.run_id = ?",
            (run_id,),
        ).fetchone()
        if row is None:
            return None
        schema, encoding, data = row
        if encoding != "zlib":
            raise HistoryError(f"{self.path}: run {run_id}: unknown event encoding {encoding!r}")
        import zlib

        try:
            return StoredEvents(int(schema), zlib.decompress(data))
        except zlib.error as exc:
            raise HistoryError(
                f"{self.path}: run {run_id}: event record: {exc}", "corrupt"
            ) from None

    def task_results(
        self,
        glob: str = "*",
        *,
        limit: int | None = None,
        since: float | None = None,
        branch: str | None = None,
    ) -> list[TaskRecord]:
        """Results of tasks whose id matches ``glob`` (``fnmatch``; ``core#*``, ``*#test``)
        in the chosen runs (``limit``: the newest N runs), newest run first."""
        chosen, params = self._run_filter(limit, since, branch)
        rows = self._db.execute(
            f"SELECT {_TASK_COLUMNS} FROM task_results t JOIN runs r ON r.id = t.run "
            f"WHERE t.run IN ({chosen}) ORDER BY r.started_at DESC, r.id DESC, t.task_id",
            params,
        )
        match = _matcher(glob)
        return [TaskRecord(*row) for row in rows if match(row[1])]

    def task_stats(
        self,
        glob: str = "*",
        *,
        limit: int | None = None,
        since: float | None = None,
        branch: str | None = None,
    ) -> list[TaskStats]:
        """:class:`TaskStats` per task id matching ``glob``, sorted by id."""
        by_task: dict[str, list[TaskRecord]] = {}
        for record in self.task_results(glob, limit=limit, since=since, branch=branch):
            by_task.setdefault(record.task_id, []).append(record)
        return [_stats(task_id, records) for task_id, records in sorted(by_task.items())]

    def durations(
        self,
        *,
        window: int,
        task_ids: Iterable[str] | None = None,
        before: float | None = None,
    ) -> dict[str, list[float]]:
        """``{task_id: [ms, ...]}``: the newest ``window`` executed durations of each task
        (of ``task_ids``, else of all), newest first: what the scheduler and the regression
        check estimate from. ``before``: only runs started before that time (seconds since
        the epoch), e.g. the history as a given run saw it."""
        durations: dict[str, list[float]] = {}
        chunks: Iterable[list[str] | None]
        if task_ids is None:
            chunks = [None]
        else:
            wanted = sorted(set(task_ids))
            chunks = [wanted[start : start + 500] for start in range(0, len(wanted), 500)]
        for chunk in chunks:
            only = "" if chunk is None else f"AND t.task_id IN ({','.join('?' * len(chunk))})"
            if before is not None:
                only += " AND t.run IN (SELECT id FROM runs WHERE started_at < ?)"
            rows = self._db.execute(
                f"""
                SELECT task_id, duration_ms FROM (
                    SELECT t.task_id, t.duration_ms,
                           ROW_NUMBER() OVER (PARTITION BY t.task_id ORDER BY t.run DESC) AS n
                    FROM task_results t
                    WHERE t.attempts > 0 AND t.status IN ('success', 'failed', 'flaky') {only}
                ) WHERE n <= ? ORDER BY task_id, n
                """,
                [*(chunk or []), *([] if before is None else [before]), window],
            )
            for task_id, duration in rows:
                durations.setdefault(task_id, []).append(duration)
        return durations

    def _pairs(
        self,
        select: str,
        pairs: Iterable[tuple[str, str]],
        tail: str = "",
        params: Sequence[object] = (),
    ) -> Iterator[tuple[object, ...]]:
        """Rows of ``SELECT {select} FROM task_results t JOIN wanted w`` matching ``pairs`` on
        ``(task_id, key)`` (found through the index of executed results when ``tail``
        requires ``t.attempts > 0``); ``params`` fill the placeholders of ``tail``."""
        wanted = list(dict.fromkeys(pairs))
        for start in range(0, len(wanted), 400):
            chunk = wanted[start : start + 400]
            values = ",".join("(?, ?)" for _ in chunk)
            yield from self._db.execute(
                f"WITH w(task_id, key) AS (VALUES {values}) SELECT {select} FROM w "
                "JOIN task_results t ON t.task_id = w.task_id AND t.key = w.key " + tail,
                [*(item for pair in chunk for item in pair), *params],
            )

    def passed_keys(
        self, pairs: Iterable[tuple[str, str]], *, recent_runs: int = 20
    ) -> set[tuple[str, str]]:
        """The ``(task_id, key)`` pairs that passed when they ran in a recorded run, or were
        restored from a cache in one of the newest ``recent_runs`` runs (hits are not
        indexed by task: looking them up in every kept run would cost each run's writes)."""
        wanted = list(dict.fromkeys(pairs))
        select = "DISTINCT t.task_id, t.key"
        ran = self._pairs(
            select, wanted, "WHERE t.attempts > 0 AND t.status IN ('success', 'flaky')"
        )
        restored = self._pairs(
            select,
            wanted,
            "WHERE t.status = 'cached' AND t.run IN "
            "(SELECT id FROM runs ORDER BY started_at DESC, id DESC LIMIT ?)",
            [recent_runs],
        )
        return {(str(task_id), str(key)) for task_id, key in (*ran, *restored)}

    def key_outcomes(
        self, pairs: Iterable[tuple[str, str]]
    ) -> dict[tuple[str, str], tuple[int, int, int]]:
        """``{(task_id, key): (passed, failed, flaky)}`` execution counts for ``pairs``."""
        rows = self._pairs(
            "t.task_id, t.key, SUM(t.status IN ('success', 'flaky')), "
            "SUM(t.status = 'failed'), SUM(t.status = 'flaky')",
            pairs,
            "WHERE t.attempts > 0 GROUP BY t.task_id, t.key",
        )
        return {
            (str(task_id), str(key)): (int(passed), int(failed), int(flaky))  # type: ignore[call-overload]
            for task_id, key, passed, failed, flaky in rows
        }


def _matcher(glob: str) -> Callable[[str], bool]:
    if glob in ("", "*"):
        return lambda _: True
    if not any(ch in glob for ch in "*?["):
        return lambda task_id: task_id == glob
    return lambda task_id: fnmatch.fnmatchcase(task_id, glob)


def _stats(task_id: str, records: list[TaskRecord]) -> TaskStats:
    executed = [r for r in records if r.executed]
    durations = sorted(r.duration_ms for r in executed)
    passed = sum(r.status in PASSED for r in executed)
    hits = sum(r.status == "cached" for r in records)
    failures = [r for r in records if r.status == "failed"]
    outcomes: dict[str | None, set[str]] = {}
    for record in executed:
        outcomes.setdefault(record.key, set()).add(record.status)
    flaky = sum(
        "flaky" in seen or ("failed" in seen and "success" in seen) for seen in outcomes.values()
    )
    return TaskStats(
        task_id=task_id,
        runs=len(records),
        executed=len(executed),
        p50_ms=percentile(durations, 0.5) if durations else None,
        p90_ms=percentile(durations, 0.9) if durations else None,
        p99_ms=percentile(durations, 0.99) if durations else None,
        success_rate=passed / len(executed) if executed else None,
        hit_rate=hits / (hits + len(executed)) if hits + len(executed) else None,
        last_failure=failures[0] if failures else None,
        flaky=flaky,
    )
