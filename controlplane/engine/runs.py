"""The run state machine: queued -> provisioning -> running -> a verdict.

``RunEngine.start`` launches one task per run. The task prepares the source
once (clone, discovery, dependencies), plans shards, gets hosts from the
fleet provider, runs the shards through the dispatcher and stores results
as they arrive. Whatever happens, the hosts are released and the run ends
in a finished status with its reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tarfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import attrs
import structlog

from controlplane.domain import (
    Counts,
    GitSource,
    Run,
    RunStatus,
    Shard,
    ShardStatus,
    TestRef,
)
from controlplane.engine import discovery, plan, repoconfig, source, suite
from controlplane.engine.deps import DependencyCache
from controlplane.engine.results import ShardResults
from controlplane.errors import HostError, RunFailure, SourceError
from controlplane.fleet.base import FleetProvider, Host
from controlplane.harness import HARNESS_DIR, HARNESS_FILES
from controlplane.logs import get_logger
from controlplane.remote.dispatch import Dispatcher, Payload, ShardJob, ShardOutcome
from controlplane.settings import Settings
from controlplane.storage.db import Database

log = get_logger(__name__)


@attrs.define
class _Prepared:
    files: list[str]
    groups: list[list[str]]
    payload: Payload
    env: dict[str, str]
    # For a rerun: the lines of the tests to run again, by file.
    lines: dict[str, list[int]] | None = None

    def selectors(self, files: list[str]) -> list[str]:
        if self.lines is None:
            return list(files)
        return [f"{f}\t{line}" for f in files for line in self.lines[f]]


def _tar_folder(folder: Path, archive: Path, *, skip: frozenset[str]) -> None:
    """Tar ``folder``'s contents without any path segment named in ``skip``."""

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = Path(info.name).parts
        return None if any(p in skip for p in parts) else info

    with tarfile.open(archive, "w") as tar:
        for child in sorted(folder.iterdir()):
            if child.name not in skip:
                tar.add(child, arcname=child.name, filter=keep)


