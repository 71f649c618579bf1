"""Run, shard, test and key records in SQLite, through aiosqlite.

Nothing here keeps state in memory: every read goes to the database, so a
restarted control plane (or, later, several replicas on PostgreSQL) sees the
same runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiosqlite
import attrs
import cattrs
from cryptography.exceptions import InvalidTag

from controlplane.domain import (
    Attempt,
    Counts,
    GitSource,
    Run,
    RunRequest,
    RunStatus,
    S3Source,
    Shard,
    ShardStatus,
    TestResult,
    TestSource,
    TestStatus,
)
from controlplane.logs import get_logger
from controlplane.storage.sealing import Sealer

log = get_logger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    prefix TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    scopes TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_used_at REAL,
    revoked_at REAL
);
CREATE INDEX IF NOT EXISTS api_keys_prefix ON api_keys(prefix);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    request TEXT NOT NULL,
    reason TEXT,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    first_test_at REAL,
    resolved_sha TEXT,
    counts TEXT NOT NULL,
    spec_files TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_status ON runs(status);
CREATE TABLE IF NOT EXISTS shards (
    run_id TEXT NOT NULL REFERENCES runs(id),
    idx INTEGER NOT NULL,
    files TEXT NOT NULL,
    status TEXT NOT NULL,
    host TEXT,
    reason TEXT,
    started_at REAL,
    finished_at REAL,
    counts TEXT NOT NULL,
    PRIMARY KEY (run_id, idx)
);
CREATE TABLE IF NOT EXISTS run_hosts (
    run_id TEXT NOT NULL REFERENCES runs(id),
    slot INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, slot)
);
CREATE TABLE IF NOT EXISTS batches (
    run_id TEXT NOT NULL REFERENCES runs(id),
    number INTEGER NOT NULL,
    slot INTEGER NOT NULL,
    items TEXT NOT NULL,
    status TEXT NOT NULL,
    PRIMARY KEY (run_id, number)
);
CREATE TABLE IF NOT EXISTS run_credentials (
    run_id TEXT PRIMARY KEY REFERENCES runs(id),
    git_credential BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS file_costs (
    suite TEXT NOT NULL,
    file TEXT NOT NULL,
    cost_s REAL NOT NULL,
    size_bytes INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (suite, file)
);
CREATE TABLE IF NOT EXISTS test_costs (
    suite TEXT NOT NULL,
    test_id TEXT NOT NULL,
    file TEXT NOT NULL,
    duration_ms INTEGER NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (suite, test_id)
);
CREATE TABLE IF NOT EXISTS suite_costs (
    suite TEXT PRIMARY KEY,
    start_cost_s REAL NOT NULL,
    samples INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS list_costs (
    suite TEXT PRIMARY KEY,
    list_cost_s REAL NOT NULL,
    samples INTEGER NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS tests (
    run_id TEXT NOT NULL REFERENCES runs(id),
    test_id TEXT NOT NULL,
    file TEXT NOT NULL,
    line INTEGER NOT NULL,
    project TEXT NOT NULL,
    title TEXT NOT NULL,
    status TEXT NOT NULL,
    shard_idx INTEGER NOT NULL,
    duration_ms INTEGER NOT NULL,
    attempts TEXT NOT NULL,
    trace TEXT,
    screenshots TEXT NOT NULL,
    PRIMARY KEY (run_id, test_id)
);
CREATE INDEX IF NOT EXISTS tests_test_id ON tests(test_id);
CREATE TABLE IF NOT EXISTS run_reports (
    run_id TEXT PRIMARY KEY REFERENCES runs(id),
    status TEXT NOT NULL,
    reason TEXT,
    blobs_expected INTEGER NOT NULL,
    blobs_merged INTEGER NOT NULL,
    missing TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS schedules (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    cron TEXT NOT NULL,
    timezone TEXT NOT NULL,
    body TEXT NOT NULL,
    paused INTEGER NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_credentials (
    schedule_id TEXT PRIMARY KEY REFERENCES schedules(id) ON DELETE CASCADE,
    git_credential BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS schedule_fires (
    schedule_id TEXT NOT NULL REFERENCES schedules(id) ON DELETE CASCADE,
    slot_at INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    run_id TEXT REFERENCES runs(id),
    recorded_at REAL NOT NULL,
    detail TEXT,
    PRIMARY KEY (schedule_id, slot_at)
);
CREATE TABLE IF NOT EXISTS notifications (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL REFERENCES runs(id),
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    next_attempt_at REAL,
    created_at REAL NOT NULL,
    UNIQUE (run_id, target)
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications(status, next_attempt_at);
CREATE TABLE IF NOT EXISTS notification_attempts (
    notification_id TEXT NOT NULL REFERENCES notifications(id),
    number INTEGER NOT NULL,
    at REAL NOT NULL,
    status_code INTEGER,
    error TEXT,
    duration_ms INTEGER NOT NULL,
    PRIMARY KEY (notification_id, number)
);
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    token_hash TEXT PRIMARY KEY,
    key_id TEXT REFERENCES api_keys(id),
    subject TEXT NOT NULL,
    scopes TEXT NOT NULL,
    csrf_token TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS secrets (
    name TEXT NOT NULL,
    scope TEXT NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (name, scope)
);
CREATE TABLE IF NOT EXISTS run_notes (
    run_id TEXT NOT NULL REFERENCES runs(id),
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (run_id, kind, key)
);
CREATE TABLE IF NOT EXISTS run_instances (
    run_id TEXT NOT NULL REFERENCES runs(id),
    instance_id TEXT NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (run_id, instance_id)
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    key_id TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    body_hash TEXT NOT NULL,
    run_id TEXT NOT NULL REFERENCES runs(id),
    created_at REAL NOT NULL,
    PRIMARY KEY (key_id, idempotency_key)
);
"""

