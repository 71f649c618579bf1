"""What the control plane knows of each run's merged report, in SQLite.

A run has at most one row: the row is claimed (``building``) before the
merge starts, under the table's primary key, so the merge runs once per run
whatever calls it, in this process or another one sharing the database.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import time

import aiosqlite
import attrs

from controlplane.storage.db import Database


class ReportStatus(enum.StrEnum):
    BUILDING = "building"
    # Every blob the run's batches wrote is in the report.
    READY = "ready"
    # Built, but some batches are missing from it: ``missing`` says which.
    INCOMPLETE = "incomplete"
    # No report could be built: ``reason`` says why.
    FAILED = "failed"
    # No batch ran, so there was nothing to merge.
    NONE = "none"


@attrs.frozen(kw_only=True)
class ReportRecord:
    run_id: str
    status: ReportStatus
    reason: str | None
    blobs_expected: int
    blobs_merged: int
    missing: list[str]
    started_at: float
    finished_at: float | None

    @property
    def viewable(self) -> bool:
        """Whether there is an HTML report to open."""
        return self.status in (ReportStatus.READY, ReportStatus.INCOMPLETE)


class ReportStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, run_id: str) -> bool:
        """Mark the run's report as being built; False if it already was."""
        try:
            await self._db.execute(
                "INSERT INTO run_reports (run_id, status, blobs_expected,"
                " blobs_merged, missing, started_at) VALUES (?, ?, 0, 0, '[]', ?)",
                (run_id, ReportStatus.BUILDING.value, time.time()),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    async def finish(
        self,
        run_id: str,
        status: ReportStatus,
        reason: str | None,
        *,
        expected: int = 0,
        merged: int = 0,
        missing: list[str] | None = None,
    ) -> None:
        await self._db.execute(
            "UPDATE run_reports SET status = ?, reason = ?, blobs_expected = ?,"
            " blobs_merged = ?, missing = ?, finished_at = ? WHERE run_id = ?",
            (
                status.value,
                reason,
                expected,
                merged,
                json.dumps(missing or []),
                time.time(),
                run_id,
            ),
        )

    async def get(self, run_id: str) -> ReportRecord | None:
        rows = await self._db.fetchall(
            "SELECT * FROM run_reports WHERE run_id = ?", (run_id,)
        )
        return _record(rows[0]) if rows else None

    async def abandon_unfinished(self) -> int:
        """End reports a stopped control plane left ``building``; how many."""
        return await self._db.execute(
            "UPDATE run_reports SET status = ?, reason = ?, finished_at = ?"
            " WHERE status = ?",
            (
                ReportStatus.FAILED.value,
                "the control plane stopped while building the report",
                time.time(),
                ReportStatus.BUILDING.value,
            ),
        )


def _record(row: aiosqlite.Row) -> ReportRecord:
    return ReportRecord(
        run_id=row["run_id"],
        status=ReportStatus(row["status"]),
        reason=row["reason"],
        blobs_expected=row["blobs_expected"],
        blobs_merged=row["blobs_merged"],
        missing=json.loads(row["missing"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
    )
