"""Signing in to the dashboard, and the middleware that guards its paths.

Every path outside ``/api/`` belongs to the dashboard and needs a live
session, except the sign-in page, its stylesheet and script, and the
probes. Signed out, a page request is sent to sign in and anything else
gets 401: no page, artifact or report is served to anyone signed out.
Forms that change state carry the session's CSRF token and must come from
this origin; the sign-in form uses a token of its own in a cookie.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

import aiohttp_jinja2
from aiohttp import web

from controlplane.api.appkeys import SESSIONS, SETTINGS
from controlplane.api.middleware import PUBLIC_PATHS
from controlplane.dashboard.sessions import NewSession, Session
from controlplane.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    TraceLoomError,
)
from controlplane.logs import get_logger

log = get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

SESSION_COOKIE = "traceloom_session"
LOGIN_COOKIE = "traceloom_login"
SESSION_KEY: web.RequestKey[Session] = web.RequestKey("dashboard_session")
SIGNED_OUT_PATHS = frozenset(
    {"/login", "/static/dashboard.css", "/static/dashboard.js"}
)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# Pages get a strict policy; the merged report is Playwright's own page and
# needs its inline scripts, so it is left out (see report_headers).
PAGE_CSP = (
    "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self';"
    " connect-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'"
)
_FAILED_SIGN_IN_DELAY_S = 1.0


def is_dashboard_path(path: str) -> bool:
    return not path.startswith("/api/") and path not in PUBLIC_PATHS


def secure_cookies(request: web.Request) -> bool:
    """Cookies are Secure whenever the dashboard is reached over HTTPS."""
    public = request.app[SETTINGS].public_url
    return request.secure or public.startswith("https://")


def _same_origin(request: web.Request) -> bool:
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        # Browsers send Origin on every cross-site POST; no Origin means a
        # same-site form of an older browser or a non-browser client, which
        # the CSRF token still guards.
        return origin is None
    allowed = {request.host}
    public = request.app[SETTINGS].public_url
    if public:
        allowed.add(urlsplit(public).netloc)
    return urlsplit(origin).netloc in allowed


async def check_csrf(request: web.Request, session: Session) -> None:
    """Refuse a state-changing request without the session's CSRF token."""
    form = await request.post()
    offered = str(form.get("csrf", "")) or request.headers.get("X-CSRF-Token", "")
    if not _same_origin(request) or not hmac.compare_digest(
        offered.encode(), session.csrf_token.encode()
    ):
        raise Forbidden("this form is out of date or not from this dashboard; reload")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a path on this site, never elsewhere."""
    if not target or not target.startswith("/") or target.startswith("//"):
        return "/runs"
    if "\\" in target:
        return "/runs"
    return target


@web.middleware
async def dashboard_auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a live session on dashboard paths; errors there become pages."""
    if not is_dashboard_path(request.path):
        return await handler(request)
    try:
        if request.path not in SIGNED_OUT_PATHS:
            token = request.cookies.get(SESSION_COOKIE, "")
            session = await request.app[SESSIONS].lookup(token)
            if session is None:
                return _signed_out(request)
            request[SESSION_KEY] = session
            if request.method not in _SAFE_METHODS:
                await check_csrf(request, session)
        response = await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or request.get(SESSION_KEY) is None:
            raise
        return _page_for(request, exc.status, exc.reason)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        return _error_page(request, exc)
    if request.path.startswith("/runs/") and "/report/" in request.path:
        return response
    response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("Referrer-Policy", "same-origin")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    return response


def _signed_out(request: web.Request) -> web.StreamResponse:
    wants_page = request.method == "GET" and "text/html" in request.headers.get(
        "Accept", ""
    )
    if wants_page:
        raise web.HTTPSeeOther(f"/login?next={quote(request.path_qs, safe='')}")
    return web.Response(
        status=401, text="sign in at /login first\n", content_type="text/plain"
    )


_STATUS = {NotFound: 404, Forbidden: 403, Conflict: 409, InvalidRequest: 400}


def _error_page(request: web.Request, exc: Exception) -> web.Response:
    status = next((code for kind, code in _STATUS.items() if isinstance(exc, kind)), 0)
    if status == 0 or not isinstance(exc, TraceLoomError):
        log.exception("dashboard.unhandled", path=request.path)
        return _page_for(request, 500, "internal error; see the server log")
    return _page_for(request, status, str(exc))


def _page_for(request: web.Request, status: int, message: str) -> web.Response:
    response = aiohttp_jinja2.render_template(
        "error.html",
        request,
        {
            "status": status,
            "message": message,
            "session": request.get(SESSION_KEY),
            "path": request.path,
        },
        status=status,
    )
    response.headers["Content-Security-Policy"] = PAGE_CSP
    return response


def set_session_cookie(
    request: web.Request, response: web.StreamResponse, new: NewSession
) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        new.token,
        max_age=int(request.app[SESSIONS].ttl_s),
        path="/",
        httponly=True,
        samesite="Lax",
        secure=secure_cookies(request),
    )


def new_login_token() -> str:
    """A token for one sign-in form; it goes in the form and in a cookie."""
    return secrets.token_urlsafe(24)


def set_login_cookie(
    request: web.Request, response: web.StreamResponse, token: str
) -> None:
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        max_age=1800,
        path="/login",
        httponly=True,
        samesite="Strict",
        secure=secure_cookies(request),
    )


def login_token_ok(request: web.Request, offered: str) -> bool:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    return (
        bool(expected)
        and _same_origin(request)
        and hmac.compare_digest(offered.encode(), expected.encode())
    )


async def failed_sign_in_pause() -> None:
    """Slow down guessing: every refused sign-in answers a second late."""
    await asyncio.sleep(_FAILED_SIGN_IN_DELAY_S)


def require(request: web.Request, scope: str) -> Session:
    """The session, if it holds ``scope``; else Forbidden."""
    session = request[SESSION_KEY]
    if scope not in session.scopes:
        raise Forbidden(f"signed in as {session.subject}, without the {scope!r} scope")
    return session
