"""The run's merged Playwright HTML report, built once when the run ends.

Every batch a host runs writes a blob report (``report-<batch>.zip``, so no
two batches of a run share a name) that comes back with its attachments to
``<run>/shard-<n>/batch-<m>/blob/``. When the run's status is final, the
builder checks that each batch's blob is there, that all of them were
recorded from one absolute folder (Playwright refuses to merge blobs from
different folders, and hosts keep the suite at one fixed work root so they
agree), and runs ``playwright merge-reports`` from the suite's own
``node_modules``: the report is made by the Playwright version the suite
ran with. The result lands at ``<run>/report/`` in the artifact store.

The merge runs on the control plane rather than on a host: by then the
hosts are released, the blobs are already in one place (the artifact
store), and the suite's dependencies are installed here once per lockfile
anyway, so no host has to be kept or started for it.

A batch whose blob is missing (its host was lost, Playwright crashed) does
not stop the merge of the others, but the report is then ``incomplete``
and the record lists every missing batch; it is never passed off as whole.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import tempfile
import zipfile
from pathlib import Path

import attrs

from controlplane.engine.runs import FinishedRun
from controlplane.logs import get_logger, redact_text
from controlplane.reports.store import ReportStatus, ReportStore
from controlplane.storage import access
from controlplane.storage.db import Database
from controlplane.storage.s3 import ArtifactStore

log = get_logger(__name__)

# Playwright's HTML reporter opens a browser (and serves the report until it
# is closed) unless told not to: never, on a control plane.
_NEVER_OPEN = {"PLAYWRIGHT_HTML_OPEN": "never", "PW_TEST_HTML_REPORT_OPEN": "never"}
_OUTPUT_TAIL_CHARS = 1500


@attrs.frozen(kw_only=True)
class Blob:
    """One batch's blob report, where it should be in the artifact store."""

    batch: int
    shard: int
    batch_status: str
    key: str

    def describe(self) -> str:
        return f"batch {self.batch} on shard {self.shard}"


def blob_key(run_id: str, shard: int, batch: int) -> str:
    """Where a batch's blob report lands (the harness names it by batch)."""
    return f"{run_id}/shard-{shard}/batch-{batch}/blob/report-{batch}.zip"


def recorded_root_dir(blob: Path) -> str | None:
    """The absolute folder a blob report was recorded in (its ``rootDir``)."""
    with zipfile.ZipFile(blob) as archive:
        for name in archive.namelist():
            if not name.endswith(".jsonl"):
                continue
            with archive.open(name) as events:
                for line in events:
                    event = json.loads(line)
                    if event.get("method") == "onConfigure":
                        root = event["params"]["config"].get("rootDir")
                        return str(root) if root is not None else None
    return None


