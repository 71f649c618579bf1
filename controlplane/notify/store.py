"""Notifications of finished runs and every attempt to deliver them, in SQLite.

One row per run and target (``UNIQUE (run_id, target)``): a run is announced
to each target once however often its end is reported. A row stays
``pending`` until delivered or given up, so deliveries survive a restart; a
worker leases a due row before sending it, so two control planes on one
database never send the same attempt twice.
"""

from __future__ import annotations

import enum
import json
import time
from typing import Any

import aiosqlite
import attrs

from controlplane.domain import new_id
from controlplane.storage.db import Database


class DeliveryStatus(enum.StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


class TargetKind(enum.StrEnum):
    WEBHOOK = "webhook"
    SLACK = "slack"
    GITHUB = "github"


@attrs.frozen(kw_only=True)
class AttemptRecord:
    number: int
    at: float
    status_code: int | None
    error: str | None
    duration_ms: int


@attrs.frozen(kw_only=True)
class Notification:
    id: str
    run_id: str
    target: str
    kind: TargetKind
    payload: dict[str, Any]
    status: DeliveryStatus
    attempts: int
    next_attempt_at: float | None
    created_at: float


class NotificationStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(
        self, run_id: str, target: str, kind: TargetKind, payload: dict[str, Any]
    ) -> bool:
        """Queue a notification; False if this run already has one for target."""
        changed = await self._db.execute(
            "INSERT INTO notifications (id, run_id, target, kind, payload, status,"
            " attempts, next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, ?, 0, ?, ?)"
            " ON CONFLICT (run_id, target) DO NOTHING",
            (
                new_id("ntf_"),
                run_id,
                target,
                kind.value,
                json.dumps(payload, separators=(",", ":"), sort_keys=True),
                DeliveryStatus.PENDING.value,
                time.time(),
                time.time(),
            ),
        )
        return changed == 1

    async def due(self, now: float, *, limit: int = 20) -> list[Notification]:
        rows = await self._db.fetchall(
            "SELECT * FROM notifications WHERE status = ? AND next_attempt_at <= ?"
            " ORDER BY next_attempt_at LIMIT ?",
            (DeliveryStatus.PENDING.value, now, limit),
        )
        return [_notification(row) for row in rows]

    async def next_due_at(self) -> float | None:
        rows = await self._db.fetchall(
            "SELECT MIN(next_attempt_at) AS at FROM notifications WHERE status = ?",
            (DeliveryStatus.PENDING.value,),
        )
        at = rows[0]["at"]
        return None if at is None else float(at)

    async def lease(self, item: Notification, until: float) -> bool:
        """Take a due notification for this worker until ``until``."""
        changed = await self._db.execute(
            "UPDATE notifications SET next_attempt_at = ? WHERE id = ? AND status = ?"
            " AND next_attempt_at = ?",
            (until, item.id, DeliveryStatus.PENDING.value, item.next_attempt_at),
        )
        return changed == 1

    async def record_attempt(
        self,
        item: Notification,
        attempt: AttemptRecord,
        *,
        status: DeliveryStatus,
        next_attempt_at: float | None,
    ) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO notification_attempts (notification_id, number, at,"
                " status_code, error, duration_ms) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    item.id,
                    attempt.number,
                    attempt.at,
                    attempt.status_code,
                    attempt.error,
                    attempt.duration_ms,
                ),
            )
            await conn.execute(
                "UPDATE notifications SET status = ?, attempts = ?,"
                " next_attempt_at = ? WHERE id = ?",
                (status.value, attempt.number, next_attempt_at, item.id),
            )

    async def for_run(
        self, run_id: str
    ) -> list[tuple[Notification, list[AttemptRecord]]]:
        """The run's notifications with their attempts, oldest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM notifications WHERE run_id = ? ORDER BY created_at, target",
            (run_id,),
        )
        found = []
        for row in rows:
            attempts = await self._db.fetchall(
                "SELECT * FROM notification_attempts WHERE notification_id = ?"
                " ORDER BY number",
                (row["id"],),
            )
            found.append(
                (
                    _notification(row),
                    [
                        AttemptRecord(
                            number=a["number"],
                            at=a["at"],
                            status_code=a["status_code"],
                            error=a["error"],
                            duration_ms=a["duration_ms"],
                        )
                        for a in attempts
                    ],
                )
            )
        return found


def _notification(row: aiosqlite.Row) -> Notification:
    return Notification(
        id=row["id"],
        run_id=row["run_id"],
        target=row["target"],
        kind=TargetKind(row["kind"]),
        payload=json.loads(row["payload"]),
        status=DeliveryStatus(row["status"]),
        attempts=row["attempts"],
        next_attempt_at=row["next_attempt_at"],
        created_at=row["created_at"],
    )