_converter = cattrs.Converter()
_converter.register_structure_hook(
    TestSource,
    lambda d, _: _converter.structure(d, S3Source if d["type"] == "s3" else GitSource),
)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


@attrs.frozen(kw_only=True)
class KeyRecord:
    """An API key as stored: everything but the secret, which is never kept."""

    id: str
    name: str
    prefix: str
    scopes: list[str]
    created_at: float
    last_used_at: float | None
    revoked_at: float | None


@attrs.frozen(kw_only=True)
class RunFilter:
    """Which runs a listing returns; None means no condition on that field."""

    statuses: Sequence[RunStatus] = ()
    name: str | None = None
    commit_sha: str | None = None
    trigger_source: str | None = None
    created_after: float | None = None
    created_before: float | None = None


@attrs.frozen(kw_only=True)
class IdempotentInsert:
    """Which run an idempotency key names, and whether this call made it."""

    run_id: str
    body_hash: str
    created: bool


class Database:
    """One aiosqlite connection shared by every task of the process.

    Statements take turns through one lock so that a transaction's statements
    are never interleaved with another task's on the same connection. Across
    processes SQLite serialises writers itself, and uniqueness is enforced by
    constraints, never by what this process remembers.
    """

    def __init__(
        self, conn: aiosqlite.Connection, sealer: Sealer | None = None
    ) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
        # Git credentials are kept sealed under the control plane's secrets
        # key; a database opened without it (a CLI command) gets a key of
        # its own process, so it never writes one in the clear either.
        self.sealer = sealer or Sealer.ephemeral()

    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: Path, *, sealer: Sealer | None = None
    ) -> AsyncIterator[Database]:
        path.parent.mkdir(parents=True, exist_ok=True)
        async with aiosqlite.connect(path, isolation_level=None) as conn:
            conn.row_factory = aiosqlite.Row
            await conn.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL cannot corrupt the database; a power cut may
            # lose the last commits, but no fsync waits on every write.
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA busy_timeout=5000")
            await conn.execute("PRAGMA foreign_keys=ON")
            # Deleted rows (a run's git credentials) are overwritten, not left
            # in free pages of the file.
            await conn.execute("PRAGMA secure_delete=ON")
            await conn.executescript(SCHEMA)
            yield cls(conn, sealer)

    async def ping(self) -> None:
        await self._fetchall("SELECT 1")

    # The stores of other packages (reports, schedules, notifications,
    # dashboard sessions) keep their tables in this database through these.

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return how many rows it changed."""
        return await self._execute(sql, params)

    async def fetchall(
        self, sql: str, params: Sequence[Any] = ()
    ) -> list[aiosqlite.Row]:
        return await self._fetchall(sql, params)

    def transaction(
        self,
    ) -> contextlib.AbstractAsyncContextManager[aiosqlite.Connection]:
        """Statements that commit together or not at all (BEGIN IMMEDIATE)."""
        return self._transaction()

    async def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement; return how many rows it changed."""
        async with self._lock:
            cursor = await self._conn.execute(sql, params)
            return cursor.rowcount

    async def _executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        async with self._lock:
            await self._conn.executemany(sql, rows)

    async def _fetchall(
        self, sql: str, params: Sequence[Any] = ()
    ) -> list[aiosqlite.Row]:
        async with self._lock:
            cursor = await self._conn.execute(sql, params)
            return list(await cursor.fetchall())

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        """Statements that commit together or not at all."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                await self._conn.execute("COMMIT")
            except BaseException:
                await asyncio.shield(self._rollback())
                raise

    async def _rollback(self) -> None:
        # A failed COMMIT may already have ended the transaction.
        with contextlib.suppress(sqlite3.OperationalError):
            await self._conn.execute("ROLLBACK")

    # -- API keys ---------------------------------------------------------

    async def insert_key(
        self,
        *,
        key_id: str,
        name: str,
        prefix: str,
        secret_hash: str,
        scopes: list[str],
    ) -> None:
        await self._execute(
            "INSERT INTO api_keys (id, name, prefix, secret_hash, scopes, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (key_id, name, prefix, secret_hash, _dumps(scopes), time.time()),
        )

    async def keys_by_prefix(self, prefix: str) -> list[aiosqlite.Row]:
        return await self._fetchall(
            "SELECT * FROM api_keys WHERE prefix = ? AND revoked_at IS NULL", (prefix,)
        )

    async def touch_key(self, key_id: str) -> None:
        await self._execute(
            "UPDATE api_keys SET last_used_at = ? WHERE id = ?", (time.time(), key_id)
        )

    async def list_keys(self) -> list[KeyRecord]:
        """Every key, revoked ones too, oldest first."""
        rows = await self._fetchall("SELECT * FROM api_keys ORDER BY id")
        return [_key_from_row(row) for row in rows]

    async def get_key(self, key_id: str) -> KeyRecord | None:
        rows = await self._fetchall("SELECT * FROM api_keys WHERE id = ?", (key_id,))
        return _key_from_row(rows[0]) if rows else None

    async def revoke_key(self, key_id: str) -> KeyRecord | None:
        """Revoke a key (once: a second call keeps the first time); None if unknown."""
        await self._execute(
            "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
            (time.time(), key_id),
        )
        return await self.get_key(key_id)

    # -- runs -------------------------------------------------------------

    async def insert_run(self, run: Run) -> None:
        await self._execute(_INSERT_RUN, _run_row(run))

    async def insert_run_in(self, conn: aiosqlite.Connection, run: Run) -> None:
        """Insert ``run`` within a transaction opened by ``transaction()``."""
        await conn.execute(_INSERT_RUN, _run_row(run))

    async def insert_run_once(
        self, run: Run, *, key_id: str, idempotency_key: str, body_hash: str
    ) -> IdempotentInsert:
        """Insert ``run`` unless the caller's idempotency key already names a run.

        The run and the key are stored in one transaction, and the key is
        unique per API key in the table itself: of any number of concurrent
        calls (from any process sharing the database) exactly one inserts.
        """
        try:
            async with self._transaction() as conn:
                await conn.execute(_INSERT_RUN, _run_row(run))
                await conn.execute(
                    "INSERT INTO idempotency_keys (key_id, idempotency_key,"
                    " body_hash, run_id, created_at) VALUES (?, ?, ?, ?, ?)",
                    (key_id, idempotency_key, body_hash, run.id, time.time()),
                )
        except sqlite3.IntegrityError:
            rows = await self._fetchall(
                "SELECT run_id, body_hash FROM idempotency_keys"
                " WHERE key_id = ? AND idempotency_key = ?",
                (key_id, idempotency_key),
            )
            if not rows:
                raise
            return IdempotentInsert(
                run_id=rows[0]["run_id"], body_hash=rows[0]["body_hash"], created=False
            )
        return IdempotentInsert(run_id=run.id, body_hash=body_hash, created=True)

    async def get_run(self, run_id: str) -> Run | None:
        rows = await self._fetchall("SELECT * FROM runs WHERE id = ?", (run_id,))
        return _run_from_row(rows[0]) if rows else None

    async def run_status(self, run_id: str) -> RunStatus | None:
        """A run's status, or None when no run has that id."""
        rows = await self._fetchall("SELECT status FROM runs WHERE id = ?", (run_id,))
        return RunStatus(rows[0]["status"]) if rows else None

    async def runs_with_status(self, statuses: Iterable[RunStatus]) -> list[Run]:
        wanted = [s.value for s in statuses]
        marks = ",".join("?" for _ in wanted)
        rows = await self._fetchall(
            f"SELECT * FROM runs WHERE status IN ({marks}) ORDER BY id",  # noqa: S608
            wanted,
        )
        return [_run_from_row(row) for row in rows]

    async def list_runs(
        self, where: RunFilter, *, before_id: str | None, limit: int
    ) -> list[Run]:
        """Runs matching ``where``, newest first, older than ``before_id``.

        Run ids sort by creation time, so paging on the id is stable while
        new runs arrive: they sort before every page already read.
        """
        clauses, params = _run_filter_sql(where)
        if before_id is not None:
            clauses.append("id < ?")
            params.append(before_id)
        sql = "SELECT * FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        rows = await self._fetchall(f"{sql} ORDER BY id DESC LIMIT ?", [*params, limit])
        return [_run_from_row(row) for row in rows]

    async def run_status_counts(self) -> dict[RunStatus, int]:
        rows = await self._fetchall(
            "SELECT status, COUNT(*) AS n FROM runs GROUP BY status"
        )
        return {RunStatus(row["status"]): row["n"] for row in rows}

    async def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of a run; a finished run is never changed again."""
        encoded = {k: _encode_run_field(k, v) for k, v in fields.items()}
        assignments = ", ".join(f"{name} = ?" for name in encoded)
        finished = [s.value for s in RunStatus if s.finished]
        marks = ",".join("?" for _ in finished)
        await self._execute(
            f"UPDATE runs SET {assignments} WHERE id = ?"  # noqa: S608
            f" AND status NOT IN ({marks})",
            [*encoded.values(), run_id, *finished],
        )

    async def note_first_test(self, run_id: str, at: float) -> None:
        """Keep the earliest moment any test of the run started."""
        await self._execute(
            "UPDATE runs SET first_test_at = MIN(COALESCE(first_test_at, ?), ?)"
            " WHERE id = ?",
            (at, at, run_id),
        )

    # -- credentials of a run's source, kept apart and only while it runs -

    async def save_credential(self, run_id: str, credential: str) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO run_credentials (run_id, git_credential)"
            " VALUES (?, ?)",
            (run_id, self.seal_credential("run", run_id, credential)),
        )

    async def credential(self, run_id: str) -> str | None:
        rows = await self._fetchall(
            "SELECT git_credential FROM run_credentials WHERE run_id = ?", (run_id,)
        )
        if not rows:
            return None
        return self.open_credential("run", run_id, rows[0]["git_credential"])

    @staticmethod
    def _credential_context(kind: str, owner: str) -> str:
        return f"traceloom-git-credential\0{kind}\0{owner}"

    def seal_credential(self, kind: str, owner: str, credential: str) -> bytes:
        """``credential`` sealed for the ``kind`` (run, schedule) ``owner``."""
        return self.sealer.seal(self._credential_context(kind, owner), credential)

    def open_credential(self, kind: str, owner: str, blob: Any) -> str | None:
        """The credential, or None (logged) when this key cannot open it."""
        try:
            return self.sealer.open(self._credential_context(kind, owner), bytes(blob))
        except (InvalidTag, TypeError):
            log.warning("credential.unreadable", kind=kind, owner=owner)
            return None

    async def forget_credential(self, run_id: str) -> None:
        deleted = await self._execute(
            "DELETE FROM run_credentials WHERE run_id = ?", (run_id,)
        )
        if deleted:
            # Old copies of the page live in the write-ahead log until it is
            # checkpointed and truncated.
            await self._fetchall("PRAGMA wal_checkpoint(TRUNCATE)")

    # -- hosts and batches, to take a run up again after a restart ----------

    async def save_host(self, run_id: str, slot: int, record: dict[str, Any]) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO run_hosts (run_id, slot, record) VALUES (?, ?, ?)",
            (run_id, slot, _dumps(record)),
        )

    async def hosts(self, run_id: str) -> dict[int, dict[str, Any]]:
        rows = await self._fetchall(
            "SELECT slot, record FROM run_hosts WHERE run_id = ? ORDER BY slot",
            (run_id,),
        )
        return {r["slot"]: json.loads(r["record"]) for r in rows}

    # -- cloud instances a run used: types, lifecycle, hours, price ------------

    async def save_instance(
        self, run_id: str, instance_id: str, fields: dict[str, Any]
    ) -> None:
        """Add ``fields`` to the record of one of the run's instances."""
        async with self._transaction() as conn:
            cursor = await conn.execute(
                "SELECT record FROM run_instances WHERE run_id = ? AND instance_id = ?",
                (run_id, instance_id),
            )
            row = await cursor.fetchone()
            record = json.loads(row[0]) if row else {"instanceId": instance_id}
            record.update(fields)
            await conn.execute(
                "INSERT OR REPLACE INTO run_instances (run_id, instance_id, record)"
                " VALUES (?, ?, ?)",
                (run_id, instance_id, _dumps(record)),
            )

    async def instances(self, run_id: str) -> list[dict[str, Any]]:
        rows = await self._fetchall(
            "SELECT record FROM run_instances WHERE run_id = ? ORDER BY rowid",
            (run_id,),
        )
        return [json.loads(r["record"]) for r in rows]

    async def save_batch(
        self, run_id: str, number: int, slot: int, items: list[Any], status: str
    ) -> None:
        await self._execute(
            "INSERT OR REPLACE INTO batches (run_id, number, slot, items, status)"
            " VALUES (?, ?, ?, ?, ?)",
            (run_id, number, slot, _dumps(items), status),
        )

    async def batches(self, run_id: str) -> list[aiosqlite.Row]:
        return await self._fetchall(
            "SELECT * FROM batches WHERE run_id = ? ORDER BY number", (run_id,)
        )

    # -- shards -----------------------------------------------------------

    async def insert_shards(self, shards: list[Shard]) -> None:
        await self._executemany(
            "INSERT OR REPLACE INTO shards (run_id, idx, files, status, counts)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                (s.run_id, s.index, _dumps(s.files), s.status.value, _dumps({}))
                for s in shards
            ],
        )

    async def update_shard(self, run_id: str, index: int, **fields: Any) -> None:
        encoded = {k: _encode_shard_field(k, v) for k, v in fields.items()}
        assignments = ", ".join(f"{name} = ?" for name in encoded)
        await self._execute(
            f"UPDATE shards SET {assignments} WHERE run_id = ? AND idx = ?",  # noqa: S608
            [*encoded.values(), run_id, index],
        )

    async def shards(self, run_id: str) -> list[Shard]:
        rows = await self._fetchall(
            "SELECT * FROM shards WHERE run_id = ? ORDER BY idx", (run_id,)
        )
        return [_shard_from_row(row) for row in rows]

    async def running_shard_count(self) -> int:
        rows = await self._fetchall(
            "SELECT COUNT(*) AS n FROM shards WHERE status = ?",
            (ShardStatus.RUNNING.value,),
        )
        return int(rows[0]["n"])

    async def tests_done_by_shard(self, run_id: str) -> dict[int, int]:
        """How many tests of each shard have a result (didNotRun is no result)."""
        rows = await self._fetchall(
            "SELECT shard_idx, COUNT(*) AS n FROM tests WHERE run_id = ?"
            " AND status != ? GROUP BY shard_idx",
            (run_id, TestStatus.DID_NOT_RUN.value),
        )
        return {row["shard_idx"]: row["n"] for row in rows}

    # -- tests ------------------------------------------------------------

    async def upsert_tests(self, results: list[TestResult]) -> None:
        await self._executemany(
            "INSERT INTO tests (run_id, test_id, file, line, project, title, status,"
            " shard_idx, duration_ms, attempts, trace, screenshots)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (run_id, test_id) DO UPDATE SET status = excluded.status,"
            " shard_idx = excluded.shard_idx, duration_ms = excluded.duration_ms,"
            " attempts = excluded.attempts, trace = excluded.trace,"
            " screenshots = excluded.screenshots",
            [
                (
                    r.run_id,
                    r.test_id,
                    r.file,
                    r.line,
                    r.project,
                    r.title,
                    r.status.value,
                    r.shard_index,
                    r.duration_ms,
                    _dumps([_converter.unstructure(a) for a in r.attempts]),
                    r.trace,
                    _dumps(r.screenshots),
                )
                for r in results
            ],
        )

    async def tests(self, run_id: str) -> list[TestResult]:
        rows = await self._fetchall(
            "SELECT * FROM tests WHERE run_id = ? ORDER BY file, project, title,"
            " test_id",
            (run_id,),
        )
        return [_test_from_row(row) for row in rows]


