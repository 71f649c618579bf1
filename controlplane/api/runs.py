"""``/api/runs``: create a run, read it, its shards, tests and artifacts."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import web

from controlplane.api.appkeys import DB, ENGINE, SETTINGS, STORE
from controlplane.api.middleware import require_scope
from controlplane.api.models import parse_run_body
from controlplane.domain import (
    GitSource,
    Run,
    RunStatus,
    S3Source,
    Shard,
    TestResult,
    new_id,
)
from controlplane.errors import InvalidRequest, NotFound
from controlplane.logs import get_logger

log = get_logger(__name__)
routes = web.RouteTableDef()


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))
        + f".{int(ts % 1 * 1000):03d}Z"
    )


def _artifact_url(request: web.Request, run_id: str, key: str | None) -> str | None:
    if key is None:
        return None
    return f"{_base(request)}/api/runs/{run_id}/artifacts/{key.split('/', 1)[1]}"


def _base(request: web.Request) -> str:
    settings = request.app[SETTINGS]
    if settings.public_url:
        return settings.public_url.rstrip("/")
    return f"{request.scheme}://{request.host}"


def _source_json(source: GitSource | S3Source) -> dict[str, str]:
    if isinstance(source, GitSource):
        return {
            "type": "git",
            "gitRepo": source.git_repo,
            "gitBranch": source.git_branch,
        }
    return {"type": "s3", "bucket": source.bucket, "key": source.key}


def run_json(request: web.Request, run: Run, shards: list[Shard]) -> dict[str, Any]:
    source = run.request.test_source
    duration = (
        round(run.finished_at - run.started_at, 3)
        if run.finished_at and run.started_at
        else None
    )
    return {
        "id": run.id,
        "status": run.status.value,
        "reason": run.reason,
        "url": f"{_base(request)}/api/runs/{run.id}",
        "name": run.request.name,
        "testSource": _source_json(source),
        "testPattern": run.request.test_pattern,
        "serverCount": run.request.server_count,
        "timeout": run.request.timeout,
        "commitSha": run.request.commit_sha,
        "resolvedSha": run.resolved_sha,
        "triggerSource": run.request.trigger_source.value,
        "createdAt": _iso(run.created_at),
        "startedAt": _iso(run.started_at),
        "finishedAt": _iso(run.finished_at),
        "firstTestAt": _iso(run.first_test_at),
        "durationS": duration,
        "specFiles": len(run.spec_files),
        "counts": run.counts.to_json(),
        "shards": [
            {
                "index": s.index,
                "host": s.host,
                "status": s.status.value,
                "reason": s.reason,
                "files": s.files,
                "startedAt": _iso(s.started_at),
                "finishedAt": _iso(s.finished_at),
                "counts": s.counts.to_json(),
            }
            for s in shards
        ],
    }


def test_json(request: web.Request, result: TestResult) -> dict[str, Any]:
    return {
        "id": result.test_id,
        "file": result.file,
        "line": result.line,
        "project": result.project,
        "title": result.title,
        "status": result.status.value,
        "durationMs": result.duration_ms,
        "shard": result.shard_index,
        "attempts": [
            {
                "retry": a.retry,
                "status": a.status,
                "durationMs": a.duration_ms,
                "error": a.error,
            }
            for a in result.attempts
        ],
        "trace": result.trace,
        "traceUrl": _artifact_url(request, result.run_id, result.trace),
        "screenshots": result.screenshots,
        "screenshotUrls": [
            _artifact_url(request, result.run_id, key) for key in result.screenshots
        ],
    }


async def _read_json(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > 256 * 1024:
        raise InvalidRequest({"body": "is larger than 256 KiB"})
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest({"body": "is not valid JSON"}) from None
    except RecursionError:
        raise InvalidRequest({"body": "is nested too deeply"}) from None


@routes.post("/api/runs")
async def create_run(request: web.Request) -> web.Response:
    require_scope(request, "runs:trigger")
    body = parse_run_body(
        await _read_json(request),
        max_server_count=request.app[SETTINGS].max_server_count,
    )
    run = Run(
        id=new_id("run_"), request=body, status=RunStatus.QUEUED, created_at=time.time()
    )
    await request.app[ENGINE].submit(run)
    return web.json_response(
        {
            "id": run.id,
            "status": run.status.value,
            "url": f"{_base(request)}/api/runs/{run.id}",
        },
        status=201,
        headers={"Location": f"/api/runs/{run.id}"},
    )


async def _load(request: web.Request) -> Run:
    run = await request.app[DB].get_run(request.match_info["run_id"])
    if run is None:
        raise NotFound(f"no run {request.match_info['run_id']!r}")
    return run


@routes.get("/api/runs/{run_id}")
async def get_run(request: web.Request) -> web.Response:
    require_scope(request, "runs:read")
    run = await _load(request)
    return web.json_response(
        run_json(request, run, await request.app[DB].shards(run.id))
    )


@routes.get("/api/runs/{run_id}/tests")
async def get_tests(request: web.Request) -> web.Response:
    require_scope(request, "runs:read")
    run = await _load(request)
    results = await request.app[DB].tests(run.id)
    return web.json_response(
        {"runId": run.id, "tests": [test_json(request, r) for r in results]}
    )


@routes.get("/api/runs/{run_id}/artifacts/{key:.+}")
async def get_artifact(request: web.Request) -> web.FileResponse:
    require_scope(request, "runs:read")
    run = await _load(request)
    store = request.app[STORE]
    try:
        path = store.path_for(f"{run.id}/{request.match_info['key']}")
    except ValueError:
        raise NotFound("no such artifact") from None
    if not path.is_file():
        raise NotFound("no such artifact")
    return web.FileResponse(path)
