"""The run state machine: queued -> provisioning -> running -> a verdict.

``RunEngine.start`` launches one task per run. The task prepares the source
once (clone, discovery, dependencies), plans shards, gets hosts from the
fleet provider, runs the shards through the dispatcher and stores results
as they arrive. Whatever happens, the hosts are released and the run ends
in a finished status with its reason.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

import attrs
import structlog

from controlplane.aws import Aws
from controlplane.domain import (
    Counts,
    Run,
    RunStatus,
    S3Source,
    Shard,
    ShardStatus,
    TestResult,
    TestStatus,
)
from controlplane.engine import history
from controlplane.engine.deps import DependencyCache
from controlplane.engine.execution import RunExecution
from controlplane.engine.prepare import Prepared, prepare_run
from controlplane.engine.s3source import S3SuiteSource
from controlplane.engine.source import is_local_repo, split_credentials
from controlplane.engine.unzip import ZipLimits
from controlplane.errors import InvalidRequest, RunFailure
from controlplane.fleet.base import FleetProvider, wait_for_lease
from controlplane.logs import get_logger, redact_text
from controlplane.remote.dispatch import Dispatcher
from controlplane.settings import Settings
from controlplane.storage.db import Database, HistoryStore
from controlplane.storage.runnotes import LISTED, RunNotes
from controlplane.storage.secrets import SecretStore

log = get_logger(__name__)


@attrs.frozen(kw_only=True)
class FinishedRun:
    """What a listener gets once a run's status is final.

    The checkout and installed dependencies are still on disk while the
    listeners run (None when the run ended before they were prepared).
    """

    run: Run
    checkout: Path | None
    node_modules: Path | None
    config_dir: str | None
    # The suite's own ``playwright`` command in the installed dependencies.
    playwright: Path | None = None


def suite_playwright(prepared: Prepared) -> Path | None:
    """The suite's ``playwright`` in its cache entry, nearest the config first.

    In a workspace the package that uses Playwright may hold it in its own
    ``node_modules`` (pnpm) rather than in the workspace root's.
    """
    payload = prepared.payload
    deps = payload.deps
    root = deps.entry / "tree" if deps.entry is not None else deps.node_modules.parent
    inside = PurePosixPath(payload.config_dir or ".")
    if payload.package_dir:
        try:
            inside = inside.relative_to(payload.package_dir)
        except ValueError:
            inside = PurePosixPath(".")
    folder = root / inside
    while True:
        candidate = folder / "node_modules" / ".bin" / "playwright"
        if candidate.exists():
            return candidate
        if folder == root or root not in folder.parents:
            return None
        folder = folder.parent


class RunListener(Protocol):
    async def run_finished(self, finished: FinishedRun) -> None:
        """Act on a finished run (reports, notifications); must not raise."""
        ...


class RunEngine:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        provider: FleetProvider,
        dispatcher: Dispatcher,
        listeners: Sequence[RunListener] = (),
        aws: Aws | None = None,
        secrets: SecretStore | None = None,
    ) -> None:
        self.settings = settings
        # Where the secrets traceloom.yml names come from (none: no secrets).
        self.secrets = secrets
        self.s3_source = (
            None
            if aws is None
            else S3SuiteSource(
                aws,
                limits=ZipLimits(
                    max_entries=settings.source_max_entries,
                    max_unpacked_bytes=settings.source_unpacked_max_bytes,
                ),
                max_zip_bytes=settings.source_zip_max_bytes,
                allowed_bucket=settings.sources_bucket,
            )
        )
        self.db = db
        self.provider = provider
        self.dispatcher = dispatcher
        self.deps = DependencyCache(
            settings.deps_dir, install_timeout_s=settings.install_timeout_s
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._prepared: dict[str, Prepared] = {}
        self._executions: dict[str, RunExecution] = {}
        self.listeners: list[RunListener] = list(listeners)
        self._cancelled: set[str] = set()
        self._preparing = asyncio.Semaphore(settings.max_preparing_runs)
        # Set by close() under the "suspend" shutdown: runs left to resume.
        self._suspending = False
        self._suspended: set[str] = set()
        # Each run's end (release, final status, listeners) runs shielded
        # from cancellation; close() waits for these.
        self._endings: set[asyncio.Future[None]] = set()

    # -- lifecycle --------------------------------------------------------

    def admit(self, run: Run) -> str | None:
        """Check a new run's source; return its URL's credentials, removed.

        The run keeps its repository URL without credentials; the caller
        stores them apart (``Database.save_credential``) for the clone only.
        """
        source_ = run.request.test_source
        if isinstance(source_, S3Source):
            allowed = self.settings.sources_bucket
            if allowed and source_.bucket != allowed:
                raise InvalidRequest(
                    {"testSource.bucket": f"must be {allowed!r} on this control plane"}
                )
            return None
        if is_local_repo(source_.git_repo) and not self.settings.allow_local_repos:
            raise InvalidRequest(
                {"testSource.gitRepo": "must be a remote URL on this control plane"}
            )
        clean, credential = split_credentials(source_.git_repo)
        run.request.test_source = attrs.evolve(source_, git_repo=clean)
        return credential

    def start(self, run_id: str, *, resume: bool = False) -> None:
        task = asyncio.create_task(
            self._execute(run_id, resume=resume), name=f"run-{run_id}"
        )
        self._tasks[run_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(run_id, None))

    async def cancel(self, run_id: str) -> bool:
        """Stop a run in flight; it ends ``cancelled`` once its hosts are free.

        Returns False when no run of that id is in flight in this process.
        """
        task = self._tasks.get(run_id)
        if task is None:
            return False
        self._cancelled.add(run_id)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return True

    async def recover(self) -> None:
        """Take up the runs an earlier process of the control plane left.

        A run that had no hosts yet starts again; a run with hosts resumes
        on those that still answer, and ends with its reason if none does.
        Either way its hosts are released when it ends.
        """
        unfinished = [s for s in RunStatus if not s.finished]
        for run in await self.db.runs_with_status(unfinished):
            has_hosts = bool(await self.db.hosts(run.id))
            log.info("run.recovering", run_id=run.id, resume=has_hosts)
            self.start(run.id, resume=has_hosts)

    async def close(self) -> None:
        """Stop following every run in flight, as the ``shutdown`` setting says.

        ``suspend`` (the default) leaves each run as it is, its hosts and
        shards going on, for the next process to resume (``recover``);
        ``stop`` ends each run errored and releases its hosts.
        """
        tasks = list(self._tasks.values())
        if self.settings.shutdown == "suspend":
            self._suspending = True
            self.dispatcher.suspending = True
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        # A cancelled run's task ends at once; its ending goes on shielded.
        await asyncio.gather(*list(self._endings), return_exceptions=True)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    # -- one run ----------------------------------------------------------

    async def _execute(self, run_id: str, *, resume: bool = False) -> None:
        structlog.contextvars.bind_contextvars(run_id=run_id)
        run = await self.db.get_run(run_id)
        if run is None:
            return
        workdir = self.settings.work_dir / run_id
        status = RunStatus.ERRORED
        reason: str | None = "the run stopped unexpectedly"
        try:
            status, reason = await self._drive(run, workdir, resume=resume)
        except asyncio.CancelledError:
            if run_id in self._cancelled:
                status, reason = RunStatus.CANCELLED, "cancelled on request"
            elif self._suspending:
                await asyncio.shield(self._suspend(run_id))
                raise
            else:
                status = RunStatus.ERRORED
                reason = "the control plane stopped during the run"
                raise
        except RunFailure as exc:
            status, reason = RunStatus.ERRORED, str(exc)
        except Exception as exc:
            log.exception("run.crashed")
            status, reason = RunStatus.ERRORED, f"internal error: {type(exc).__name__}"
        finally:
            self._cancelled.discard(run_id)
            if run_id not in self._suspended:
                ending = asyncio.ensure_future(
                    self._cleanup(run_id, workdir, status, reason)
                )
                self._endings.add(ending)
                ending.add_done_callback(self._endings.discard)
                await asyncio.shield(ending)

    async def _suspend(self, run_id: str) -> None:
        """Leave the run for the next process: its record, hosts and keys stay."""
        self._suspended.add(run_id)
        self.provider.forget(run_id)
        prepared = self._prepared.pop(run_id, None)
        self._executions.pop(run_id, None)
        if prepared is not None:
            prepared.forget_secrets()
        log.info("run.suspended")

    async def _cleanup(
        self, run_id: str, workdir: Path, status: RunStatus, reason: str | None
    ) -> None:
        prepared = self._prepared.pop(run_id, None)
        execution = self._executions.pop(run_id, None)
        try:
            await self.provider.release(run_id)
            if execution is not None:
                await asyncio.to_thread(execution.forget_keys)
        finally:
            await self._finish(run_id, status, reason)
            await self._notify(run_id, workdir, prepared)
            if prepared is not None:
                # The record is final: the run's secrets need no redacting.
                prepared.forget_secrets()
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def _notify(
        self, run_id: str, workdir: Path, prepared: Prepared | None
    ) -> None:
        """Tell every listener the run finished; a failing listener is logged."""
        run = await self.db.get_run(run_id)
        if run is None or not self.listeners:
            return
        finished = FinishedRun(
            run=run,
            checkout=prepared.checkout if prepared else None,
            node_modules=prepared.payload.deps.node_modules if prepared else None,
            config_dir=prepared.payload.config_dir if prepared else None,
            playwright=suite_playwright(prepared) if prepared else None,
        )
        for listener in self.listeners:
            try:
                await listener.run_finished(finished)
            except Exception:
                log.exception("run.listener_failed", listener=type(listener).__name__)

    async def _finish(self, run_id: str, status: RunStatus, reason: str | None) -> None:
        await self.db.forget_credential(run_id)
        await self._mark_unrun(run_id)
        counts = Counts()
        for result in await self.db.tests(run_id):
            counts.add(result.status)
        if status == RunStatus.PASSED and counts.did_not_run:
            # Listed tests that no batch reported (one that found none).
            status = RunStatus.FAILED
            reason = f"{counts.did_not_run} tests did not run"
        if reason is not None:
            reason = redact_text(reason)
        await self.db.update_run(
            run_id, status=status, reason=reason, finished_at=time.time(), counts=counts
        )
        log.info("run.finished", status=status.value, reason=reason, **counts.to_json())

    async def _mark_unrun(self, run_id: str) -> None:
        for shard in await self.db.shards(run_id):
            if shard.status in (ShardStatus.PENDING, ShardStatus.RUNNING):
                await self.db.update_shard(
                    run_id,
                    shard.index,
                    status=ShardStatus.CANCELLED,
                    finished_at=time.time(),
                    reason="the run ended before this shard finished",
                )
        await self._count_unreported(run_id)

    async def _count_unreported(self, run_id: str) -> None:
        """Every listed test with no result is stored as didNotRun.

        A test never reports when its host was lost twice, the run timed out
        or was cancelled before its batch, or the control plane restarted
        with no host left: it still counts, and a rerun picks it up.
        """
        listed = (await RunNotes(self.db).get(run_id, LISTED)).get("")
        if not listed:
            return
        have = {r.test_id for r in await self.db.tests(run_id)}
        slot_of = {}
        for batch in await self.db.batches(run_id):
            for item in json.loads(batch["items"]):
                slot_of[item["file"]] = batch["slot"]
        missing = [
            TestResult(
                run_id=run_id,
                test_id=t["id"],
                file=t["file"],
                line=t["line"],
                project=t["project"],
                title=t["title"],
                status=TestStatus.DID_NOT_RUN,
                shard_index=slot_of.get(t["file"], listed["shard"]),
            )
            for t in listed["tests"]
            if t["id"] not in have
        ]
        if missing:
            log.warning("run.unreported_tests", tests=len(missing))
            await self.db.upsert_tests(missing)

    async def _drive(
        self, run: Run, workdir: Path, *, resume: bool
    ) -> tuple[RunStatus, str | None]:
        if not resume:
            await self.db.update_run(run.id, started_at=time.time())
        # Clones and installs share this machine's cores and disk: a burst of
        # runs waits its turn in ``queued`` rather than starving the API.
        async with self._preparing:
            prepared = await prepare_run(
                run,
                workdir,
                db=self.db,
                deps_cache=self.deps,
                harness_dir=self.settings.data_dir / "harness",
                clone_timeout_s=self.settings.clone_timeout_s,
                # The same commit as before the restart, even if the branch
                # moved.
                commit=run.resolved_sha if resume else None,
                s3=self.s3_source,
                secret_store=self.secrets,
            )
        self._prepared[run.id] = prepared
        execution = RunExecution(
            run=run,
            prepared=prepared,
            db=self.db,
            provider=self.provider,
            dispatcher=self.dispatcher,
            keys_dir=self.settings.data_dir / "keys",
        )
        self._executions[run.id] = execution
        if not resume:
            # A provider of shared hosts makes the run wait, still queued,
            # until enough of them are free.
            await wait_for_lease(self.provider, run.id, execution.host_count)
        await self.db.update_run(run.id, status=RunStatus.PROVISIONING)
        await self.db.update_run(run.id, status=RunStatus.RUNNING)
        if resume:
            await execution.resume()
        else:
            await execution.execute()
        await self._learn(prepared, execution)
        return _verdict(
            await self.db.shards(run.id), await self._counts(run.id), execution
        )

    async def _learn(self, prepared: Prepared, execution: RunExecution) -> None:
        """Remember this run's file, start and listing costs for the next plan."""
        results = await self.db.tests(execution.run.id)
        files = history.observed_file_costs(
            results, workers=execution.workers, sizes=prepared.sizes
        )
        await HistoryStore(self.db).learn(
            prepared.suite,
            files=files,
            tests=[(r.test_id, r.file, r.duration_ms) for r in results if r.attempts],
            start_costs=execution.start_costs,
            list_costs=execution.list_costs,
            weight=history.BLEND_WEIGHT,
        )

    async def _counts(self, run_id: str) -> Counts:
        counts = Counts()
        for result in await self.db.tests(run_id):
            counts.add(result.status)
        return counts


