"""Schedules and their fired slots, in the control plane's SQLite database.

A slot (one moment a cron expression names) is recorded in
``schedule_fires`` under the primary key ``(schedule_id, slot_at)`` in the
same transaction as the run it starts, so a slot starts at most one run
however many times it is offered: by APScheduler, by the catch-up after a
restart, or by another control plane sharing the database.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import time
from typing import Any

import aiosqlite
import attrs

from controlplane.domain import Run
from controlplane.storage.db import Database


class FireOutcome(enum.StrEnum):
    FIRED = "fired"
    # Missed while the control plane was down, past the grace: not run.
    MISSED = "missed"
    # Due, but the run could not be made (e.g. the body is no longer valid).
    REFUSED = "refused"


@attrs.frozen(kw_only=True)
class Schedule:
    id: str
    name: str
    cron: str
    timezone: str
    # The run body as given (camelCase, credentials removed from gitRepo).
    body: dict[str, Any]
    paused: bool
    created_at: float
    # Set on creation and on every pause or resume: slots before it are
    # never caught up.
    updated_at: float


@attrs.frozen(kw_only=True)
class Fire:
    schedule_id: str
    slot_at: int
    outcome: FireOutcome
    run_id: str | None
    recorded_at: float
    detail: str | None


class ScheduleStore:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(self, schedule: Schedule, credential: str | None) -> None:
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO schedules (id, name, cron, timezone, body, paused,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    schedule.id,
                    schedule.name,
                    schedule.cron,
                    schedule.timezone,
                    json.dumps(schedule.body, sort_keys=True),
                    int(schedule.paused),
                    schedule.created_at,
                    schedule.updated_at,
                ),
            )
            if credential is not None:
                await conn.execute(
                    "INSERT INTO schedule_credentials (schedule_id, git_credential)"
                    " VALUES (?, ?)",
                    (
                        schedule.id,
                        self._db.seal_credential("schedule", schedule.id, credential),
                    ),
                )

    async def get(self, schedule_id: str) -> Schedule | None:
        rows = await self._db.fetchall(
            "SELECT * FROM schedules WHERE id = ?", (schedule_id,)
        )
        return _schedule(rows[0]) if rows else None

    async def all(self) -> list[Schedule]:
        """Every schedule, oldest first."""
        rows = await self._db.fetchall("SELECT * FROM schedules ORDER BY id")
        return [_schedule(row) for row in rows]

    async def set_paused(
        self, schedule_id: str, paused: bool, *, at: float
    ) -> Schedule | None:
        """Pause or resume (``at`` is now); a no-op if it already is so."""
        await self._db.execute(
            "UPDATE schedules SET paused = ?, updated_at = ? WHERE id = ?"
            " AND paused != ?",
            (int(paused), at, schedule_id, int(paused)),
        )
        return await self.get(schedule_id)

    async def delete(self, schedule_id: str) -> bool:
        """Delete a schedule, its credential and its history of slots."""
        return bool(
            await self._db.execute("DELETE FROM schedules WHERE id = ?", (schedule_id,))
        )

    async def credential(self, schedule_id: str) -> str | None:
        rows = await self._db.fetchall(
            "SELECT git_credential FROM schedule_credentials WHERE schedule_id = ?",
            (schedule_id,),
        )
        if not rows:
            return None
        return self._db.open_credential(
            "schedule", schedule_id, rows[0]["git_credential"]
        )

    async def fire(
        self, schedule_id: str, slot_at: int, run: Run, credential: str | None
    ) -> bool:
        """Store ``run`` as the slot's run; False if the slot already has one.

        The run, the slot and the run's credential commit together.
        """
        try:
            async with self._db.transaction() as conn:
                # The run first: the slot's row refers to it.
                await self._db.insert_run_in(conn, run)
                await conn.execute(
                    "INSERT INTO schedule_fires (schedule_id, slot_at, outcome,"
                    " run_id, recorded_at) VALUES (?, ?, ?, ?, ?)",
                    (
                        schedule_id,
                        slot_at,
                        FireOutcome.FIRED.value,
                        run.id,
                        time.time(),
                    ),
                )
                if credential is not None:
                    await conn.execute(
                        "INSERT INTO run_credentials (run_id, git_credential)"
                        " VALUES (?, ?)",
                        (run.id, self._db.seal_credential("run", run.id, credential)),
                    )
        except sqlite3.IntegrityError:
            if await self._slot_taken(schedule_id, slot_at):
                return False
            raise
        return True

    async def _slot_taken(self, schedule_id: str, slot_at: int) -> bool:
        rows = await self._db.fetchall(
            "SELECT 1 FROM schedule_fires WHERE schedule_id = ? AND slot_at = ?",
            (schedule_id, slot_at),
        )
        return bool(rows)

    async def record(
        self, schedule_id: str, slot_at: int, outcome: FireOutcome, detail: str
    ) -> bool:
        """Note a slot that started no run; False if the slot is already taken."""
        try:
            await self._db.execute(
                "INSERT INTO schedule_fires (schedule_id, slot_at, outcome,"
                " recorded_at, detail) VALUES (?, ?, ?, ?, ?)",
                (schedule_id, slot_at, outcome.value, time.time(), detail),
            )
        except sqlite3.IntegrityError:
            return False
        return True

    async def last_slot(self, schedule_id: str) -> int | None:
        rows = await self._db.fetchall(
            "SELECT MAX(slot_at) AS slot FROM schedule_fires WHERE schedule_id = ?",
            (schedule_id,),
        )
        slot = rows[0]["slot"]
        return None if slot is None else int(slot)

    async def fires(self, schedule_id: str, *, limit: int = 20) -> list[Fire]:
        """The schedule's most recent slots, newest first."""
        rows = await self._db.fetchall(
            "SELECT * FROM schedule_fires WHERE schedule_id = ?"
            " ORDER BY slot_at DESC LIMIT ?",
            (schedule_id, limit),
        )
        return [
            Fire(
                schedule_id=row["schedule_id"],
                slot_at=row["slot_at"],
                outcome=FireOutcome(row["outcome"]),
                run_id=row["run_id"],
                recorded_at=row["recorded_at"],
                detail=row["detail"],
            )
            for row in rows
        ]


def _schedule(row: aiosqlite.Row) -> Schedule:
    return Schedule(
        id=row["id"],
        name=row["name"],
        cron=row["cron"],
        timezone=row["timezone"],
        body=json.loads(row["body"]),
        paused=bool(row["paused"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
