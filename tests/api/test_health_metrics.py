"""Liveness, readiness, Prometheus metrics and the OpenAPI document."""

from __future__ import annotations

import shutil
import time
from typing import Any

from aiohttp.test_utils import TestClient

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB, METRICS
from controlplane.dashboard.auth import is_dashboard_path
from controlplane.domain import GitSource, Run, RunRequest, RunStatus, Shard, new_id
from controlplane.settings import Settings

BODY = {
    "testSource": {"type": "git", "gitRepo": "/nonexistent", "gitBranch": "main"},
    "testPattern": "tests/**/*.spec.ts",
}


def _sample(text: str, name: str) -> float:
    """The value of the sample line ``name`` (with its labels) in ``text``."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no sample {name} in the metrics")


async def test_probes_and_documents_need_no_key(client: TestClient[Any, Any]) -> None:
    """Load balancers, Prometheus and API clients reach these without a key."""
    for path in ("/healthz", "/readyz", "/metrics", "/api/openapi.json"):
        response = await client.get(path)

        assert response.status == 200, path


async def test_ready_when_database_and_store_answer(
    client: TestClient[Any, Any],
) -> None:
    """Readiness names each check."""
    response = await client.get("/readyz")

    assert await response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "artifactStore": "ok"},
    }


async def test_not_ready_when_the_store_is_gone(
    client: TestClient[Any, Any], settings: Settings
) -> None:
    """A missing artifact folder makes readiness 503, liveness stays 200."""
    shutil.rmtree(settings.artifacts_dir)
    settings.artifacts_dir.write_text("not a folder")

    ready = await client.get("/readyz")
    live = await client.get("/healthz")

    assert ready.status == 503
    assert (await ready.json())["checks"]["artifactStore"] != "ok"
    assert live.status == 200


async def test_not_ready_when_the_database_is_closed(
    client: TestClient[Any, Any],
) -> None:
    """A database that does not answer makes readiness 503."""
    # Closing the connection is the nearest real failure we can cause here.
    await client.app[DB]._conn.close()

    response = await client.get("/readyz")

    assert response.status == 503
    assert (await response.json())["checks"]["database"] == "unreachable"


async def test_metrics_count_runs_by_status_and_running_shards(
    client: TestClient[Any, Any],
) -> None:
    """Gauges read the database: runs per status, shards running now."""
    db = client.app[DB]
    run = Run(
        id=new_id("run_"),
        request=RunRequest(
            test_source=GitSource(git_repo="/r", git_branch="main"),
            test_pattern="*.ts",
        ),
        status=RunStatus.RUNNING,
        created_at=time.time(),
    )
    await db.insert_run(run)
    await db.insert_shards([Shard(run_id=run.id, index=i, files=[]) for i in (0, 1)])
    await db.update_shard(run.id, 0, status="running")

    text = await (await client.get("/metrics")).text()

    assert _sample(text, 'traceloom_runs{status="running"}') == 1
    assert _sample(text, 'traceloom_runs{status="passed"}') == 0
    assert _sample(text, "traceloom_shards_running") == 1


async def test_metrics_time_api_requests_by_route(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """The latency histogram counts requests under their route template."""
    for _ in range(3):
        await client.get("/api/runs/run_nope", headers=auth)
    await client.post("/api/runs", json=BODY, headers=auth)

    text = await (await client.get("/metrics")).text()

    read = 'method="GET",route="/api/runs/{run_id}",status="404"'
    create = 'method="POST",route="/api/runs",status="201"'
    assert (
        _sample(text, f"traceloom_http_request_duration_seconds_count{{{read}}}") == 3
    )
    assert (
        _sample(text, f"traceloom_http_request_duration_seconds_count{{{create}}}") == 1
    )


async def test_every_app_has_its_own_registry(
    client: TestClient[Any, Any], auth: dict[str, str], settings: Settings
) -> None:
    """Two apps in one process neither share nor clash on their metrics."""
    other = make_app(settings=settings)

    await client.get("/api/runs", headers=auth)

    mine = client.app[METRICS].render().decode()
    theirs = other[METRICS].render().decode()
    assert 'route="/api/runs"' in mine
    assert 'route="/api/runs"' not in theirs


async def test_openapi_document_is_3_1_and_names_every_route(
    client: TestClient[Any, Any],
) -> None:
    """The served document covers every route the API has.

    The dashboard's pages (every path outside ``/api/`` but the probes) are
    HTML for browsers with a session, not part of the API.
    """
    document = await (await client.get("/api/openapi.json")).json()
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in client.app.router.routes()
        if route.resource is not None
        and route.method != "HEAD"
        and not is_dashboard_path(route.resource.canonical)
    }
    documented = {
        (method, path)
        for path, operations in document["paths"].items()
        for method in operations
    }

    assert document["openapi"] == "3.1.0"
    assert documented == served
    assert (
        document["components"]["schemas"]["RunRequest"]["properties"]["serverCount"][
            "maximum"
        ]
        == 4
    )
