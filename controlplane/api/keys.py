"""``/api/keys``: create, list and revoke API keys (scope ``keys:manage``)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controlplane.api.appkeys import DB
from controlplane.api.middleware import require_scope
from controlplane.api.models import parse_key_body
from controlplane.api.runs import iso, read_json
from controlplane.errors import Forbidden, NotFound
from controlplane.logs import get_logger
from controlplane.storage.db import KeyRecord
from controlplane.storage.keys import issue_key

log = get_logger(__name__)
routes = web.RouteTableDef()


def key_json(record: KeyRecord) -> dict[str, Any]:
    """A key as the API shows it: never the secret, which is not even stored."""
    return {
        "id": record.id,
        "name": record.name,
        "prefix": f"tlk_{record.prefix}",
        "scopes": record.scopes,
        "createdAt": iso(record.created_at),
        "lastUsedAt": iso(record.last_used_at),
        "revokedAt": iso(record.revoked_at),
    }


@routes.post("/api/keys")
async def create(request: web.Request) -> web.Response:
    caller = require_scope(request, "keys:manage")
    body = parse_key_body(await read_json(request))
    beyond = sorted(set(body.scopes) - caller.scopes)
    if beyond:
        raise Forbidden(
            f"a key can only grant scopes it holds itself; missing {', '.join(beyond)}"
        )
    issued = await issue_key(request.app[DB], name=body.name, scopes=tuple(body.scopes))
    log.info("key.created", key_id=issued.record.id, by_key=caller.id)
    return web.json_response(
        {**key_json(issued.record), "key": issued.secret}, status=201
    )


@routes.get("/api/keys")
async def list_keys(request: web.Request) -> web.Response:
    require_scope(request, "keys:manage")
    records = await request.app[DB].list_keys()
    return web.json_response({"keys": [key_json(r) for r in records]})


@routes.post("/api/keys/{key_id}/revoke")
async def revoke(request: web.Request) -> web.Response:
    """Revoke a key at once; revoking it again keeps the first time."""
    caller = require_scope(request, "keys:manage")
    record = await request.app[DB].revoke_key(request.match_info["key_id"])
    if record is None:
        raise NotFound(f"no key {request.match_info['key_id']!r}")
    log.info("key.revoked", key_id=record.id, by_key=caller.id)
    return web.json_response(key_json(record))