_INSERT_RUN = (
    "INSERT INTO runs (id, status, request, reason, created_at, counts,"
    " spec_files) VALUES (?, ?, ?, ?, ?, ?, ?)"
)


def _run_row(run: Run) -> tuple[Any, ...]:
    return (
        run.id,
        run.status.value,
        _dumps(_converter.unstructure(run.request)),
        run.reason,
        run.created_at,
        _dumps(run.counts.to_json()),
        _dumps(run.spec_files),
    )


def _run_filter_sql(where: RunFilter) -> tuple[list[str], list[Any]]:
    """SQL conditions (and their parameters) for a run listing's filter."""
    clauses: list[str] = []
    params: list[Any] = []
    if where.statuses:
        clauses.append(f"status IN ({','.join('?' for _ in where.statuses)})")
        params.extend(s.value for s in where.statuses)
    if where.name is not None:
        clauses.append("instr(lower(json_extract(request, '$.name')), lower(?)) > 0")
        params.append(where.name)
    if where.commit_sha is not None:
        clauses.append(
            "(json_extract(request, '$.commit_sha') LIKE ? || '%'"
            " OR resolved_sha LIKE ? || '%')"
        )
        params.extend([where.commit_sha.lower()] * 2)
    if where.trigger_source is not None:
        clauses.append("json_extract(request, '$.trigger_source') = ?")
        params.append(where.trigger_source)
    if where.created_after is not None:
        clauses.append("created_at >= ?")
        params.append(where.created_after)
    if where.created_before is not None:
        clauses.append("created_at < ?")
        params.append(where.created_before)
    return clauses, params


