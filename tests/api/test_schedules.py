"""Cron schedules through the API: managing them, firing them, restarts.

The fleet refuses every host and the repository does not exist, so each
run a schedule starts ends errored at once; what is checked is which runs
exist and for which slot.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB, SCHEDULES
from controlplane.schedules.store import ScheduleStore
from controlplane.settings import Settings
from controlplane.storage.keys import create_key
from tests.api.live import RefusingProvider

# Fires on 29 February at 03:00 only: never by the real clock during a test
# (unless on that very minute), so the fake clock alone decides.
LEAP_DAY = "0 3 29 2 *"
SLOT = datetime(2028, 2, 29, 3, 0, tzinfo=UTC).timestamp()
NEXT_SLOT = datetime(2032, 2, 29, 3, 0, tzinfo=UTC).timestamp()
TOKEN = "glpat-Sch3duleT0kenSecret"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def schedule_body(cron: str = LEAP_DAY, **extra: Any) -> dict[str, Any]:
    return {
        "name": "nightly",
        "cron": cron,
        "run": {
            "testSource": {
                "type": "git",
                "gitRepo": f"https://ci:{TOKEN}@127.0.0.1:9/acme/shop.git",
                "gitBranch": "main",
            },
            "testPattern": "tests/**/*.spec.ts",
            "serverCount": 2,
        },
        **extra,
    }


@asynccontextmanager
async def control_plane(
    settings: Settings, clock: Callable[[], float] = time.time
) -> AsyncIterator[TestClient[Any, Any]]:
    """One control plane process on ``settings``'s data folder."""
    app = make_app(settings=settings, provider=RefusingProvider(), clock=clock)
    async with TestClient(TestServer(app)) as client:
        yield client


async def bearer(client: TestClient[Any, Any], *scopes: str) -> dict[str, str]:
    chosen = scopes or ("runs:read", "schedules:manage")
    secret = await create_key(client.app[DB], name="t", scopes=chosen)
    return {"Authorization": f"Bearer {secret}"}


async def schedule_runs(client: TestClient[Any, Any]) -> list[dict[str, Any]]:
    rows = await client.app[DB].fetchall(
        "SELECT f.slot_at, f.run_id, json_extract(r.request, '$.trigger_source') AS"
        " trigger, json_extract(r.request, '$.name') AS name FROM schedule_fires f"
        " JOIN runs r ON r.id = f.run_id ORDER BY f.slot_at"
    )
    return [dict(row) for row in rows]


async def run_count(client: TestClient[Any, Any]) -> int:
    rows = await client.app[DB].fetchall("SELECT COUNT(*) AS n FROM runs")
    return int(rows[0]["n"])


async def test_a_schedule_is_created_listed_paused_resumed_and_deleted(
    settings: Settings,
) -> None:
    """The whole life of a schedule over the API, with its next fire time."""
    clock = Clock(SLOT - 3600)
    async with control_plane(settings, clock) as client:
        auth = await bearer(client)
        created = await client.post(
            "/api/schedules", json=schedule_body(), headers=auth
        )
        schedule = await created.json()
        listed = await (await client.get("/api/schedules", headers=auth)).json()
        paused = await (
            await client.post(f"/api/schedules/{schedule['id']}/pause", headers=auth)
        ).json()
        resumed = await (
            await client.post(f"/api/schedules/{schedule['id']}/resume", headers=auth)
        ).json()
        deleted = await client.delete(f"/api/schedules/{schedule['id']}", headers=auth)
        gone = await client.get(f"/api/schedules/{schedule['id']}", headers=auth)

    assert created.status == 201
    assert schedule["nextFireAt"] == "2028-02-29T03:00:00.000Z"
    assert schedule["run"]["triggerSource"] == "schedule"
    assert [s["id"] for s in listed["schedules"]] == [schedule["id"]]
    assert paused["paused"] is True
    assert paused["nextFireAt"] is None
    assert resumed["paused"] is False
    assert resumed["nextFireAt"] == "2028-02-29T03:00:00.000Z"
    assert deleted.status == 204
    assert gone.status == 404


