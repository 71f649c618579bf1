"""``/api/schedules``: create, list, pause, resume and delete cron schedules.

Every endpoint needs the ``schedules:manage`` scope.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from controlplane.api.appkeys import SCHEDULES, SETTINGS
from controlplane.api.middleware import require_scope
from controlplane.api.runs import base_url, iso, read_json
from controlplane.logs import redact_text
from controlplane.schedules.models import parse_schedule_body
from controlplane.schedules.service import ScheduleService
from controlplane.schedules.store import Fire, Schedule

routes = web.RouteTableDef()
SCOPE = "schedules:manage"


def shown_body(body: dict[str, Any]) -> dict[str, Any]:
    """The stored run body, with anything secret-looking in the URL redacted."""
    source = dict(body.get("testSource", {}))
    if "gitRepo" in source:
        source["gitRepo"] = redact_text(str(source["gitRepo"]))
    return {**body, "testSource": source}


def fire_json(request: web.Request, fire: Fire) -> dict[str, Any]:
    return {
        "slotAt": iso(fire.slot_at),
        "outcome": fire.outcome.value,
        "runId": fire.run_id,
        "runUrl": f"{base_url(request)}/api/runs/{fire.run_id}"
        if fire.run_id
        else None,
        "recordedAt": iso(fire.recorded_at),
        "detail": fire.detail,
    }


async def schedule_json(
    request: web.Request, service: ScheduleService, schedule: Schedule
) -> dict[str, Any]:
    fires = await service.store.fires(schedule.id, limit=10)
    return {
        "id": schedule.id,
        "name": schedule.name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "paused": schedule.paused,
        "run": shown_body(schedule.body),
        "createdAt": iso(schedule.created_at),
        "updatedAt": iso(schedule.updated_at),
        "nextFireAt": iso(service.next_fire_at(schedule)),
        "url": f"{base_url(request)}/api/schedules/{schedule.id}",
        "recentSlots": [fire_json(request, f) for f in fires],
    }


@routes.post("/api/schedules")
async def create(request: web.Request) -> web.Response:
    require_scope(request, SCOPE)
    service = request.app[SCHEDULES]
    draft = parse_schedule_body(
        await read_json(request),
        max_server_count=request.app[SETTINGS].max_server_count,
    )
    schedule = await service.create(draft)
    return web.json_response(
        await schedule_json(request, service, schedule),
        status=201,
        headers={"Location": f"/api/schedules/{schedule.id}"},
    )


@routes.get("/api/schedules")
async def list_schedules(request: web.Request) -> web.Response:
    require_scope(request, SCOPE)
    service = request.app[SCHEDULES]
    schedules = await service.store.all()
    return web.json_response(
        {"schedules": [await schedule_json(request, service, s) for s in schedules]}
    )


@routes.get("/api/schedules/{schedule_id}")
async def get(request: web.Request) -> web.Response:
    require_scope(request, SCOPE)
    service = request.app[SCHEDULES]
    schedule = await service.get(request.match_info["schedule_id"])
    return web.json_response(await schedule_json(request, service, schedule))


async def _set_paused(request: web.Request, paused: bool) -> web.Response:
    require_scope(request, SCOPE)
    service = request.app[SCHEDULES]
    schedule = await service.set_paused(request.match_info["schedule_id"], paused)
    return web.json_response(await schedule_json(request, service, schedule))


@routes.post("/api/schedules/{schedule_id}/pause")
async def pause(request: web.Request) -> web.Response:
    return await _set_paused(request, True)


@routes.post("/api/schedules/{schedule_id}/resume")
async def resume(request: web.Request) -> web.Response:
    return await _set_paused(request, False)


@routes.delete("/api/schedules/{schedule_id}")
async def delete(request: web.Request) -> web.Response:
    require_scope(request, SCOPE)
    await request.app[SCHEDULES].delete(request.match_info["schedule_id"])
    return web.Response(status=204)
