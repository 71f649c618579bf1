"""Probes and metrics: ``/healthz``, ``/readyz``, ``/metrics``, the OpenAPI doc."""

from __future__ import annotations

import asyncio

from aiohttp import web

from controlplane.api.appkeys import DB, METRICS, SETTINGS, STORE
from controlplane.api.openapi import document
from controlplane.logs import get_logger
from controlplane.metrics import CONTENT_TYPE

log = get_logger(__name__)
routes = web.RouteTableDef()


@routes.get("/healthz")
async def healthz(_request: web.Request) -> web.Response:
    """Liveness: the process answers."""
    return web.json_response({"status": "ok"})


@routes.get("/readyz")
async def readyz(request: web.Request) -> web.Response:
    """Readiness: the database answers and the artifact store is writable."""
    checks = {"database": "ok", "artifactStore": "ok"}
    try:
        await asyncio.wait_for(request.app[DB].ping(), timeout=5)
    except Exception as exc:  # any failure means not ready; logged, not leaked
        log.warning("ready.database_failed", error=repr(exc))
        checks["database"] = "unreachable"
    problem = await request.app[STORE].check()
    if problem is not None:
        log.warning("ready.store_failed", problem=problem)
        checks["artifactStore"] = problem
    ready = all(value == "ok" for value in checks.values())
    return web.json_response(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status=200 if ready else 503,
    )


@routes.get("/metrics")
async def metrics(request: web.Request) -> web.Response:
    """Prometheus text format: runs by status, shards running, API latency."""
    collected = request.app[METRICS]
    await collected.refresh(request.app[DB])
    response = web.Response(body=collected.render())
    response.headers["Content-Type"] = CONTENT_TYPE
    return response


@routes.get("/api/openapi.json")
async def openapi(request: web.Request) -> web.Response:
    return web.json_response(
        document(max_server_count=request.app[SETTINGS].max_server_count)
    )
