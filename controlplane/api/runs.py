"""``/api/runs``: create, list, read, cancel and rerun runs; tests, artifacts."""

from __future__ import annotations

import hashlib
import json
import re
import time
from typing import Any

import attrs
import structlog
from aiohttp import web
from botocore.exceptions import BotoCoreError, ClientError

from controlplane.api.appkeys import DB, ENGINE, SETTINGS, STORE
from controlplane.api.middleware import Unprocessable, error_body, require_scope
from controlplane.api.models import (
    decode_cursor,
    encode_cursor,
    parse_rerun_body,
    parse_run_body,
    parse_run_query,
)
from controlplane.aws import describe_error
from controlplane.domain import (
    GitSource,
    Run,
    RunRequest,
    RunStatus,
    S3Source,
    Shard,
    TestRef,
    TestResult,
    TestStatus,
    new_id,
)
from controlplane.errors import Conflict, InvalidRequest, NotFound
from controlplane.fleet.usage import usage_json
from controlplane.logs import get_logger, redact_text
from controlplane.storage.db import Database, RunFilter
from controlplane.storage.keys import AuthenticatedKey
from controlplane.storage.runnotes import SETUP, SURVEY, RunNotes
from controlplane.storage.s3 import S3ArtifactStore

log = get_logger(__name__)
routes = web.RouteTableDef()


def iso(ts: float | None) -> str | None:
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


def base_url(request: web.Request) -> str:
    """The base of URLs in answers: the public URL, else the request's own."""
    return _base(request)


def _source_json(source: GitSource | S3Source) -> dict[str, str]:
    if isinstance(source, GitSource):
        return {
            "type": "git",
            # A token inside the URL is for cloning, never for showing.
            "gitRepo": redact_text(source.git_repo),
            "gitBranch": source.git_branch,
        }
    return {"type": "s3", "bucket": source.bucket, "key": source.key}


def run_summary_json(request: web.Request, run: Run) -> dict[str, Any]:
    """A run without its shards: what a listing shows of each run."""
    duration = (
        round(run.finished_at - run.started_at, 3)
        if run.finished_at and run.started_at
        else None
    )
    only = run.request.only
    return {
        "id": run.id,
        "status": run.status.value,
        "reason": run.reason,
        "url": f"{_base(request)}/api/runs/{run.id}",
        "name": run.request.name,
        "testSource": _source_json(run.request.test_source),
        "testPattern": run.request.test_pattern,
        "serverCount": run.request.server_count,
        "timeout": run.request.timeout,
        "commitSha": run.request.commit_sha,
        "resolvedSha": run.resolved_sha,
        "triggerSource": run.request.trigger_source.value,
        "rerunOf": run.request.rerun_of,
        "onlyTests": (
            None if only is None else [{"file": t.file, "line": t.line} for t in only]
        ),
        "createdAt": iso(run.created_at),
        "startedAt": iso(run.started_at),
        "finishedAt": iso(run.finished_at),
        "firstTestAt": iso(run.first_test_at),
        "durationS": duration,
        "specFiles": len(run.spec_files),
        "counts": run.counts.to_json(),
    }


def survey_json(survey: dict[str, Any] | None, setup: dict[str, Any]) -> dict[str, Any]:
    """What the run learnt before its tests: files left out, projects, setup."""
    return {
        "excludedFiles": survey["excludedFiles"] if survey else [],
        "projects": survey["projects"] if survey else [],
        "setup": [setup[host] for host in sorted(setup)],
    }


