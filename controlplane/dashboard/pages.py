"""What the dashboard's run pages show, gathered from the database.

The same functions feed the full pages and the fragments that server-sent
events replace while a run goes, so a live page and a reloaded one always
show the same thing.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import attrs
from aiohttp import web

from controlplane.api.appkeys import DB
from controlplane.api.runs import base_url
from controlplane.dashboard import charts
from controlplane.domain import GitSource, Run, Shard, TestResult, TestStatus
from controlplane.errors import NotFound
from controlplane.notify.store import AttemptRecord, Notification, NotificationStore
from controlplane.reports.store import ReportRecord, ReportStatus, ReportStore
from controlplane.storage.db import Database

# Failures first: what an engineer opens the page for.
_STATUS_ORDER = {
    TestStatus.FAILED: 0,
    TestStatus.DID_NOT_RUN: 1,
    TestStatus.FLAKY: 2,
    TestStatus.PASSED: 3,
    TestStatus.SKIPPED: 4,
}
TEST_FILTERS = ("all", "failed", "flaky", "passed", "skipped", "didNotRun")


@attrs.frozen(kw_only=True)
class RunPage:
    run: Run
    shards: list[Shard]
    tests: list[TestResult]
    done_by_shard: dict[int, int]
    report: ReportRecord | None
    notifications: list[tuple[Notification, list[AttemptRecord]]]
    schedule: dict[str, Any] | None
    timeline: charts.Timeline

    @property
    def live(self) -> bool:
        """Whether the page still changes: the run or its report is going."""
        building = self.report is None or self.report.status == ReportStatus.BUILDING
        return not self.run.status.finished or (
            building and time.time() - (self.run.finished_at or 0) < 600
        )

    def fingerprint(self) -> str:
        """Changes whenever anything the page shows changes."""
        return json.dumps(
            [
                self.run.status.value,
                self.run.counts.to_json(),
                self.done_by_shard,
                [(s.index, s.status.value, s.host, s.finished_at) for s in self.shards],
                [(t.test_id, t.status.value, len(t.attempts)) for t in self.tests],
                self.report.status.value if self.report else None,
                [
                    (n.target, n.status.value, n.attempts)
                    for n, _a in self.notifications
                ],
            ],
            sort_keys=True,
        )


async def load_run(db: Database, run_id: str) -> Run:
    run = await db.get_run(run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r}")
    return run


async def run_page(request: web.Request, run_id: str) -> RunPage:
    db = request.app[DB]
    run = await load_run(db, run_id)
    shards = await db.shards(run.id)
    tests = await db.tests(run.id)
    schedule_rows = await db.fetchall(
        "SELECT f.schedule_id, f.slot_at, s.name FROM schedule_fires f"
        " LEFT JOIN schedules s ON s.id = f.schedule_id WHERE f.run_id = ?",
        (run.id,),
    )
    return RunPage(
        run=run,
        shards=shards,
        tests=sorted(tests, key=lambda t: (_STATUS_ORDER[t.status], t.file, t.title)),
        done_by_shard=await db.tests_done_by_shard(run.id),
        report=await ReportStore(db).get(run.id),
        notifications=await NotificationStore(db).for_run(run.id),
        schedule=dict(schedule_rows[0]) if schedule_rows else None,
        timeline=charts.run_timeline(run, shards, tests, time.time()),
    )


def artifact_url(run_id: str, key: str | None) -> str | None:
    """The dashboard's URL of an artifact key (``<run>/shard-0/...``)."""
    if key is None:
        return None
    return f"/runs/{run_id}/artifacts/{quote(key.split('/', 1)[1])}"


def trace_viewer_url(
    request: web.Request, run_id: str, report: ReportRecord | None, test: TestResult
) -> str | None:
    """Playwright's trace viewer (from the merged report) on the test's trace.

    Without a merged report, the trace file itself (for ``show-trace``).
    """
    trace = artifact_url(run_id, test.trace)
    if trace is None:
        return None
    if report is None or not report.viewable:
        return trace
    absolute = quote(f"{base_url(request)}{trace}", safe="")
    return f"/runs/{run_id}/report/trace/index.html?trace={absolute}"


def commit_of(run: Run) -> str | None:
    return run.resolved_sha or run.request.commit_sha


def repo_of(run: Run) -> str | None:
    source = run.request.test_source
    return source.git_repo if isinstance(source, GitSource) else None


@attrs.frozen(kw_only=True)
class HistoryEntry:
    run_id: str
    run_name: str | None
    run_status: str
    created_at: float
    status: str
    duration_ms: int
    attempts: int
    commit: str | None


@attrs.frozen(kw_only=True)
class History:
    entries: list[HistoryEntry]
    ran: int
    passed: int
    failed: int
    flaky: int

    @property
    def flaky_rate(self) -> float | None:
        return self.flaky / self.ran if self.ran else None

    @property
    def failure_rate(self) -> float | None:
        return self.failed / self.ran if self.ran else None


async def history_of(db: Database, run: Run, test_id: str, *, limit: int) -> History:
    """The test's results over the latest runs of the same repository."""
    rows = await db.fetchall(
        "SELECT t.run_id, t.status, t.duration_ms, t.attempts, r.created_at,"
        " r.status AS run_status, r.resolved_sha,"
        " json_extract(r.request, '$.name') AS run_name"
        " FROM tests t JOIN runs r ON r.id = t.run_id WHERE t.test_id = ?"
        " AND json_extract(r.request, '$.test_source.git_repo') IS ?"
        " AND t.run_id <= ? ORDER BY t.run_id DESC LIMIT ?",
        (test_id, repo_of(run), run.id, limit),
    )
    entries = [
        HistoryEntry(
            run_id=row["run_id"],
            run_name=row["run_name"],
            run_status=row["run_status"],
            created_at=row["created_at"],
            status=row["status"],
            duration_ms=row["duration_ms"],
            attempts=len(json.loads(row["attempts"])),
            commit=row["resolved_sha"],
        )
        for row in rows
    ]
    ran = [e for e in entries if e.status in ("passed", "failed", "flaky")]
    return History(
        entries=entries,
        ran=len(ran),
        passed=sum(e.status == "passed" for e in ran),
        failed=sum(e.status == "failed" for e in ran),
        flaky=sum(e.status == "flaky" for e in ran),
    )