async def test_the_git_token_of_a_schedule_is_kept_sealed_and_never_shown(
    settings: Settings,
) -> None:
    """The URL's credentials are stored apart and encrypted, shown redacted.

    The database file holds the token nowhere in the clear, and a control
    plane started again (the same secrets key) still reads it back for the
    schedule's next run.
    """
    async with control_plane(settings) as client:
        auth = await bearer(client)
        created = await client.post(
            "/api/schedules", json=schedule_body(), headers=auth
        )
        text = await created.text()
        stored = await client.app[DB].fetchall("SELECT body FROM schedules")
        await client.app[DB].fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
    database = b"".join(
        path.read_bytes()
        for path in settings.data_dir.iterdir()
        if path.name.startswith("traceloom.sqlite3")
    )
    async with control_plane(settings) as client:
        [row] = await client.app[DB].fetchall("SELECT id FROM schedules")
        schedule_id = row["id"]
        kept = await ScheduleStore(client.app[DB]).credential(schedule_id)

    assert created.status == 201
    assert TOKEN not in text
    assert TOKEN not in stored[0]["body"]
    assert TOKEN.encode() not in database
    assert kept is not None
    assert TOKEN in kept


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"cron": "61 * * * *"}, "cron"),
        ({"cron": "0 0 30 2 *"}, "cron"),
        ({"cron": "a b c d e"}, "cron"),
        ({"cron": "0 3 1 * 1"}, "cron"),
        ({"cron": "* * *"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"name": ""}, "name"),
        ({"paused": "yes"}, "paused"),
        ({"extra": 1}, "extra"),
        ({"run": {"testPattern": "x"}}, "run.testSource"),
        ({"run": None}, "run"),
    ],
)
async def test_a_wrong_schedule_is_refused_naming_the_field(
    client: TestClient[Any, Any], change: dict[str, Any], field: str
) -> None:
    """Every flaw of a schedule body is a 400 that names its field."""
    auth = await bearer(client)
    body = {**schedule_body(), **change}
    if change.get("run", 0) is None:
        del body["run"]

    answer = await client.post("/api/schedules", json=body, headers=auth)

    assert answer.status == 400
    assert field in (await answer.json())["fields"]


async def test_a_run_body_with_another_trigger_is_refused(
    client: TestClient[Any, Any],
) -> None:
    """A schedule's runs are triggered by the schedule, not by anything else."""
    auth = await bearer(client)
    body = schedule_body()
    body["run"]["triggerSource"] = "api"

    answer = await client.post("/api/schedules", json=body, headers=auth)

    assert answer.status == 400
    assert "run.triggerSource" in (await answer.json())["fields"]


async def test_schedules_need_the_schedules_scope(client: TestClient[Any, Any]) -> None:
    """A key without schedules:manage can neither list nor create."""
    auth = await bearer(client, "runs:read", "runs:trigger")

    listed = await client.get("/api/schedules", headers=auth)
    created = await client.post("/api/schedules", json=schedule_body(), headers=auth)

    assert listed.status == 403
    assert created.status == 403


async def test_no_slot_fires_twice_across_a_restart(settings: Settings) -> None:
    """A slot fired just before a restart is not fired again by the catch-up.

    The second control plane comes up 30 s after the slot, within the
    misfire grace, so its catch-up offers the same slot again: the unique
    key on (schedule, slot) refuses it.
    """
    clock = Clock(SLOT - 60)
    async with control_plane(settings, clock) as first:
        auth = await bearer(first)
        created = await first.post("/api/schedules", json=schedule_body(), headers=auth)
        schedule_id = (await created.json())["id"]
        clock.now = SLOT + 0.2
        # What APScheduler calls at the slot.
        await first.app[SCHEDULES]._on_time(schedule_id)
        fired_before = await schedule_runs(first)

    clock.now = SLOT + 30
    async with control_plane(settings, clock) as second:
        fired_after = await schedule_runs(second)
        runs_after = await run_count(second)
        slots = await (
            await second.get(f"/api/schedules/{schedule_id}", headers=auth)
        ).json()

    assert [r["slot_at"] for r in fired_before] == [int(SLOT)]
    assert fired_after == fired_before
    assert runs_after == 1
    assert fired_after[0]["trigger"] == "schedule"
    assert fired_after[0]["name"] == "nightly"
    assert [s["outcome"] for s in slots["recentSlots"]] == ["fired"]