class ReportBuilder:
    """A run listener that merges the run's blob reports into one HTML report."""

    def __init__(
        self,
        *,
        db: Database,
        store: ArtifactStore,
        scratch_dir: Path,
        timeout_s: float,
    ) -> None:
        self.db = db
        self.reports = ReportStore(db)
        self.store = store
        self.scratch_dir = scratch_dir
        self.timeout_s = timeout_s
        # Merges are CPU-bound Node processes: one at a time per control plane.
        self._one_at_a_time = asyncio.Semaphore(1)

    async def run_finished(self, finished: FinishedRun) -> None:
        run_id = finished.run.id
        if not await self.reports.claim(run_id):
            log.info("report.already_claimed", run_id=run_id)
            return
        try:
            async with self._one_at_a_time:
                await self._build(finished)
        except Exception as exc:
            log.exception("report.crashed", run_id=run_id)
            await self.reports.finish(
                run_id, ReportStatus.FAILED, f"internal error: {type(exc).__name__}"
            )

    async def _build(self, finished: FinishedRun) -> None:
        run_id = finished.run.id
        blobs = [
            Blob(
                batch=row["number"],
                shard=row["slot"],
                batch_status=row["status"],
                key=blob_key(run_id, row["slot"], row["number"]),
            )
            for row in await self.db.batches(run_id)
            # A guess the listing did not confirm: its results were dropped.
            if row["status"] != "dropped"
        ]
        if not blobs:
            await self.reports.finish(
                run_id, ReportStatus.NONE, "no batch ran, so there is nothing to merge"
            )
            return
        present = [b for b in blobs if await access.exists(self.store, b.key)]
        missing = [_why_missing(b) for b in blobs if b not in present]
        failure = self._cannot_merge(finished, present)
        if failure is None:
            failure = await self._merge(finished, present)
        if failure is not None:
            log.warning("report.failed", run_id=run_id, reason=failure)
            await self.reports.finish(
                run_id,
                ReportStatus.FAILED,
                failure,
                expected=len(blobs),
                missing=missing,
            )
            return
        status = ReportStatus.INCOMPLETE if missing else ReportStatus.READY
        reason = (
            f"{len(missing)} of {len(blobs)} batches are not in the report"
            if missing
            else None
        )
        log.info(
            "report.built",
            run_id=run_id,
            status=status.value,
            blobs=len(present),
            missing=len(missing),
        )
        await self.reports.finish(
            run_id,
            status,
            reason,
            expected=len(blobs),
            merged=len(present),
            missing=missing,
        )

    def _cannot_merge(self, finished: FinishedRun, present: list[Blob]) -> str | None:
        if not present:
            return "no batch sent back a blob report"
        if finished.playwright is None or not finished.playwright.exists():
            return "the suite's Playwright is not installed on the control plane"
        if shutil.which("node") is None:
            return "Node.js is not installed on the control plane"
        return None

    def _check_one_folder(self, present: list[Blob], blobs_dir: Path) -> str | None:
        roots = {}
        for blob in present:
            try:
                roots[blob.describe()] = recorded_root_dir(_local_blob(blobs_dir, blob))
            except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
                return f"the blob report of {blob.describe()} is unreadable: {exc}"
        if len(set(roots.values())) > 1:
            folders = ", ".join(f"{k}: {v}" for k, v in sorted(roots.items()))
            return (
                "the shards ran from different folders, and Playwright merges"
                f" blob reports from one absolute folder only ({folders})"
            )
        return None

    async def _merge(self, finished: FinishedRun, present: list[Blob]) -> str | None:
        """Run the suite's ``playwright merge-reports``; a failure's reason."""
        run_id = finished.run.id
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(
            prefix=f"report-{run_id}-", dir=self.scratch_dir
        ) as tmp:
            work = Path(tmp)
            blobs_dir, out_dir, cwd = work / "blobs", work / "html", work / "cwd"
            for folder in (blobs_dir, cwd):
                folder.mkdir()
            # Playwright unpacks into the folder it merges: work on copies.
            for blob in present:
                await access.fetch(self.store, blob.key, _local_blob(blobs_dir, blob))
            failure = await asyncio.to_thread(
                self._check_one_folder, present, blobs_dir
            )
            if failure is not None:
                return failure
            code, output = await self._run_merge(finished, blobs_dir, out_dir, cwd)
            if code != 0 or not (out_dir / "index.html").is_file():
                tail = redact_text(output[-_OUTPUT_TAIL_CHARS:].strip())
                return f"playwright merge-reports exited {code}: {tail}"
            await access.publish_folder(self.store, out_dir, f"{run_id}/report")
        return None

    async def _run_merge(
        self, finished: FinishedRun, blobs_dir: Path, out_dir: Path, cwd: Path
    ) -> tuple[int | None, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(cwd),
            "LANG": "C.UTF-8",
            "CI": "1",
            "FORCE_COLOR": "0",
            "PLAYWRIGHT_HTML_OUTPUT_DIR": str(out_dir),
            **_NEVER_OPEN,
        }
        process = await asyncio.create_subprocess_exec(
            str(finished.playwright),
            "merge-reports",
            "--reporter",
            "html",
            str(blobs_dir),
            cwd=cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            output, _ = await asyncio.wait_for(process.communicate(), self.timeout_s)
        except TimeoutError:
            await _kill_group(process)
            return None, f"did not finish within {self.timeout_s:.0f}s"
        except asyncio.CancelledError:
            await asyncio.shield(_kill_group(process))
            raise
        return process.returncode, output.decode(errors="replace")


def _local_blob(blobs_dir: Path, blob: Blob) -> Path:
    return blobs_dir / f"report-{blob.batch}.zip"


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """Kill the merge and anything it started (its own process group)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def _why_missing(blob: Blob) -> str:
    if blob.batch_status == "lost":
        return f"{blob.describe()}: its host was lost before the batch finished"
    if blob.batch_status == "running":
        return f"{blob.describe()}: stopped before it finished"
    return f"{blob.describe()}: no blob report came back"
