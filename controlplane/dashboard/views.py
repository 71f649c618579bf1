"""The dashboard's pages: sign-in, runs, a run, a test's history, artifacts.

Server-rendered with Jinja2; the only script is ``static/dashboard.js``,
which follows server-sent events while a run goes and swaps in the
fragments the server renders.
"""

from __future__ import annotations

import time
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from controlplane.api.appkeys import DB, SESSIONS, STORE
from controlplane.api.models import decode_cursor, encode_cursor, parse_run_query
from controlplane.api.runs import run_summary_json
from controlplane.api.runs import test_json as api_test_json
from controlplane.dashboard import auth, charts, pages
from controlplane.dashboard.auth import SESSION_KEY, require
from controlplane.domain import RunStatus, TriggerSource
from controlplane.errors import InvalidRequest, NotFound
from controlplane.logs import get_logger
from controlplane.reports.junit import junit_bytes
from controlplane.reports.store import ReportStore
from controlplane.storage import access
from controlplane.storage.db import RunFilter

log = get_logger(__name__)
routes = web.RouteTableDef()
PAGE_SIZE = 25


def render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    """A page, with the signed-in session for the header and forms."""
    response = aiohttp_jinja2.render_template(
        template,
        request,
        {
            "session": request.get(SESSION_KEY),
            "path": request.path,
            "request": request,
            **context,
        },
        status=status,
    )
    response.headers["Cache-Control"] = "no-store"
    return response


# -- signing in and out --------------------------------------------------------


@routes.get("/")
async def home(_request: web.Request) -> web.Response:
    raise web.HTTPSeeOther("/runs")


@routes.get("/login")
async def login_page(request: web.Request) -> web.Response:
    session = await request.app[SESSIONS].lookup(
        request.cookies.get(auth.SESSION_COOKIE, "")
    )
    target = auth.safe_next(request.query.get("next"))
    if session is not None:
        raise web.HTTPSeeOther(target)
    return _login_form(request, target, error=None, status=200)


def _login_form(
    request: web.Request, target: str, *, error: str | None, status: int
) -> web.Response:
    token = auth.new_login_token()
    response = render(
        request,
        "login.html",
        {
            "next": target,
            "error": error,
            "login_token": token,
            "password_enabled": request.app[SESSIONS].password_enabled,
        },
        status=status,
    )
    auth.set_login_cookie(request, response, token)
    return response


@routes.post("/login")
async def login(request: web.Request) -> web.Response:
    form = await request.post()
    target = auth.safe_next(str(form.get("next", "")))
    if not auth.login_token_ok(request, str(form.get("login_token", ""))):
        return _login_form(
            request, target, error="The form expired; try again.", status=403
        )
    sessions = request.app[SESSIONS]
    secret = str(form.get("api_key", "")).strip()
    password = str(form.get("password", ""))
    new = None
    if secret:
        new = await sessions.sign_in_with_key(secret)
    elif password and sessions.password_enabled:
        new = await sessions.sign_in_with_password(password)
    if new is None:
        log.warning("dashboard.sign_in_refused", method="key" if secret else "password")
        await auth.failed_sign_in_pause()
        return _login_form(
            request, target, error="That key or password is not valid.", status=401
        )
    log.info("dashboard.signed_in", subject=new.session.subject)
    response = web.HTTPSeeOther(target)
    auth.set_session_cookie(request, response, new)
    response.del_cookie(auth.LOGIN_COOKIE, path="/login")
    raise response


@routes.post("/logout")
async def logout(request: web.Request) -> web.Response:
    await request.app[SESSIONS].sign_out(request.cookies.get(auth.SESSION_COOKIE, ""))
    response = web.HTTPSeeOther("/login")
    response.del_cookie(auth.SESSION_COOKIE, path="/")
    raise response


# -- runs ------------------------------------------------------------------------

_LIST_FILTERS = ("status", "name", "commitSha", "triggerSource", "cursor")


async def runs_listing(request: web.Request) -> dict[str, Any]:
    """The runs the list's filters select, one page, and the next cursor."""
    query = {k: v for k, v in request.query.items() if k in _LIST_FILTERS and v}
    try:
        parsed = parse_run_query({**query, "limit": str(PAGE_SIZE)})
    except InvalidRequest as exc:
        return {"runs": [], "next": None, "filters": query, "errors": exc.fields}
    where = RunFilter(
        statuses=parsed.status,
        name=parsed.name,
        commit_sha=parsed.commit_sha,
        trigger_source=parsed.trigger_source.value if parsed.trigger_source else None,
    )
    before = decode_cursor(parsed.cursor) if parsed.cursor else None
    found = await request.app[DB].list_runs(
        where, before_id=before, limit=PAGE_SIZE + 1
    )
    page = found[:PAGE_SIZE]
    more = encode_cursor(page[-1].id) if len(found) > PAGE_SIZE else None
    return {"runs": page, "next": more, "filters": query, "errors": {}}