async def test_a_slot_missed_while_down_fires_once_late_within_the_grace(
    settings: Settings,
) -> None:
    """Down over a slot: the next start fires it once; a second start does not."""
    clock = Clock(SLOT - 60)
    async with control_plane(settings, clock) as first:
        auth = await bearer(first)
        await first.post("/api/schedules", json=schedule_body(), headers=auth)

    clock.now = NEXT_SLOT + 600
    async with control_plane(settings, clock) as second:
        after_first_restart = await schedule_runs(second)
    async with control_plane(settings, clock) as third:
        after_second_restart = await schedule_runs(third)

    # The 2028 slot was missed long ago and is skipped; 2032's fires once.
    assert [r["slot_at"] for r in after_first_restart] == [int(NEXT_SLOT)]
    assert after_second_restart == after_first_restart


async def test_a_slot_missed_beyond_the_grace_is_recorded_not_run(
    settings: Settings,
) -> None:
    """Down for longer than the grace: no run, and the miss is in the history."""
    clock = Clock(SLOT - 60)
    async with control_plane(settings, clock) as first:
        auth = await bearer(first)
        created = await first.post("/api/schedules", json=schedule_body(), headers=auth)
        schedule_id = (await created.json())["id"]

    clock.now = SLOT + 2 * settings.schedule_misfire_grace_s
    async with control_plane(settings, clock) as second:
        shown = await (
            await second.get(f"/api/schedules/{schedule_id}", headers=auth)
        ).json()
        runs = await run_count(second)

    assert runs == 0
    assert [(s["slotAt"], s["outcome"]) for s in shown["recentSlots"]] == [
        ("2028-02-29T03:00:00.000Z", "missed")
    ]


async def test_slots_while_paused_are_not_caught_up(settings: Settings) -> None:
    """A schedule resumed after its slot does not run that slot late."""
    clock = Clock(SLOT - 60)
    async with control_plane(settings, clock) as client:
        auth = await bearer(client)
        created = await client.post(
            "/api/schedules", json=schedule_body(paused=True), headers=auth
        )
        schedule_id = (await created.json())["id"]
        clock.now = SLOT + 60
        await client.post(f"/api/schedules/{schedule_id}/resume", headers=auth)

    async with control_plane(settings, clock) as restarted:
        runs = await run_count(restarted)

    assert runs == 0


async def test_apscheduler_fires_every_slot_of_a_running_schedule(
    settings: Settings,
) -> None:
    """With the real clock, a schedule every 2 s starts one run per slot.

    Pausing stops it: no slot fires while it is paused.
    """
    async with control_plane(settings) as client:
        auth = await bearer(client)
        created = await client.post(
            "/api/schedules", json=schedule_body("*/2 * * * * *"), headers=auth
        )
        schedule_id = (await created.json())["id"]
        for _ in range(300):
            if len(await schedule_runs(client)) >= 2:
                break
            await asyncio.sleep(0.2)
        await client.post(f"/api/schedules/{schedule_id}/pause", headers=auth)
        at_pause = len(await schedule_runs(client))
        await asyncio.sleep(4.5)
        fired = await schedule_runs(client)
        runs = await run_count(client)

    slots = [r["slot_at"] for r in fired]
    assert len(fired) == at_pause >= 2
    assert runs == len(fired)
    assert all(slot % 2 == 0 for slot in slots)
    assert len(set(slots)) == len(slots)
    assert {r["trigger"] for r in fired} == {"schedule"}
