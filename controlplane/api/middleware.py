"""Request id, authentication and the one place errors become answers."""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestPayloadError

from controlplane.api.appkeys import DB, METRICS
from controlplane.errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    TraceLoomError,
    Unauthorized,
)
from controlplane.logs import get_logger
from controlplane.storage.keys import AuthenticatedKey, authenticate

log = get_logger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

CALLER_KEY: web.RequestKey[AuthenticatedKey] = web.RequestKey("caller")
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/api/openapi.json"})
_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}\Z")


class Unprocessable(TraceLoomError, ValueError):
    """Well-formed, but contradicts what the server already holds (422)."""

    def __init__(self, error: str, message: str) -> None:
        self.error = error
        super().__init__(message)


def error_body(status: int, error: str, message: str, **extra: object) -> web.Response:
    return web.json_response(
        {"error": error, "message": message, **extra}, status=status
    )


def _route(request: web.Request) -> str:
    """The route's template (``/api/runs/{run_id}``): a bounded metric label."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Bind a request id for every log line of this request; log and time it once."""
    offered = request.headers.get("X-Request-Id", "")
    request_id = offered if _REQUEST_ID.match(offered) else secrets.token_hex(8)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        response.headers["X-Request-Id"] = request_id
        return response
    except web.HTTPException as exc:
        status = exc.status
        exc.headers["X-Request-Id"] = request_id
        raise
    finally:
        duration_s = time.perf_counter() - started
        request.app[METRICS].observe_request(
            method=request.method,
            route=_route(request),
            status=status,
            duration_s=duration_s,
        )
        log.info(
            "http.request",
            method=request.method,
            path=request.path,
            status=status,
            duration_ms=round(duration_s * 1000, 1),
        )


@web.middleware
async def errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn domain errors into JSON 4xx; anything unexpected into a plain 500."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        return error_body(exc.status, exc.reason.lower().replace(" ", "_"), exc.reason)
    except asyncio.CancelledError:
        raise
    except InvalidRequest as exc:
        return error_body(
            400, "invalid_request", "the request is not valid", fields=exc.fields
        )
    except (RequestPayloadError, HttpProcessingError):
        # A body that its Content-Encoding cannot decode (a "gzip" that is
        # not), or one cut short: aiohttp raises it while the handler reads.
        return error_body(
            400,
            "invalid_request",
            "the request is not valid",
            fields={"body": "cannot be read as its Content-Encoding says"},
        )
    except Unauthorized as exc:
        response = error_body(401, "unauthorized", str(exc))
        response.headers["WWW-Authenticate"] = 'Bearer realm="traceloom"'
        return response
    except Forbidden as exc:
        return error_body(403, "forbidden", str(exc))
    except NotFound as exc:
        return error_body(404, "not_found", str(exc))
    except Conflict as exc:
        return error_body(409, "conflict", str(exc))
    except Unprocessable as exc:
        return error_body(422, exc.error, str(exc))
    except Exception:
        log.exception("http.unhandled", method=request.method, path=request.path)
        return error_body(500, "internal", "internal error; see the server log")


@web.middleware
async def auth(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Require a valid ``Authorization: Bearer tlk_...`` on every API path.

    Paths outside ``/api/`` are the dashboard's: its own middleware
    (``controlplane.dashboard.auth``) requires a signed-in session there.
    """
    if request.path in PUBLIC_PATHS or not request.path.startswith("/api/"):
        return await handler(request)
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("send an API key as 'Authorization: Bearer tlk_...'")
    key = await authenticate(request.app[DB], secret.strip())
    if key is None:
        raise Unauthorized("the API key is not valid or was revoked")
    request[CALLER_KEY] = key
    return await handler(request)


def require_scope(request: web.Request, scope: str) -> AuthenticatedKey:
    key = request[CALLER_KEY]
    if scope not in key.scopes:
        raise Forbidden(f"this API key lacks the {scope!r} scope")
    return key