def _harness_archive(target_dir: Path) -> tuple[str, Path]:
    digest = hashlib.sha256()
    for name in HARNESS_FILES:
        digest.update(name.encode() + b"\0" + (HARNESS_DIR / name).read_bytes())
    key = digest.hexdigest()[:16]
    archive = target_dir / f"harness-{key}.tar"
    if not archive.exists():
        target_dir.mkdir(parents=True, exist_ok=True)
        partial = archive.with_suffix(".partial")
        with tarfile.open(partial, "w") as tar:
            for name in HARNESS_FILES:
                tar.add(HARNESS_DIR / name, arcname=name)
        partial.rename(archive)
    return key, archive


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
    ) -> None:
        self.settings = settings
        self.db = db
        self.provider = provider
        self.dispatcher = dispatcher
        self.deps = DependencyCache(
            settings.deps_dir, install_timeout_s=settings.install_timeout_s
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._prepared: dict[str, _Prepared] = {}
        self.listeners: list[RunListener] = list(listeners)
        self._cancelled: set[str] = set()

    # -- lifecycle --------------------------------------------------------

    def start(self, run_id: str) -> None:
        task = asyncio.create_task(self._execute(run_id), name=f"run-{run_id}")
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
        """End runs left unfinished by a previous process of the control plane."""
        # XXX: runs are ended rather than resumed; resuming where hosts still
        # answer needs the hosts' addresses stored with the shards.
        unfinished = [s for s in RunStatus if not s.finished]
        for run in await self.db.runs_with_status(unfinished):
            await self._finish(
                run.id,
                RunStatus.ERRORED,
                "the control plane restarted while the run was in progress",
            )

    async def close(self) -> None:
        """Stop every run in flight; each ends errored and releases its hosts."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_idle(self) -> None:
        while self._tasks:
            await asyncio.gather(*list(self._tasks.values()), return_exceptions=True)

    # -- one run ----------------------------------------------------------

    async def _execute(self, run_id: str) -> None:
        structlog.contextvars.bind_contextvars(run_id=run_id)
        run = await self.db.get_run(run_id)
        if run is None:
            return
        workdir = self.settings.work_dir / run_id
        status = RunStatus.ERRORED
        reason: str | None = "the run stopped unexpectedly"
        try:
            status, reason = await self._drive(run, workdir)
        except asyncio.CancelledError:
            if run_id in self._cancelled:
                status, reason = RunStatus.CANCELLED, "cancelled on request"
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
            await asyncio.shield(self._cleanup(run_id, workdir, status, reason))

    async def _cleanup(
        self, run_id: str, workdir: Path, status: RunStatus, reason: str | None
    ) -> None:
        prepared = self._prepared.pop(run_id, None)
        try:
            await self.provider.release(run_id)
        finally:
            await self._finish(run_id, status, reason)
            await self._notify(run_id, workdir, prepared)
            await asyncio.to_thread(shutil.rmtree, workdir, True)

    async def _notify(
        self, run_id: str, workdir: Path, prepared: _Prepared | None
    ) -> None:
        """Tell every listener the run finished; a failing listener is logged."""
        run = await self.db.get_run(run_id)
        if run is None or not self.listeners:
            return
        finished = FinishedRun(
            run=run,
            checkout=workdir / "src" if prepared else None,
            node_modules=prepared.payload.deps.node_modules if prepared else None,
            config_dir=prepared.payload.config_dir if prepared else None,
        )
        for listener in self.listeners:
            try:
                await listener.run_finished(finished)
            except Exception:
                log.exception("run.listener_failed", listener=type(listener).__name__)

    async def _finish(self, run_id: str, status: RunStatus, reason: str | None) -> None:
        await self._mark_unrun(run_id)
        counts = Counts()
        for result in await self.db.tests(run_id):
            counts.add(result.status)
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

    async def _drive(self, run: Run, workdir: Path) -> tuple[RunStatus, str | None]:
        await self.db.update_run(run.id, started_at=time.time())
        prepared = await self._prepare(run, workdir)
        self._prepared[run.id] = prepared
        shards = [
            Shard(run_id=run.id, index=i, files=files)
            for i, files in enumerate(prepared.groups)
        ]
        await self.db.insert_shards(shards)

        await self.db.update_run(run.id, status=RunStatus.PROVISIONING)
        hosts = await self.provider.acquire(run.id, len(shards))
        await self.db.update_run(run.id, status=RunStatus.RUNNING)
        await asyncio.gather(
            *(
                self._run_shard(run, shard, host, prepared)
                for shard, host in zip(shards, hosts, strict=True)
            )
        )
        return _verdict(await self.db.shards(run.id), await self._counts(run.id))

    async def _prepare(self, run: Run, workdir: Path) -> _Prepared:
        request = run.request
        if not isinstance(request.test_source, GitSource):
            raise SourceError(
                "S3 test sources are not supported by this control plane yet"
            )
        checkout = workdir / "src"
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        sha = await source.clone(
            repo=request.test_source.git_repo,
            branch=request.test_source.git_branch,
            commit=request.commit_sha,
            dest=checkout,
            timeout_s=self.settings.clone_timeout_s,
        )
        await self.db.update_run(run.id, resolved_sha=sha)
        files = await asyncio.to_thread(
            discovery.discover, checkout, request.test_pattern
        )
        lines = None
        if request.only is not None:
            lines = _lines_by_file(request.only, files)
            files = sorted(lines, key=lambda f: f.encode())
        if not files:
            raise SourceError(
                f"testPattern {request.test_pattern!r} matched no file"
                " in the repository"
            )
        await self.db.update_run(run.id, spec_files=files)
        layout = await asyncio.to_thread(suite.find_layout, checkout, files)
        if layout.package_manager != "npm":
            raise SourceError(
                f"{layout.lockfile}: only npm lockfiles are supported so far"
            )
        config = await asyncio.to_thread(repoconfig.load, checkout)
        deps = await self.deps.ensure(checkout / layout.package_dir, layout.lockfile)
        suite_archive = workdir / "suite.tar"
        await asyncio.to_thread(
            _tar_folder,
            checkout,
            suite_archive,
            skip=frozenset({".git", "node_modules"}),
        )
        harness_key, harness_archive = await asyncio.to_thread(
            _harness_archive, self.settings.data_dir / "harness"
        )
        costs = {f: float((checkout / f).stat().st_size) for f in files}
        groups = plan.split(files, request.server_count, costs)
        log.info("run.planned", files=len(files), shards=len(groups), sha=sha)
        return _Prepared(
            files=files,
            groups=groups,
            env=config.env,
            lines=lines,
            payload=Payload(
                harness_key=harness_key,
                harness_archive=harness_archive,
                deps=deps,
                suite_archive=suite_archive,
                config_dir=layout.config_dir,
                package_dir=layout.package_dir,
            ),
        )

    async def _run_shard(
        self, run: Run, shard: Shard, host: Host, prepared: _Prepared
    ) -> ShardOutcome | None:
        await self.db.update_shard(
            run.id,
            shard.index,
            status=ShardStatus.RUNNING,
            host=host.name,
            started_at=time.time(),
        )
        job = ShardJob(
            run_id=run.id,
            index=shard.index,
            files=shard.files,
            timeout_s=run.request.timeout,
            env=prepared.env,
            selectors=prepared.selectors(shard.files),
        )
        results = ShardResults(
            run_id=run.id,
            shard_index=shard.index,
            artifact_prefix=f"{run.id}/shard-{shard.index}",
        )
        stored: set[str] = set()

        async def progress(results: ShardResults) -> None:
            if results.first_test_at_ms is not None and not stored:
                await self.db.note_first_test(run.id, results.first_test_at_ms / 1000)
            finished = results.settled()
            fresh = [
                r for r in finished if f"{r.test_id}:{len(r.attempts)}" not in stored
            ]
            if fresh:
                await self.db.upsert_tests(fresh)
                stored.update(f"{r.test_id}:{len(r.attempts)}" for r in fresh)
                await self.db.update_run(run.id, counts=await self._counts(run.id))

        try:
            outcome = await self.dispatcher.run_shard(
                host, prepared.payload, job, results, progress
            )
        except HostError as exc:
            log.warning("shard.errored", shard=shard.index, error=str(exc))
            await self.db.upsert_tests(results.results())
            await self.db.update_shard(
                run.id,
                shard.index,
                status=ShardStatus.ERRORED,
                reason=str(exc),
                finished_at=time.time(),
                counts=results.counts(),
            )
            return None
        except asyncio.CancelledError:
            # What the shard reported stays; the rest of its tests did not run.
            await asyncio.shield(self._store_partial(run.id, shard.index, results))
            raise
        await self.db.upsert_tests(outcome.results.results())
        await self.db.update_shard(
            run.id,
            shard.index,
            status=outcome.status,
            reason=outcome.reason,
            finished_at=outcome.finished_at,
            counts=outcome.results.counts(),
        )
        await self.db.update_run(run.id, counts=await self._counts(run.id))
        log.info(
            "shard.finished",
            shard=shard.index,
            status=outcome.status.value,
            duration_s=round(outcome.finished_at - outcome.started_at, 2),
        )
        return outcome

    async def _store_partial(
        self, run_id: str, index: int, results: ShardResults
    ) -> None:
        await self.db.upsert_tests(results.results())
        await self.db.update_shard(
            run_id,
            index,
            status=ShardStatus.CANCELLED,
            reason="the run was stopped",
            finished_at=time.time(),
            counts=results.counts(),
        )

    async def _counts(self, run_id: str) -> Counts:
        counts = Counts()
        for result in await self.db.tests(run_id):
            counts.add(result.status)
        return counts


def _lines_by_file(only: list[TestRef], discovered: list[str]) -> dict[str, list[int]]:
    """The tests to rerun that still exist, grouped by file."""
    present = set(discovered)
    lines: dict[str, list[int]] = {}
    for ref in only:
        if ref.file in present:
            lines.setdefault(ref.file, [])
            if ref.line not in lines[ref.file]:
                lines[ref.file].append(ref.line)
    return {f: sorted(ls) for f, ls in lines.items()}


def _verdict(shards: list[Shard], counts: Counts) -> tuple[RunStatus, str | None]:
    """The run's status from its shards and its test counts."""
    errored = [s for s in shards if s.status == ShardStatus.ERRORED]
    if errored:
        reasons = "; ".join(f"shard {s.index}: {s.reason}" for s in errored)
        return RunStatus.ERRORED, reasons
    if any(s.status == ShardStatus.TIMED_OUT for s in shards):
        return RunStatus.TIMED_OUT, (
            f"a shard ran past its timeout; {counts.did_not_run} tests did not run"
        )
    if counts.did_not_run:
        return RunStatus.FAILED, f"{counts.did_not_run} tests did not run"
    if counts.failed:
        return RunStatus.FAILED, f"{counts.failed} tests failed"
    return RunStatus.PASSED, None