def _key_from_row(row: aiosqlite.Row) -> KeyRecord:
    return KeyRecord(
        id=row["id"],
        name=row["name"],
        prefix=row["prefix"],
        scopes=json.loads(row["scopes"]),
        created_at=row["created_at"],
        last_used_at=row["last_used_at"],
        revoked_at=row["revoked_at"],
    )


class HistoryStore:
    """Costs learnt from finished runs, per suite; read by the planner."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def file_costs(self, suite: str) -> dict[str, tuple[float, int]]:
        """``{file: (cost_s, size_bytes)}`` for every file seen in ``suite``."""
        rows = await self._db._fetchall(
            "SELECT file, cost_s, size_bytes FROM file_costs WHERE suite = ?", (suite,)
        )
        return {r["file"]: (r["cost_s"], r["size_bytes"]) for r in rows}

    async def start_cost(self, suite: str) -> float | None:
        rows = await self._db._fetchall(
            "SELECT start_cost_s FROM suite_costs WHERE suite = ?", (suite,)
        )
        return float(rows[0]["start_cost_s"]) if rows else None

    async def list_cost(self, suite: str) -> float | None:
        """Seconds the suite's listing kept its host from tests, if known."""
        rows = await self._db._fetchall(
            "SELECT list_cost_s FROM list_costs WHERE suite = ?", (suite,)
        )
        return float(rows[0]["list_cost_s"]) if rows else None

    async def learn(
        self,
        suite: str,
        *,
        files: dict[str, tuple[float, int]],
        tests: list[tuple[str, str, int]],
        start_costs: list[float],
        weight: float,
        list_costs: Sequence[float] = (),
    ) -> None:
        """Blend new observations into the stored ones (weight of the new)."""
        now = time.time()
        await self._db._executemany(
            "INSERT INTO file_costs (suite, file, cost_s, size_bytes, samples,"
            " updated_at) VALUES (?, ?, ?, ?, 1, ?) ON CONFLICT (suite, file) DO"
            " UPDATE SET cost_s = cost_s * (1 - ?) + excluded.cost_s * ?,"
            " size_bytes = excluded.size_bytes, samples = samples + 1,"
            " updated_at = excluded.updated_at",
            [
                (suite, f, cost, size, now, weight, weight)
                for f, (cost, size) in files.items()
            ],
        )
        await self._db._executemany(
            "INSERT INTO test_costs (suite, test_id, file, duration_ms, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (suite, test_id) DO UPDATE SET"
            " duration_ms = excluded.duration_ms, updated_at = excluded.updated_at",
            [(suite, test_id, f, ms, now) for test_id, f, ms in tests],
        )
        for cost in start_costs:
            await self._db._execute(
                "INSERT INTO suite_costs (suite, start_cost_s, samples, updated_at)"
                " VALUES (?, ?, 1, ?) ON CONFLICT (suite) DO UPDATE SET"
                " start_cost_s = start_cost_s * (1 - ?) + excluded.start_cost_s * ?,"
                " samples = samples + 1, updated_at = excluded.updated_at",
                (suite, cost, now, weight, weight),
            )
        for cost in list_costs:
            await self._db._execute(
                "INSERT INTO list_costs (suite, list_cost_s, samples, updated_at)"
                " VALUES (?, ?, 1, ?) ON CONFLICT (suite) DO UPDATE SET"
                " list_cost_s = list_cost_s * (1 - ?) + excluded.list_cost_s * ?,"
                " samples = samples + 1, updated_at = excluded.updated_at",
                (suite, cost, now, weight, weight),
            )


