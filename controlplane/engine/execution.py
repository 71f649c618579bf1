"""Running a prepared run on its hosts: one worker per host, shared work.

Each host's worker runs its first batch, then takes more from the work
queue until none is left and no other host could hand any back. A host that
stops answering is marked lost: what it reported is kept, its unfinished
tests go back to the queue once (to run on another host, or on a
replacement when no host is left), and nothing it sends later is read.
A test's result is stored once: the first final result wins.

Listing the tests costs the first host a Playwright start, and the other
hosts need not wait for it: they run their first batch meanwhile, as a
guess that every project of the config runs (the listing says otherwise
only when a project's browser is missing). Nothing such a batch reports is
stored until the listing has confirmed the guess; when it does not, the
batches are stopped and their work runs again with the projects it chose.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import Any

import asyncssh
import attrs

from controlplane.domain import Counts, Run, Shard, ShardStatus, TestResult, TestStatus
from controlplane.engine import survey as surveys
from controlplane.engine.prepare import Prepared
from controlplane.engine.results import ShardResults
from controlplane.engine.survey import Survey
from controlplane.engine.workqueue import WorkItem, WorkQueue
from controlplane.errors import BatchNotStarted, HostError, SetupFailed, SourceError
from controlplane.fleet.base import FleetProvider, Host
from controlplane.logs import get_logger
from controlplane.remote.dispatch import (
    Dispatcher,
    SetupReport,
    ShardJob,
    setup_failure,
)
from controlplane.remote.ssh import HostConnection
from controlplane.storage.db import Database
from controlplane.storage.runnotes import LISTED, SETUP, SURVEY, RunNotes

log = get_logger(__name__)

_SEVERITY = {
    ShardStatus.PASSED: 0,
    ShardStatus.FAILED: 1,
    ShardStatus.TIMED_OUT: 2,
    ShardStatus.ERRORED: 3,
}


@attrs.define
class _Slot:
    index: int
    host: Host
    status: ShardStatus = ShardStatus.PASSED
    reasons: list[str] = attrs.Factory(list)
    files: list[str] = attrs.Factory(list)
    started_at: float | None = None


class RunExecution:
    """The hosts, the queue and the results of one run in flight."""

    def __init__(
        self,
        *,
        run: Run,
        prepared: Prepared,
        db: Database,
        provider: FleetProvider,
        dispatcher: Dispatcher,
        keys_dir: Path,
    ) -> None:
        self.keys_dir = keys_dir
        self.run = run
        self.prepared = prepared
        self.db = db
        self.provider = provider
        self.dispatcher = dispatcher
        self.host_count = min(run.request.server_count, len(prepared.items))
        self.queue = WorkQueue(
            prepared.items, hosts=self.host_count, start_cost_s=prepared.start_cost_s
        )
        self._cond = asyncio.Condition()
        self._busy = 0
        self._live = 0
        self._next_slot = itertools.count()
        self._next_batch = itertools.count()
        self._replacements = run.request.server_count
        self.final_ids: set[str] = set()
        self.dropped: set[str] = set()
        self.drop_reasons: list[str] = []
        self.start_costs: list[float] = []
        # Seconds the listing kept its host from tests (for the next plan).
        self.list_costs: list[float] = []
        self.workers = 1
        self.notes = RunNotes(db)
        # What the first host's listing decided (files, projects).
        self.survey: Survey | None = None
        self._setup_reported: set[str] = set()
        # Set once the listing is done.
        self._listed = asyncio.Event()
        # Set by the listing when it chose other projects than the first
        # batches started before it (guesses) ran: stops every guess.
        self._guess_wrong = asyncio.Event()

    async def execute(self) -> None:
        """Get the hosts, survey the suite, run every worker to the end."""
        hosts = await self.provider.acquire(self.run.id, self.host_count)
        if len(hosts) < self.host_count:
            # Partial capacity (a cloud fleet short of instances): the work is
            # planned over the hosts there are, once the survey is done.
            log.warning("hosts.partial", asked=self.host_count, got=len(hosts))
        slots = [_Slot(next(self._next_slot), host) for host in hosts]
        await self.db.insert_shards(
            [Shard(run_id=self.run.id, index=s.index, files=[]) for s in slots]
        )
        for slot in slots:
            await self._remember_host(slot)
        await self._record_idle_shards()
        if len(slots) > 1 and self.prepared.config.projects is None:
            await self._execute_listing_alongside(slots)
            return
        slots = await self._survey_somewhere(slots)
        self.queue = WorkQueue(
            self._surveyed(self.prepared.items),
            hosts=len(slots),
            start_cost_s=self.queue.start_cost_s,
        )
        firsts = self.queue.first_batches()
        self._live = len(slots)
        self._busy = sum(1 for batch in firsts if batch)
        await _all_or_none(
            self._worker(slot, batch) for slot, batch in zip(slots, firsts, strict=True)
        )
        await self._give_up_on(self.queue.take_all(), "no host was left to run it")

    async def _execute_listing_alongside(self, slots: list[_Slot]) -> None:
        """The first host lists the tests while the others run first batches.

        The first host's own first batch is planned smaller by the listing's
        expected time (about one Playwright start), so that it does not end
        last. Only when no project is selected by traceloom.yml: then the
        guess (every project) is what the listing decides unless a browser
        is missing.
        """
        listing_s = self.prepared.list_cost_s
        if listing_s is None:
            listing_s = self.queue.start_cost_s
        self.queue = WorkQueue(
            self.prepared.items,
            hosts=len(slots),
            start_cost_s=self.queue.start_cost_s,
            busy_s=[listing_s] + [0.0] * (len(slots) - 1),
        )
        firsts = self.queue.first_batches()
        self._live = len(slots)
        # The first host counts as busy while it lists: work it gives back
        # (its host lost) must find the others still there to take it.
        self._busy = 1 + sum(1 for batch in firsts[1:] if batch)
        await _all_or_none(
            [
                self._list_then_work(slots, firsts[0]),
                *(
                    self._worker(slot, batch, guess=True)
                    for slot, batch in zip(slots[1:], firsts[1:], strict=True)
                ),
            ]
        )
        await self._give_up_on(self.queue.take_all(), "no host was left to run it")

    async def _list_then_work(self, slots: list[_Slot], first: list[WorkItem]) -> None:
        """List on the first host (or, lost, on the next), then run its work."""
        slot = slots[0]
        try:
            await self._survey_on(slot)
        except HostError as exc:
            await self._lost_while_listing(slot, exc)
            # XXX: the next host lists while its own guess may still run the
            # traceloom.yml setup steps on the same copy of the repository,
            # and the harness does not serialise two setups there. A lock in
            # the harness's run_setup (one that a restart cannot leave held)
            # would remove it; it needs setup steps and a lost first host.
            for other in slots[1:]:
                try:
                    await self._survey_on(other)
                    break
                except HostError as again:
                    # That host's own worker sees it lost too and moves its work.
                    exc = again
            else:
                raise exc from None
            async with self._cond:
                # Never dispatched, so not a retry.
                self.queue.add(self._surveyed(first))
                self._busy -= 1
                self._cond.notify_all()
            replacement = await self._replace_if_needed()
            if replacement is not None:
                await self._worker(replacement, [])
            return
        first = self._surveyed(first)
        if not first:
            await self._done_with_batch([])
        await self._worker(slot, first)

    async def _lost_while_listing(self, slot: _Slot, error: HostError) -> None:
        log.warning(
            "host.lost", shard=slot.index, host=slot.host.name, error=str(error)
        )
        slot.status = ShardStatus.LOST
        await self.db.update_shard(
            self.run.id,
            slot.index,
            status=ShardStatus.LOST,
            reason=f"lost host {slot.host.name} while listing the tests: {error}",
            finished_at=time.time(),
        )

    async def _survey_somewhere(self, slots: list[_Slot]) -> list[_Slot]:
        """List the tests on the first host that answers; return the others too.

        While the first host lists, the others get the suite and run their
        setup steps. A host lost while listing is marked lost and the next
        one lists instead; the hosts still usable are returned.
        """
        lost: list[tuple[_Slot, HostError]] = []

        async def survey_first() -> None:
            try:
                await self._survey_on(slots[0])
            except HostError as exc:
                lost.append((slots[0], exc))

        await _all_or_none([survey_first(), *(self._get_ready(s) for s in slots[1:])])
        usable = list(slots)
        while lost:
            slot, error = lost.pop()
            usable.remove(slot)
            await self._lost_while_listing(slot, error)
            if not usable:
                raise error
            try:
                await self._survey_on(usable[0])
            except HostError as exc:
                lost.append((usable[0], exc))
        return usable

    def _surveyed(self, items: list[WorkItem]) -> list[WorkItem]:
        """The items whose files the survey found tests to run in."""
        assert self.survey is not None, "the survey comes first"
        keep = set(self.survey.files)
        return [i for i in items if i.file in keep]

    async def _survey_on(self, slot: _Slot) -> None:
        """List the suite's tests on ``slot``'s host, after its setup steps.

        The host, not the control plane, runs the suite's config to list its
        tests (see engine/survey.py). Spec files the config would not run and
        projects that cannot run are recorded before anything is dispatched.
        """
        slot.started_at = time.time()
        await self.db.update_shard(
            self.run.id,
            slot.index,
            status=ShardStatus.RUNNING,
            host=slot.host.name,
            started_at=slot.started_at,
        )
        items = self.prepared.items
        job = self._job(slot, next(self._next_batch), items, mode="list")
        results = ShardResults(
            run_id=self.run.id,
            shard_index=slot.index,
            artifact_prefix=f"{self.run.id}/shard-{slot.index}/list",
        )

        async def ignore(_results: ShardResults) -> None:
            return None

        outcome = await self.dispatcher.run_shard(
            slot.host, self.prepared.payload, job, results, ignore
        )
        await self._record_setup(slot, job, outcome.setup)
        if outcome.dispatched_at is not None:
            setup_s = outcome.setup.duration_s if outcome.setup else None
            self.list_costs.append(
                max(outcome.finished_at - outcome.dispatched_at - (setup_s or 0), 0)
            )
        if not results.began:
            raise SourceError(
                f"Playwright could not list the tests on {slot.host.name}:"
                f" {outcome.reason or 'no output'}"
            )
        survey = surveys.plan(
            files=[i.file for i in items],
            tests=[
                {
                    "id": t.id,
                    "file": t.file,
                    "line": t.line,
                    "project": t.project,
                    "title": t.title,
                }
                for t in results.tests.values()
            ],
            projects=results.projects,
            browsers=outcome.browsers,
            config=self.prepared.config,
            config_path=self.prepared.config_path,
        )
        await self.notes.put(self.run.id, SURVEY, "", survey.to_json())
        running = {
            p.name
            for p in survey.projects
            if p.status in (surveys.RUN, surveys.DEPENDENCY)
        }
        dispatched = set(survey.files)
        await self.notes.put(
            self.run.id,
            LISTED,
            "",
            {
                "shard": slot.index,
                "tests": [
                    {
                        "id": t.id,
                        "file": t.file,
                        "line": t.line,
                        "project": t.project,
                        "title": t.title,
                    }
                    for t in results.tests.values()
                    if t.file in dispatched and t.project in running
                ],
            },
        )
        await self._store(
            [
                TestResult(
                    run_id=self.run.id,
                    test_id=t["id"],
                    file=t["file"],
                    line=t["line"],
                    project=t["project"],
                    title=t["title"],
                    status=TestStatus.DID_NOT_RUN,
                    shard_index=slot.index,
                )
                for t in survey.unavailable_tests
            ]
        )
        log.info(
            "run.surveyed",
            files=len(survey.files),
            excluded=len(survey.excluded),
            projects=survey.run_projects,
            unavailable=len(survey.unavailable_tests),
        )
        if not survey.files and not survey.unavailable_tests:
            first = survey.excluded[0] if survey.excluded else None
            raise SourceError(
                f"none of the {len(items)} spec files testPattern matched has a"
                f" test that {self.prepared.config_path} runs"
                + (f" ({first['file']}: {first['reason']})" if first else "")
            )
        self._listing_done(survey)

    def _listing_done(self, survey: Survey) -> None:
        """Take the listing's decisions: files, and whether the guess held.

        No await here: workers waiting for the listing must find the pool
        already cut to the files it kept.
        """
        self.survey = survey
        self.queue.keep_only(survey.files)
        if survey.run_projects is not None:
            log.info("batches.guess_wrong", projects=survey.run_projects)
            self._guess_wrong.set()
        self._listed.set()

    async def _get_ready(self, slot: _Slot) -> None:
        """Ship the suite to ``slot``'s host and run its setup steps there.

        A host that cannot be reached now is left to its first batch, which
        handles a lost host the usual way.
        """
        slot.started_at = time.time()
        await self.db.update_shard(
            self.run.id,
            slot.index,
            status=ShardStatus.RUNNING,
            host=slot.host.name,
            started_at=slot.started_at,
        )
        job = self._job(slot, next(self._next_batch), [], mode="setup")
        results = ShardResults(
            run_id=self.run.id,
            shard_index=slot.index,
            artifact_prefix=f"{self.run.id}/shard-{slot.index}/setup",
        )

        async def ignore(_results: ShardResults) -> None:
            return None

        try:
            outcome = await self.dispatcher.run_shard(
                slot.host, self.prepared.payload, job, results, ignore
            )
        except HostError as exc:
            log.warning("host.not_ready", host=slot.host.name, error=str(exc))
            return
        await self._record_setup(slot, job, outcome.setup)

    async def _record_setup(
        self, slot: _Slot, job: ShardJob, report: SetupReport | None
    ) -> None:
        """Keep how a host's setup steps went; a failure ends the run."""
        if report is None:
            return
        self._setup_reported.add(report.host)
        await self.notes.put(self.run.id, SETUP, report.host, report.to_json())
        if report.ok:
            log.info("setup.passed", host=report.host, duration_s=report.duration_s)
            return
        reason = setup_failure(report, job, self.prepared.payload)
        log.warning("setup.failed", host=report.host, step=report.step)
        slot.status = ShardStatus.ERRORED
        await self.db.update_shard(
            self.run.id,
            slot.index,
            status=ShardStatus.ERRORED,
            reason=reason,
            finished_at=time.time(),
        )
        raise SetupFailed(reason)

    def _job(
        self,
        slot: _Slot,
        number: int,
        items: list[WorkItem],
        *,
        mode: str = "run",
        report_setup: bool | None = None,
        guess: bool = False,
    ) -> ShardJob:
        return ShardJob(
            run_id=self.run.id,
            index=number,
            files=[i.file for i in items],
            timeout_s=self.run.request.timeout,
            env=self.prepared.env,
            selectors=[s for i in items for s in i.selectors],
            mode=mode,
            projects=self.survey.run_projects if self.survey else None,
            secrets=self.prepared.secrets,
            report_setup=(
                slot.host.name not in self._setup_reported
                if report_setup is None
                else report_setup
            ),
            # A guess may hold only files the config leaves out.
            pass_with_no_tests=guess,
        )

    async def resume(self) -> None:
        """Take up a run whose control plane died: adopt, re-attach, go on.

        Hosts that still answer keep their slot; a batch still running on
        one is followed again from its first event. Work on hosts that do not
        answer goes back to the queue once, like a lost host's. Work never
        dispatched is queued. Raises HostError when no host answers.
        """
        records = await self.db.hosts(self.run.id)
        hosts = {
            s: Host.from_record(r, self._load_key(r["name"], r.get("keyPath", "")))
            for s, r in records.items()
        }
        self.provider.adopt(self.run.id, list(hosts.values()))
        answering = {s: h for s, h in hosts.items() if await _answers(h)}
        shards = {s.index: s for s in await self.db.shards(self.run.id)}
        self.final_ids = {
            r.test_id
            for r in await self.db.tests(self.run.id)
            if r.status != TestStatus.DID_NOT_RUN
        }
        self._next_slot = itertools.count(max([*shards, -1]) + 1)
        batches = await self.db.batches(self.run.id)
        self._next_batch = itertools.count(
            max([b["number"] for b in batches] + [-1]) + 1
        )

        attached: dict[int, tuple[int, list[WorkItem]]] = {}
        guessed: set[int] = set()
        seen: set[str] = set()
        again: list[WorkItem] = []
        for batch in batches:
            if batch["status"] == "dropped":
                continue  # its work went back to the queue: fresh, unless seen
            items = [_item_from_json(i) for i in json.loads(batch["items"])]
            seen.update(i.file for i in items)
            running = batch["status"] in ("running", "guess")
            if running and batch["slot"] in answering:
                attached[batch["slot"]] = (batch["number"], items)
                if batch["status"] == "guess":
                    guessed.add(batch["number"])
            elif running or batch["status"] == "lost":
                again.extend(items)
        stored = (await self.notes.get(self.run.id, SURVEY)).get("")
        if stored is not None:
            self._listing_done(Survey.from_json(stored))
        self._setup_reported = set(await self.notes.get(self.run.id, SETUP))
        fresh = [i for i in self.prepared.items if i.file not in seen]
        retry = [i for i in again if i.retries < 1]
        await self._give_up_on(
            [i for i in again if i.retries >= 1], "its host was lost twice"
        )
        queue = WorkQueue(
            [], hosts=max(len(answering), 1), start_cost_s=self.queue.start_cost_s
        )

        for index in set(hosts) - set(answering):
            await self.db.update_shard(
                self.run.id,
                index,
                status=ShardStatus.LOST,
                reason="did not answer after the control plane restarted",
                finished_at=time.time(),
                counts=await self._shard_counts(index),
            )
        if not answering:
            raise HostError(
                "the control plane restarted and no host of the run answers"
            )
        slots = []
        for index, host in sorted(answering.items()):
            slot = _Slot(index, host, files=list(shards[index].files))
            slot.started_at = shards[index].started_at
            slots.append(slot)
        if self.survey is None:
            # The control plane stopped before the listing was done.
            await self._survey_on(slots[0])
        queue.add(self._surveyed(fresh))
        queue.put_back(self._surveyed(retry))
        self.queue = queue
        log.info(
            "run.resumed",
            hosts=len(slots),
            attached=len(attached),
            queued=self.queue.pending,
        )
        self._live = len(slots)
        self._busy = len(attached)
        await _all_or_none(
            self._worker(
                slot,
                [],
                attach=attached.get(slot.index),
                guess=attached.get(slot.index, (-1, []))[0] in guessed,
            )
            for slot in slots
        )
        await self._give_up_on(self.queue.take_all(), "no host was left to run it")

    async def _remember_host(self, slot: _Slot) -> None:
        """Keep what a restarted control plane needs to reach this host again."""
        await asyncio.to_thread(self._save_key, slot.host)
        await self.db.save_host(self.run.id, slot.index, slot.host.to_record())

    def _key_path(self, name: str) -> Path:
        return self.keys_dir / f"{self.run.id}--{name}.key"

    def _save_key(self, host: Host) -> None:
        if host.key_path:
            return  # the operator's key, read from where they keep it
        self.keys_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._key_path(host.name)
        path.write_bytes(b"")
        path.chmod(0o600)
        path.write_bytes(host.client_key.export_private_key())

    def _load_key(self, name: str, key_path: str = "") -> asyncssh.SSHKey:
        path = Path(key_path) if key_path else self._key_path(name)
        return asyncssh.import_private_key(path.read_bytes())

    def forget_keys(self) -> None:
        """Delete the run's client keys once its hosts are released."""
        for path in self.keys_dir.glob(f"{self.run.id}--*.key"):
            path.unlink(missing_ok=True)

    async def _record_idle_shards(self) -> None:
        """Shards beyond the work: successes with no tests, and no host."""
        extra = self.run.request.server_count - self.host_count
        if extra <= 0:
            return
        idle = [
            Shard(run_id=self.run.id, index=next(self._next_slot), files=[])
            for _ in range(extra)
        ]
        await self.db.insert_shards(idle)
        for shard in idle:
            await self.db.update_shard(
                self.run.id,
                shard.index,
                status=ShardStatus.PASSED,
                reason="no work left for this host; none was started",
                counts=Counts(),
            )

    async def _worker(
        self,
        slot: _Slot,
        batch: list[WorkItem],
        *,
        attach: tuple[int, list[WorkItem]] | None = None,
        guess: bool = False,
    ) -> None:
        """Run ``batch`` (a guess when ``guess``), then take more until done."""
        while True:
            number = None
            if attach is not None:
                number, batch = attach
                attach = None
            if not batch:
                batch = await self._take()
                if not batch:
                    break
            lost = await self._run_batch(slot, batch, number, guess=guess)
            batch, guess = [], False
            if lost:
                replacement = await self._replace_if_needed()
                if replacement is None:
                    return
                slot = replacement
        await self._close_slot(slot)

    async def _take(self) -> list[WorkItem]:
        # The pool holds only what the listing kept, once it is done.
        await self._listed.wait()
        async with self._cond:
            while True:
                if self.queue.pending:
                    self._busy += 1
                    return self.queue.next_batch(self._busy - 1)
                if self._busy == 0:
                    self._cond.notify_all()
                    return []
                await self._cond.wait()

    async def _done_with_batch(self, put_back: list[WorkItem]) -> None:
        async with self._cond:
            self.queue.put_back(put_back)
            self._busy -= 1
            self._cond.notify_all()

    async def _replace_if_needed(self) -> _Slot | None:
        """A new host when the lost one was the last and work remains."""
        async with self._cond:
            self._live -= 1
            if self._live > 0 or not self.queue.pending or self._replacements <= 0:
                return None
            self._replacements -= 1
            self._live += 1
        try:
            [host] = await self.provider.acquire(self.run.id, 1)
        except HostError as exc:
            log.warning("host.replacement_failed", error=str(exc))
            async with self._cond:
                self._live -= 1
                self._cond.notify_all()
            return None
        slot = _Slot(next(self._next_slot), host)
        await self._remember_host(slot)
        await self.db.insert_shards(
            [Shard(run_id=self.run.id, index=slot.index, files=[])]
        )
        log.info("host.replaced", shard=slot.index, host=host.name)
        return slot

    def _trusted(self, guess: bool) -> bool:
        """Whether a batch's results may be stored (a guess: once it held)."""
        return not guess or (self._listed.is_set() and not self._guess_wrong.is_set())

    async def _run_batch(
        self,
        slot: _Slot,
        items: list[WorkItem],
        attach_to: int | None = None,
        *,
        guess: bool = False,
    ) -> bool:
        """Run ``items`` on ``slot``'s host; return True when the host was lost.

        With ``attach_to``, the batch of that number is already running on
        the host (started before a restart) and is only followed. A
        ``guess`` runs before the listing is done (see the module's
        docstring): its results wait for the listing, and are dropped, its
        work queued again, when the listing chose other projects.
        """
        number = next(self._next_batch) if attach_to is None else attach_to
        results = ShardResults(
            run_id=self.run.id,
            shard_index=slot.index,
            artifact_prefix=f"{self.run.id}/shard-{slot.index}/batch-{number}",
        )
        job = self._job(slot, number, items, guess=guess)
        if guess and attach_to is None and self._guess_wrong.is_set():
            await self._drop_guess(slot, number, items)
            return False
        if attach_to is None:
            slot.files.extend(i.file for i in items)
            await self.db.save_batch(
                self.run.id,
                number,
                slot.index,
                [_item_json(i) for i in items],
                "guess" if guess else "running",
            )
        if slot.started_at is None:
            slot.started_at = time.time()
        await self.db.update_shard(
            self.run.id,
            slot.index,
            status=ShardStatus.RUNNING,
            host=slot.host.name,
            files=slot.files,
            started_at=slot.started_at,
        )

        async def progress(results: ShardResults) -> None:
            if results.first_test_at_ms is not None:
                await self.db.note_first_test(
                    self.run.id, results.first_test_at_ms / 1000
                )
            if not self._trusted(guess):
                return
            if await self._store(results.settled()):
                await self.db.update_shard(
                    self.run.id, slot.index, counts=await self._shard_counts(slot.index)
                )

        follow = (
            self.dispatcher.run_shard if attach_to is None else self.dispatcher.attach
        )
        try:
            outcome = await follow(
                slot.host,
                self.prepared.payload,
                job,
                results,
                progress,
                # A guess the listing does not confirm is stopped at once.
                stop=self._guess_wrong if guess else None,
            )
        except BatchNotStarted as exc:
            # Recorded before a restart but never begun: its work goes back
            # to the queue, and the host, which answers, takes more.
            log.info(
                "batch.not_started", shard=slot.index, batch=number, error=str(exc)
            )
            await self.db.save_batch(
                self.run.id, number, slot.index, [_item_json(i) for i in items], "lost"
            )
            async with self._cond:
                # Not a retry: the work never ran anywhere.
                self.queue.add(self._surveyed(items))
                self._busy -= 1
                self._cond.notify_all()
            return False
        except HostError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                # The connection broke because the run is being stopped (a
                # cancel racing a command): that is a cancellation, not a loss.
                if self._trusted(guess):
                    await asyncio.shield(self._store_unfinished(results))
                raise asyncio.CancelledError from exc
            await self._listed.wait()
            trusted = self._trusted(guess)
            await self.db.save_batch(
                self.run.id,
                number,
                slot.index,
                [_item_json(i) for i in items],
                "lost" if trusted else "dropped",
            )
            await self._host_lost(slot, items, results, str(exc), guess=not trusted)
            return True
        except asyncio.CancelledError:
            if not self._trusted(guess):
                pass  # not known to be what the listing decided: nothing kept
            elif self.dispatcher.suspending:
                # The batch goes on on its host; the next process follows it.
                await asyncio.shield(self._store(results.settled()))
            else:
                await asyncio.shield(self._store_unfinished(results))
            raise

        await self._record_setup(slot, job, outcome.setup)
        if guess:
            await self._listed.wait()
            if self._guess_wrong.is_set():
                await self._drop_guess(slot, number, items)
                return False
        await self._store(outcome.results.results())
        await self.db.save_batch(
            self.run.id, number, slot.index, [_item_json(i) for i in items], "done"
        )
        self.workers = outcome.results.workers
        if outcome.results.start_cost_s is not None:
            self.start_costs.append(outcome.results.start_cost_s)
        if _SEVERITY[outcome.status] > _SEVERITY[slot.status]:
            slot.status = outcome.status
        if outcome.reason:
            slot.reasons.append(outcome.reason)
        await self._done_with_batch([])
        log.info(
            "batch.finished",
            shard=slot.index,
            batch=number,
            status=outcome.status.value,
            duration_s=round(outcome.finished_at - outcome.started_at, 2),
        )
        return False

    async def _drop_guess(
        self, slot: _Slot, number: int, items: list[WorkItem]
    ) -> None:
        """A speculative batch the listing did not confirm: queue its work again.

        Nothing it reported is kept and it is no retry: its tests run next
        with the projects the listing chose.
        """
        log.info("batch.dropped_guess", shard=slot.index, batch=number)
        await self.db.save_batch(
            self.run.id, number, slot.index, [_item_json(i) for i in items], "dropped"
        )
        async with self._cond:
            self.queue.add(self._take_back(slot, items))
            self._busy -= 1
            self._cond.notify_all()

    def _take_back(self, slot: _Slot, items: list[WorkItem]) -> list[WorkItem]:
        """Off ``slot``'s files: a dropped guess's items, as the listing kept them."""
        taken = {i.file for i in items}
        slot.files = [f for f in slot.files if f not in taken]
        return self._surveyed(items)

    async def _host_lost(
        self,
        slot: _Slot,
        items: list[WorkItem],
        results: ShardResults,
        error: str,
        *,
        guess: bool = False,
    ) -> None:
        """Mark ``slot``'s host lost and queue its unfinished ``items`` again.

        A ``guess`` the listing did not confirm keeps nothing it reported,
        and its work is queued whole, as no retry.
        """
        log.warning("host.lost", shard=slot.index, host=slot.host.name, error=error)
        fresh: list[WorkItem] = []
        again: list[WorkItem] = []
        if guess:
            fresh = self._take_back(slot, items)
        else:
            await self._store(results.settled())
            # Files the listing left out (a guess may hold some) stay out.
            again, dropped = _unfinished(self._surveyed(items), results)
            await self._give_up_on(dropped, "its host was lost twice", results)
        slot.status = ShardStatus.LOST
        slot.reasons.append(
            f"lost host {slot.host.name}: {error};"
            f" {len(again) + len(fresh)} files moved to another host"
        )
        await self.db.update_shard(
            self.run.id,
            slot.index,
            status=ShardStatus.LOST,
            reason="; ".join(slot.reasons),
            finished_at=time.time(),
            counts=await self._shard_counts(slot.index),
        )
        async with self._cond:
            self.queue.add(fresh)
        await self._done_with_batch(again)

    async def _give_up_on(
        self, items: list[WorkItem], why: str, results: ShardResults | None = None
    ) -> None:
        """Work that will not run: its listed tests are stored as didNotRun.

        Files whose tests were never listed are remembered in ``dropped`` so
        the verdict cannot be a pass.
        """
        if not items:
            return
        files = {i.file for i in items}
        log.warning("work.dropped", files=len(files), reason=why)
        self.dropped.update(files)
        self.drop_reasons.append(f"{len(files)} files not run: {why}")
        if results is not None:
            await self._store(
                [
                    r
                    for r in results.results()
                    if r.file in files and r.status == TestStatus.DID_NOT_RUN
                ]
            )

    async def _store(self, results: list[TestResult]) -> bool:
        """Store the results not stored as final yet; return whether any were."""
        fresh = [r for r in results if r.test_id not in self.final_ids]
        if not fresh:
            return False
        await self.db.upsert_tests(fresh)
        self.final_ids.update(
            r.test_id for r in fresh if r.status != TestStatus.DID_NOT_RUN
        )
        await self.db.update_run(self.run.id, counts=await self._run_counts())
        return True

    async def _store_unfinished(self, results: ShardResults) -> None:
        await self._store(results.results())

    async def _close_slot(self, slot: _Slot) -> None:
        await self.db.update_shard(
            self.run.id,
            slot.index,
            status=slot.status,
            reason="; ".join(slot.reasons) or None,
            finished_at=time.time(),
            counts=await self._shard_counts(slot.index),
        )

    async def _run_counts(self) -> Counts:
        counts = Counts()
        for result in await self.db.tests(self.run.id):
            counts.add(result.status)
        return counts

    async def _shard_counts(self, index: int) -> Counts:
        counts = Counts()
        for result in await self.db.tests(self.run.id):
            if result.shard_index == index:
                counts.add(result.status)
        return counts


