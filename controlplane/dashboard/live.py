"""Live pages: server-sent events carrying freshly rendered fragments.

While a run (or a listed run) goes, the page's script opens an
``EventSource`` here. Every second the server reads the run from the
database; when anything shown has changed it renders the page's live parts
again and sends them as one ``update`` event (``{"id": html, ...}``). The
database is the only source, so any control plane sharing it can serve the
stream. The stream ends with a ``done`` event once nothing can change any
more, or when the session ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable

import aiohttp_jinja2
from aiohttp import web

from controlplane.api.appkeys import DB, SESSIONS
from controlplane.dashboard import auth, pages, views
from controlplane.dashboard.auth import require

routes = web.RouteTableDef()
# Set when the server shuts down: open streams end instead of holding it up.
STOPPING: web.AppKey[asyncio.Event] = web.AppKey("dashboard_stopping")
POLL_INTERVAL_S = 1.0
KEEPALIVE_S = 15.0
SESSION_CHECK_S = 10.0
# A stream is closed after this long; the page's script opens a new one.
MAX_STREAM_S = 1800.0

Snapshot = tuple[str, dict[str, str], bool]


async def _stream(
    request: web.Request, snapshot: Callable[[], Awaitable[Snapshot]]
) -> web.StreamResponse:
    """Send ``update`` events while ``snapshot`` changes, then ``done``."""
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-store",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    token = request.cookies.get(auth.SESSION_COOKIE, "")
    started = last_sent = last_check = time.monotonic()
    seen = None
    try:
        while time.monotonic() - started < MAX_STREAM_S:
            fingerprint, parts, live = await snapshot()
            if fingerprint != seen:
                await _send(response, "update", json.dumps(parts))
                seen, last_sent = fingerprint, time.monotonic()
            if not live:
                await _send(response, "done", "{}")
                break
            if time.monotonic() - last_sent > KEEPALIVE_S:
                await response.write(b": keepalive\n\n")
                last_sent = time.monotonic()
            if time.monotonic() - last_check > SESSION_CHECK_S:
                if await request.app[SESSIONS].lookup(token) is None:
                    await _send(response, "signedout", "{}")
                    break
                last_check = time.monotonic()
            stopping = request.app[STOPPING]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), POLL_INTERVAL_S)
            if stopping.is_set():
                break
    except (ConnectionResetError, ConnectionError):
        return response
    return response


async def _send(response: web.StreamResponse, event: str, data: str) -> None:
    await response.write(f"event: {event}\ndata: {data}\n\n".encode())


@routes.get("/runs/{run_id}/live")
async def run_live(request: web.Request) -> web.StreamResponse:
    require(request, "runs:read")
    run_id = request.match_info["run_id"]
    await pages.load_run(request.app[DB], run_id)

    async def snapshot() -> Snapshot:
        page = await pages.run_page(request, run_id)
        context = views.run_context(request, page)
        context["session"] = request.get(auth.SESSION_KEY)
        context["request"] = request
        parts = {
            element: aiohttp_jinja2.render_string(template, request, context)
            for element, template in (
                ("run-summary", "parts/run_summary.html"),
                ("run-timeline", "parts/timeline.html"),
                ("run-tests", "parts/tests.html"),
                ("run-notifications", "parts/notifications.html"),
            )
        }
        return page.fingerprint(), parts, page.live

    return await _stream(request, snapshot)


@routes.get("/runs-live")
async def runs_live(request: web.Request) -> web.StreamResponse:
    """The runs list's table, while any run on it is unfinished."""
    require(request, "runs:read")

    async def snapshot() -> Snapshot:
        listing = await views.runs_listing(request)
        runs = listing["runs"]
        fingerprint = json.dumps(
            [(r.id, r.status.value, r.counts.to_json()) for r in runs]
        )
        context = {
            **views.list_context(listing),
            "session": request.get(auth.SESSION_KEY),
            "request": request,
        }
        html = aiohttp_jinja2.render_string("parts/runs_table.html", request, context)
        return fingerprint, {"runs-table": html}, context["live"]

    return await _stream(request, snapshot)


def install(app: web.Application) -> None:
    """The routes, and the shutdown hook that ends open streams."""
    app[STOPPING] = asyncio.Event()

    async def stop_streams(app: web.Application) -> None:
        app[STOPPING].set()

    app.on_shutdown.append(stop_streams)
    app.router.add_routes(routes)