def _verdict(
    shards: list[Shard], counts: Counts, execution: RunExecution
) -> tuple[RunStatus, str | None]:
    """The run's status from its shards, its test counts and dropped work."""
    errored = [s for s in shards if s.status == ShardStatus.ERRORED]
    if errored:
        reasons = "; ".join(f"shard {s.index}: {s.reason}" for s in errored)
        return RunStatus.ERRORED, reasons
    unavailable = execution.survey.unavailable_reasons if execution.survey else []
    if unavailable:
        # Tests of a project the hosts cannot run did not run: never a pass.
        return RunStatus.ERRORED, "; ".join(unavailable)
    if execution.dropped:
        lost = "; ".join(f"shard {s.index}: {s.reason}" for s in shards if s.reason)
        return RunStatus.ERRORED, "; ".join([*execution.drop_reasons, lost])
    if any(s.status == ShardStatus.TIMED_OUT for s in shards):
        reasons = "; ".join(
            f"shard {s.index}: {s.reason}"
            for s in shards
            if s.status == ShardStatus.TIMED_OUT
        )
        return RunStatus.TIMED_OUT, f"{reasons}; {counts.did_not_run} tests did not run"
    if counts.did_not_run:
        return RunStatus.FAILED, f"{counts.did_not_run} tests did not run"
    if counts.failed:
        return RunStatus.FAILED, f"{counts.failed} tests failed"
    return RunStatus.PASSED, None
