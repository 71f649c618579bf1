"""``GET /api/runs/{id}/junit.xml``, and what a run's record says of its report.

The JUnit document is made from the same JSON the API answers with, by the
one implementation the CLI uses too (``controlplane.reports.junit``).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controlplane.api.appkeys import DB
from controlplane.api.middleware import require_scope
from controlplane.api.runs import base_url, iso, run_summary_json, test_json
from controlplane.errors import NotFound
from controlplane.notify.store import NotificationStore
from controlplane.reports.junit import junit_bytes
from controlplane.reports.store import ReportStore

routes = web.RouteTableDef()


@routes.get("/api/runs/{run_id}/junit.xml")
async def junit(request: web.Request) -> web.Response:
    require_scope(request, "runs:read")
    db = request.app[DB]
    run = await db.get_run(request.match_info["run_id"])
    if run is None:
        raise NotFound(f"no run {request.match_info['run_id']!r}")
    tests = [test_json(request, t) for t in await db.tests(run.id)]
    return web.Response(
        body=junit_bytes(run_summary_json(request, run), tests),
        content_type="application/xml",
    )


async def run_record_extras(request: web.Request, run_id: str) -> dict[str, Any]:
    """The run's merged report and its notifications, for ``GET /api/runs/{id}``."""
    db = request.app[DB]
    base = base_url(request)
    report = await ReportStore(db).get(run_id)
    notifications = await NotificationStore(db).for_run(run_id)
    return {
        "junitUrl": f"{base}/api/runs/{run_id}/junit.xml",
        "report": None
        if report is None
        else {
            "status": report.status.value,
            "reason": report.reason,
            "url": f"{base}/runs/{run_id}/report/" if report.viewable else None,
            "blobsExpected": report.blobs_expected,
            "blobsMerged": report.blobs_merged,
            "missing": report.missing,
            "startedAt": iso(report.started_at),
            "finishedAt": iso(report.finished_at),
        },
        "notifications": [
            {
                "target": n.target,
                "kind": n.kind.value,
                "status": n.status.value,
                "attempts": [
                    {
                        "number": a.number,
                        "at": iso(a.at),
                        "httpStatus": a.status_code,
                        "error": a.error,
                        "durationMs": a.duration_ms,
                    }
                    for a in attempts
                ],
                "nextAttemptAt": iso(n.next_attempt_at)
                if n.status.value == "pending"
                else None,
            }
            for n, attempts in notifications
        ],
    }