def list_context(listing: dict[str, Any]) -> dict[str, Any]:
    return {
        **listing,
        "statuses": [s.value for s in RunStatus],
        "triggers": [t.value for t in TriggerSource],
        "live": any(not r.status.finished for r in listing["runs"]),
        "now": time.time(),
    }


@routes.get("/runs")
async def runs_page(request: web.Request) -> web.Response:
    require(request, "runs:read")
    return render(request, "runs.html", list_context(await runs_listing(request)))


@routes.get("/runs/{run_id}")
async def run_page(request: web.Request) -> web.Response:
    require(request, "runs:read")
    page = await pages.run_page(request, request.match_info["run_id"])
    return render(request, "run.html", run_context(request, page))


def run_context(request: web.Request, page: pages.RunPage) -> dict[str, Any]:
    show = request.query.get("show", "all")
    if show not in pages.TEST_FILTERS:
        show = "all"
    tests = [t for t in page.tests if show == "all" or t.status.value == show]
    return {
        "page": page,
        "run": page.run,
        "tests": tests,
        "show": show,
        "filters": pages.TEST_FILTERS,
        "traces": {
            t.test_id: pages.trace_viewer_url(request, page.run.id, page.report, t)
            for t in tests
        },
        "shots": {
            t.test_id: [pages.artifact_url(page.run.id, k) for k in t.screenshots]
            for t in tests
        },
        "commit": pages.commit_of(page.run),
        "repo": pages.repo_of(page.run),
        "now": time.time(),
    }


@routes.get("/runs/{run_id}/tests/{test_id}")
async def test_page(request: web.Request) -> web.Response:
    require(request, "runs:read")
    db = request.app[DB]
    run = await pages.load_run(db, request.match_info["run_id"])
    test_id = request.match_info["test_id"]
    result = next((t for t in await db.tests(run.id) if t.test_id == test_id), None)
    if result is None:
        raise NotFound(f"run {run.id} has no test {test_id!r}")
    history = await pages.history_of(db, run, test_id, limit=30)
    samples = [
        (e.run_id, e.created_at, e.duration_ms, e.status)
        for e in reversed(history.entries)
        if e.status != "didNotRun"
    ]
    report = await ReportStore(db).get(run.id)
    return render(
        request,
        "test.html",
        {
            "run": run,
            "test": result,
            "history": history,
            "trend": charts.duration_trend(samples),
            "trace": pages.trace_viewer_url(request, run.id, report, result),
            "shots": [pages.artifact_url(run.id, k) for k in result.screenshots],
        },
    )


@routes.get("/runs/{run_id}/junit.xml")
async def junit(request: web.Request) -> web.Response:
    require(request, "runs:read")
    document = await junit_document(request, request.match_info["run_id"])
    return web.Response(
        body=document,
        content_type="application/xml",
        headers={
            "Content-Disposition": (
                f'attachment; filename="{request.match_info["run_id"]}-junit.xml"'
            )
        },
    )


async def junit_document(request: web.Request, run_id: str) -> bytes:
    """The run's JUnit XML, from the same JSON the API answers with."""
    db = request.app[DB]
    run = await pages.load_run(db, run_id)
    tests = [api_test_json(request, t) for t in await db.tests(run.id)]
    return junit_bytes(run_summary_json(request, run), tests)


# -- artifacts and the merged report ---------------------------------------------


@routes.get("/runs/{run_id}/artifacts/{key:.+}")
async def artifact(request: web.Request) -> web.StreamResponse:
    require(request, "runs:read")
    run = await pages.load_run(request.app[DB], request.match_info["run_id"])
    return await access.respond(
        request,
        request.app[STORE],
        f"{run.id}/{request.match_info['key']}",
        # A test's attachment may be any file (even HTML): never let it run.
        headers={"Content-Security-Policy": "sandbox"},
    )


@routes.get("/runs/{run_id}/report")
async def report_root(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently(f"/runs/{request.match_info['run_id']}/report/")


@routes.get("/runs/{run_id}/report/{path:.*}")
async def report_file(request: web.Request) -> web.StreamResponse:
    """The merged Playwright report, its trace viewer and its data."""
    require(request, "runs:read")
    run = await pages.load_run(request.app[DB], request.match_info["run_id"])
    path = request.match_info["path"] or "index.html"
    if path.endswith("/"):
        path += "index.html"
    # XXX: the report shares the dashboard's origin (its trace viewer needs
    # a service worker here); serving reports from a separate artifacts
    # origin would keep a hostile suite's attachments away from sessions.
    return await access.respond(
        request,
        request.app[STORE],
        f"{run.id}/report/{path}",
        headers={
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "SAMEORIGIN",
            "Cache-Control": "private, max-age=300",
        },
    )
