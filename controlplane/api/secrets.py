"""``/api/secrets``: set, list and delete secrets (scope ``secrets:manage``).

A value goes in and never comes out: answers hold names, scopes and times.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controlplane.api.appkeys import SECRETS
from controlplane.api.middleware import require_scope
from controlplane.api.runs import iso, read_json
from controlplane.errors import InvalidRequest, NotFound
from controlplane.logs import get_logger
from controlplane.storage.secrets import GLOBAL_SCOPE, SecretRecord, check_name

log = get_logger(__name__)
routes = web.RouteTableDef()
_SCOPE_MAX_CHARS = 2048


def secret_json(record: SecretRecord) -> dict[str, Any]:
    """A secret as the API shows it: never its value."""
    return {
        "name": record.name,
        "scope": record.scope,
        "createdAt": iso(record.created_at),
        "updatedAt": iso(record.updated_at),
    }


def _scope(value: Any, field: str, problems: dict[str, str]) -> str:
    if value is None:
        return GLOBAL_SCOPE
    if not isinstance(value, str) or not value.strip():
        problems[field] = "must be '*' or a repository URL"
        return GLOBAL_SCOPE
    if len(value) > _SCOPE_MAX_CHARS:
        problems[field] = f"must be at most {_SCOPE_MAX_CHARS} characters"
    return value


def parse_secret_body(data: Any) -> tuple[str, str]:
    """``(value, scope)`` of a PUT body; InvalidRequest naming every flaw."""
    if not isinstance(data, dict):
        raise InvalidRequest({"body": "must be a JSON object"})
    problems = {
        k: "is not a field of this body" for k in data if k not in ("value", "scope")
    }
    value = data.get("value")
    if not isinstance(value, str):
        problems["value"] = "is required and must be a string"
    scope = _scope(data.get("scope"), "scope", problems)
    if problems:
        raise InvalidRequest(problems)
    assert isinstance(value, str)
    return value, scope


@routes.put("/api/secrets/{name}")
async def put_secret(request: web.Request) -> web.Response:
    """Set a secret's value for a scope; answers its record, never the value."""
    caller = require_scope(request, "secrets:manage")
    name = request.match_info["name"]
    check_name(name)
    value, scope = parse_secret_body(await read_json(request))
    record, created = await request.app[SECRETS].put(name, scope, value)
    log.info("secret.set", name=name, scope=record.scope, by_key=caller.id)
    return web.json_response(secret_json(record), status=201 if created else 200)


@routes.get("/api/secrets")
async def list_secrets(request: web.Request) -> web.Response:
    require_scope(request, "secrets:manage")
    records = await request.app[SECRETS].list()
    return web.json_response({"secrets": [secret_json(r) for r in records]})


@routes.delete("/api/secrets/{name}")
async def delete_secret(request: web.Request) -> web.Response:
    """Delete a secret of a scope (``?scope=``, default ``*``)."""
    caller = require_scope(request, "secrets:manage")
    name = request.match_info["name"]
    check_name(name)
    problems: dict[str, str] = {}
    scope = _scope(request.query.get("scope"), "scope", problems)
    if problems:
        raise InvalidRequest(problems)
    if not await request.app[SECRETS].delete(name, scope):
        raise NotFound(f"no secret {name!r} with scope {scope!r}")
    log.info("secret.deleted", name=name, scope=scope, by_key=caller.id)
    return web.Response(status=204)