def _encode_run_field(name: str, value: Any) -> Any:
    if name == "status":
        return RunStatus(value).value
    if name == "counts":
        return _dumps(value.to_json())
    if name == "spec_files":
        return _dumps(value)
    return value


def _encode_shard_field(name: str, value: Any) -> Any:
    if name == "status":
        return ShardStatus(value).value
    if name == "counts":
        return _dumps(value.to_json())
    if name == "files":
        return _dumps(value)
    return value


def _run_from_row(row: aiosqlite.Row) -> Run:
    return Run(
        id=row["id"],
        request=_converter.structure(json.loads(row["request"]), RunRequest),
        status=RunStatus(row["status"]),
        reason=row["reason"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        first_test_at=row["first_test_at"],
        resolved_sha=row["resolved_sha"],
        counts=Counts.from_json(json.loads(row["counts"])),
        spec_files=json.loads(row["spec_files"]),
    )


def _shard_from_row(row: aiosqlite.Row) -> Shard:
    return Shard(
        run_id=row["run_id"],
        index=row["idx"],
        files=json.loads(row["files"]),
        status=ShardStatus(row["status"]),
        host=row["host"],
        reason=row["reason"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        counts=Counts.from_json(json.loads(row["counts"])),
    )


def _test_from_row(row: aiosqlite.Row) -> TestResult:
    return TestResult(
        run_id=row["run_id"],
        test_id=row["test_id"],
        file=row["file"],
        line=row["line"],
        project=row["project"],
        title=row["title"],
        status=TestStatus(row["status"]),
        shard_index=row["shard_idx"],
        duration_ms=row["duration_ms"],
        attempts=[
            _converter.structure(a, Attempt) for a in json.loads(row["attempts"])
        ],
        trace=row["trace"],
        screenshots=json.loads(row["screenshots"]),
    )
