"""Firing schedules: APScheduler's clock, the database's word on each slot.

APScheduler keeps one cron job per active schedule in memory; the database
is the truth. When a job fires, the slot it fired for is worked out from
the cron expression and stored with its run under a unique key, so a slot
never starts two runs, whether offered twice by APScheduler, by the
catch-up after a restart or by another control plane on the same database.

Missed slots (the policy): when the control plane starts, each active
schedule's most recent slot since it last fired (or was created or
resumed) starts one run, late, if it is at most ``misfire_grace_s`` old.
Older missed slots never run; the first of them is recorded as ``missed``
in the schedule's history. However many slots were missed, a schedule
starts at most one catch-up run. Slots that fall while a schedule is
paused are never caught up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

from apscheduler.schedulers.asyncio import AsyncIOScheduler

from controlplane.api.models import parse_run_body
from controlplane.domain import Run, RunStatus, TriggerSource, new_id
from controlplane.engine.runs import RunEngine
from controlplane.errors import InvalidRequest, NotFound
from controlplane.logs import get_logger
from controlplane.schedules.cron import latest_slot, make_trigger, next_after
from controlplane.schedules.models import ScheduleDraft
from controlplane.schedules.store import FireOutcome, Schedule, ScheduleStore
from controlplane.storage.db import Database

log = get_logger(__name__)

# APScheduler may call a job a little before the second it was due.
_EARLY_TOLERANCE_S = 1.0


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, UTC)


class ScheduleService:
    def __init__(
        self,
        *,
        db: Database,
        engine: RunEngine,
        max_server_count: int,
        misfire_grace_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = ScheduleStore(db)
        self.engine = engine
        self.max_server_count = max_server_count
        self.misfire_grace_s = misfire_grace_s
        self.clock = clock
        self.scheduler = AsyncIOScheduler(timezone=UTC)

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        """Catch up on missed slots (see the policy above), then start firing."""
        self.scheduler.start()
        for schedule in await self.store.all():
            if not schedule.paused:
                await self.catch_up(schedule)
                self._add_job(schedule)

    async def close(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    # -- managing ---------------------------------------------------------

    async def create(self, draft: ScheduleDraft) -> Schedule:
        """Store a schedule and start firing it (unless it starts paused)."""
        run = Run(
            id="run_check", request=draft.request, status=RunStatus.QUEUED, created_at=0
        )
        # The same checks as a run would get, and the URL's credentials split
        # off to be kept apart from the schedule's record.
        credential = self.engine.admit(run)
        body = dict(draft.run_body)
        source = dict(body["testSource"])
        if source.get("type") == "git":
            source["gitRepo"] = getattr(run.request.test_source, "git_repo", "")
        body["testSource"] = source
        now = self.clock()
        schedule = Schedule(
            id=new_id("sch_"),
            name=draft.name,
            cron=draft.cron,
            timezone=draft.timezone,
            body=body,
            paused=draft.paused,
            created_at=now,
            updated_at=now,
        )
        await self.store.create(schedule, credential)
        if not schedule.paused:
            self._add_job(schedule)
        log.info("schedule.created", schedule_id=schedule.id, cron=schedule.cron)
        return schedule

    async def set_paused(self, schedule_id: str, paused: bool) -> Schedule:
        schedule = await self.store.set_paused(schedule_id, paused, at=self.clock())
        if schedule is None:
            raise NotFound(f"no schedule {schedule_id!r}")
        if paused:
            self._remove_job(schedule_id)
        else:
            self._add_job(schedule)
        log.info(
            "schedule.paused" if paused else "schedule.resumed", schedule_id=schedule_id
        )
        return schedule

    async def delete(self, schedule_id: str) -> None:
        if not await self.store.delete(schedule_id):
            raise NotFound(f"no schedule {schedule_id!r}")
        self._remove_job(schedule_id)
        log.info("schedule.deleted", schedule_id=schedule_id)

    async def get(self, schedule_id: str) -> Schedule:
        schedule = await self.store.get(schedule_id)
        if schedule is None:
            raise NotFound(f"no schedule {schedule_id!r}")
        return schedule

    def next_fire_at(self, schedule: Schedule) -> float | None:
        """When the schedule fires next (epoch seconds); None while paused."""
        if schedule.paused:
            return None
        trigger = make_trigger(schedule.cron, schedule.timezone)
        slot = next_after(trigger, _utc(self.clock()))
        return None if slot is None else slot.timestamp()

    # -- firing -----------------------------------------------------------

    def _add_job(self, schedule: Schedule) -> None:
        self.scheduler.add_job(
            self._on_time,
            make_trigger(schedule.cron, schedule.timezone),
            args=[schedule.id],
            id=schedule.id,
            name=schedule.name,
            replace_existing=True,
            coalesce=True,
            max_instances=1,
            misfire_grace_time=max(int(self.misfire_grace_s), 1),
        )

    def _remove_job(self, schedule_id: str) -> None:
        if self.scheduler.get_job(schedule_id) is not None:
            self.scheduler.remove_job(schedule_id)

    async def _on_time(self, schedule_id: str) -> None:
        """APScheduler's call: fire the slot that is due now."""
        schedule = await self.store.get(schedule_id)
        if schedule is None or schedule.paused:
            return
        now = self.clock()
        slot = latest_slot(
            make_trigger(schedule.cron, schedule.timezone),
            after=_utc(max(now - self.misfire_grace_s, schedule.updated_at)),
            at_or_before=_utc(now + _EARLY_TOLERANCE_S),
        )
        if slot is not None:
            await self.fire(schedule, int(slot.timestamp()))

    async def catch_up(self, schedule: Schedule) -> str | None:
        """Fire the schedule's latest missed slot if within the grace.

        Returns the id of the run started, if any.
        """
        now = self.clock()
        last = await self.store.last_slot(schedule.id)
        since = max(float(last) if last is not None else 0.0, schedule.updated_at)
        trigger = make_trigger(schedule.cron, schedule.timezone)
        horizon = now - self.misfire_grace_s
        first_missed = next_after(trigger, _utc(since))
        if first_missed is None or first_missed.timestamp() > now:
            return None
        if first_missed.timestamp() < horizon:
            await self.store.record(
                schedule.id,
                int(first_missed.timestamp()),
                FireOutcome.MISSED,
                f"missed while the control plane was down; slots older than"
                f" {self.misfire_grace_s:.0f}s are not run",
            )
        slot = latest_slot(
            trigger, after=_utc(max(since, horizon)), at_or_before=_utc(now)
        )
        if slot is None:
            return None
        late_s = now - slot.timestamp()
        log.info("schedule.catching_up", schedule_id=schedule.id, late_s=round(late_s))
        return await self.fire(schedule, int(slot.timestamp()))

    async def fire(self, schedule: Schedule, slot_at: int) -> str | None:
        """Start the slot's run; None if the slot already had one or was refused."""
        try:
            request = parse_run_body(
                schedule.body, max_server_count=self.max_server_count
            )
            request.trigger_source = TriggerSource.SCHEDULE
            request.name = request.name or schedule.name
            run = Run(
                id=new_id("run_"),
                request=request,
                status=RunStatus.QUEUED,
                created_at=time.time(),
            )
            self.engine.admit(run)
        except InvalidRequest as exc:
            log.warning("schedule.refused", schedule_id=schedule.id, error=str(exc))
            await self.store.record(
                schedule.id, slot_at, FireOutcome.REFUSED, f"invalid run body: {exc}"
            )
            return None
        credential = await self.store.credential(schedule.id)
        if not await self.store.fire(schedule.id, slot_at, run, credential):
            log.info("schedule.slot_taken", schedule_id=schedule.id, slot_at=slot_at)
            return None
        log.info(
            "schedule.fired", schedule_id=schedule.id, slot_at=slot_at, run_id=run.id
        )
        self.engine.start(run.id)
        return run.id