async def _all_or_none(workers: Iterable[Coroutine[Any, Any, None]]) -> None:
    """Run the workers together; the first to fail stops the others.

    A failing worker (a host's setup steps failed) ends the run, so the
    others are cancelled rather than left running; its error is raised as
    itself, not wrapped in a group.
    """
    try:
        async with asyncio.TaskGroup() as group:
            for worker in workers:
                group.create_task(worker)
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


def _item_json(item: WorkItem) -> dict[str, Any]:
    return {
        "file": item.file,
        "selectors": list(item.selectors),
        "costS": item.cost_s,
        "known": item.known,
        "retries": item.retries,
    }


def _item_from_json(data: dict[str, Any]) -> WorkItem:
    return WorkItem(
        file=data["file"],
        selectors=tuple(data["selectors"]),
        cost_s=float(data["costS"]),
        known=bool(data["known"]),
        retries=int(data["retries"]),
    )


async def _answers(host: Host) -> bool:
    try:
        conn = await HostConnection.open(host, timeout_s=10)
    except HostError:
        return False
    await conn.close()
    return True


def _unfinished(
    items: list[WorkItem], results: ShardResults
) -> tuple[list[WorkItem], list[WorkItem]]:
    """Split a lost batch's unfinished work into what runs again and what not.

    A file whose tests were listed keeps only its unsettled tests (by line);
    a file Playwright never listed is run again whole.
    """
    unsettled = results.unsettled_by_file()
    again: list[WorkItem] = []
    dropped: list[WorkItem] = []
    for item in items:
        if unsettled is None or item.file not in {*unsettled, *_listed(results)}:
            remaining = item
        elif unsettled.get(item.file):
            lines = sorted(unsettled[item.file])
            remaining = attrs.evolve(
                item, selectors=tuple(f"{item.file}\t{n}" for n in lines)
            )
        else:
            continue
        (again if remaining.retries < 1 else dropped).append(remaining)
    return again, dropped


def _listed(results: ShardResults) -> set[str]:
    return {state.file for state in results.tests.values()}