def run_json(
    request: web.Request,
    run: Run,
    shards: list[Shard],
    done_by_shard: dict[int, int] | None = None,
    notes: dict[str, Any] | None = None,
    instances: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A run with its shards; ``testsDone`` counts the results each shard has.

    A run that used cloud instances also has ``fleet``: each instance's type,
    lifecycle and hours, and the run's estimated cost.
    """
    done = done_by_shard or {}
    extra: dict[str, Any] = {}
    if instances:
        end = run.finished_at if run.status.finished else None
        extra["fleet"] = usage_json(instances, now=end)
    return {
        **run_summary_json(request, run),
        **(notes or survey_json(None, {})),
        **extra,
        "shards": [
            {
                "index": s.index,
                "host": s.host,
                "status": s.status.value,
                "reason": s.reason,
                "files": s.files,
                "startedAt": iso(s.started_at),
                "finishedAt": iso(s.finished_at),
                "testsDone": done.get(s.index, 0),
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
                "startedAt": iso(a.started_at),
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


async def read_json(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > 256 * 1024:
        raise InvalidRequest({"body": "is larger than 256 KiB"})
    raw = await request.read()
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest({"body": "is not valid JSON"}) from None
    except RecursionError:
        raise InvalidRequest({"body": "is nested too deeply"}) from None


_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}\Z")


def _idempotency_key(request: web.Request) -> str | None:
    values = request.headers.getall("Idempotency-Key", [])
    if not values:
        return None
    if len(values) > 1:
        raise InvalidRequest({"Idempotency-Key": "must be sent once"})
    value = values[0]
    if not _IDEMPOTENCY_KEY.match(value):
        raise InvalidRequest(
            {"Idempotency-Key": "must be 1 to 255 visible ASCII characters"}
        )
    return value


def _created(request: web.Request, run: Run, *, replayed: bool) -> web.Response:
    headers = {"Location": f"/api/runs/{run.id}"}
    if replayed:
        headers["Idempotent-Replayed"] = "true"
    return web.json_response(
        {
            "id": run.id,
            "status": run.status.value,
            "url": f"{_base(request)}/api/runs/{run.id}",
            "rerunOf": run.request.rerun_of,
        },
        status=201,
        headers=headers,
    )


async def _start(
    request: web.Request, key: AuthenticatedKey, body: RunRequest, body_hash: str
) -> web.Response:
    """Store and start a run, once per idempotency key if the caller sent one."""
    run = Run(
        id=new_id("run_"), request=body, status=RunStatus.QUEUED, created_at=time.time()
    )
    db = request.app[DB]
    credential = request.app[ENGINE].admit(run)
    idempotency_key = _idempotency_key(request)
    if idempotency_key is None:
        await db.insert_run(run)
    else:
        stored = await db.insert_run_once(
            run, key_id=key.id, idempotency_key=idempotency_key, body_hash=body_hash
        )
        if stored.body_hash != body_hash:
            raise Unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was already used with a different request;"
                " use a new key for a new run",
            )
        if not stored.created:
            replayed = await db.get_run(stored.run_id)
            assert replayed is not None, "an idempotency key names a stored run"
            log.info("run.replayed", run_id=replayed.id)
            return _created(request, replayed, replayed=True)
    if credential is not None:
        await db.save_credential(run.id, credential)
    structlog.contextvars.bind_contextvars(run_id=run.id)
    log.info("run.created", servers=body.server_count, rerun_of=body.rerun_of)
    request.app[ENGINE].start(run.id)
    return _created(request, run, replayed=False)


def _hash(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@routes.post("/api/runs")
async def create_run(request: web.Request) -> web.Response:
    key = require_scope(request, "runs:trigger")
    data = await read_json(request)
    body = parse_run_body(data, max_server_count=request.app[SETTINGS].max_server_count)
    return await _start(request, key, body, _hash(data))


@routes.get("/api/runs")
async def list_runs(request: web.Request) -> web.Response:
    require_scope(request, "runs:read")
    query = parse_run_query(request.query)
    where = RunFilter(
        statuses=query.status,
        name=query.name,
        commit_sha=query.commit_sha,
        trigger_source=query.trigger_source.value if query.trigger_source else None,
        created_after=query.created_after.timestamp() if query.created_after else None,
        created_before=(
            query.created_before.timestamp() if query.created_before else None
        ),
    )
    before = decode_cursor(query.cursor) if query.cursor else None
    runs = await request.app[DB].list_runs(
        where, before_id=before, limit=query.limit + 1
    )
    page = runs[: query.limit]
    return web.json_response(
        {
            "runs": [run_summary_json(request, run) for run in page],
            "nextCursor": encode_cursor(page[-1].id)
            if len(runs) > query.limit
            else None,
        }
    )


async def _load(request: web.Request) -> Run:
    run = await request.app[DB].get_run(request.match_info["run_id"])
    if run is None:
        raise NotFound(f"no run {request.match_info['run_id']!r}")
    return run


async def _notes(db: Database, run_id: str) -> dict[str, Any]:
    notes = RunNotes(db)
    survey = (await notes.get(run_id, SURVEY)).get("")
    return survey_json(survey, await notes.get(run_id, SETUP))


@routes.get("/api/runs/{run_id}")
async def get_run(request: web.Request) -> web.Response:
    require_scope(request, "runs:read")
    # Imported here: the reports package builds on this module's JSON.
    from controlplane.reports.api import run_record_extras

    run = await _load(request)
    db = request.app[DB]
    body = run_json(
        request,
        run,
        await db.shards(run.id),
        await db.tests_done_by_shard(run.id),
        await _notes(db, run.id),
        await db.instances(run.id),
    )
    return web.json_response({**body, **await run_record_extras(request, run.id)})


@routes.post("/api/runs/{run_id}/cancel")
async def cancel_run(request: web.Request) -> web.Response:
    """Stop a run in flight: its shards stop and its hosts are released."""
    require_scope(request, "runs:trigger")
    run = await _load(request)
    if run.status.finished:
        raise Conflict(f"run {run.id} already finished as {run.status.value}")
    db = request.app[DB]
    if not await request.app[ENGINE].cancel(run.id):
        # XXX: a run in flight in another control plane process cannot be
        # stopped from here; its shards stop when that process sees the
        # cancelled status, which needs the engine to watch for it.
        await db.update_run(
            run.id,
            status=RunStatus.CANCELLED,
            reason="cancelled on request",
            finished_at=time.time(),
        )
    ended = await _load(request)
    if ended.status != RunStatus.CANCELLED:
        raise Conflict(f"run {run.id} finished as {ended.status.value} first")
    log.info("run.cancelled", run_id=run.id)
    return web.json_response(
        run_json(
            request,
            ended,
            await db.shards(run.id),
            await db.tests_done_by_shard(run.id),
            await _notes(db, run.id),
        )
    )


_RERUN_STATUSES = frozenset({TestStatus.FAILED, TestStatus.DID_NOT_RUN})


@routes.post("/api/runs/{run_id}/rerun")
async def rerun(request: web.Request) -> web.Response:
    """Start a new run of only the tests of a finished run that failed."""
    key = require_scope(request, "runs:trigger")
    original = await _load(request)
    if not original.status.finished:
        raise Conflict(
            f"run {original.id} is still {original.status.value};"
            " rerun it once it has finished"
        )
    data = await read_json(request) if await request.read() else {}
    changes = parse_rerun_body(
        data, max_server_count=request.app[SETTINGS].max_server_count
    )
    tests = await request.app[DB].tests(original.id)
    only: list[TestRef] | None = sorted(
        {TestRef(t.file, t.line) for t in tests if t.status in _RERUN_STATUSES},
        key=lambda ref: (ref.file.encode(), ref.line),
    )
    if not only and not tests and original.status != RunStatus.PASSED:
        # It ended before any test was listed (a bad branch, cancelled while
        # queued): all of it again, or the same subset if it was a rerun.
        only = original.request.only
    elif not only:
        raise Conflict(f"run {original.id} has no failed tests to rerun")
    body = attrs.evolve(
        original.request,
        # The same code as the original, even if the branch moved since.
        commit_sha=original.resolved_sha or original.request.commit_sha,
        only=only,
        rerun_of=original.id,
        server_count=changes.server_count or original.request.server_count,
        timeout=changes.timeout or original.request.timeout,
        name=changes.name or original.request.name,
    )
    return await _start(
        request, key, body, _hash({"rerunOf": original.id, "changes": data})
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
async def get_artifact(request: web.Request) -> web.StreamResponse:
    """The artifact itself, or (S3 store) a redirect to a short-lived link."""
    require_scope(request, "runs:read")
    run = await _load(request)
    store = request.app[STORE]
    if isinstance(store, S3ArtifactStore):
        return await _artifact_link(store, f"{run.id}/{request.match_info['key']}")
    try:
        path = store.path_for(f"{run.id}/{request.match_info['key']}")
    except ValueError:
        raise NotFound("no such artifact") from None
    if not path.is_file():
        raise NotFound("no such artifact")
    return web.FileResponse(path)


async def _artifact_link(store: S3ArtifactStore, key: str) -> web.Response:
    try:
        if not await store.exists(key):
            raise NotFound("no such artifact")
        link = await store.link(key)
    except ValueError:
        raise NotFound("no such artifact") from None
    except (ClientError, BotoCoreError) as exc:
        log.warning("artifacts.store_unavailable", error=describe_error(exc))
        return error_body(
            503,
            "store_unavailable",
            f"the artifact store cannot be read now: {describe_error(exc)}",
        )
    # The link is a credential for this one object until it expires.
    return web.Response(
        status=307, headers={"Location": link, "Cache-Control": "no-store"}
    )
