"""The dashboard's schedules page: list, create, pause, resume and delete.

The forms post here (with the session's CSRF token) and go through the
same validation and service as ``/api/schedules``; a refused form comes
back with its values kept and every wrong field named.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from controlplane.api.appkeys import SCHEDULES, SETTINGS
from controlplane.dashboard.auth import require
from controlplane.dashboard.views import render
from controlplane.engine.source import split_credentials
from controlplane.errors import InvalidRequest
from controlplane.schedules.api import SCOPE, shown_body
from controlplane.schedules.models import parse_schedule_body

routes = web.RouteTableDef()
_FORM_FIELDS = (
    "name",
    "cron",
    "timezone",
    "gitRepo",
    "gitBranch",
    "testPattern",
    "serverCount",
    "timeout",
)


async def _page(
    request: web.Request,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> web.Response:
    service = request.app[SCHEDULES]
    rows = []
    for schedule in await service.store.all():
        fires = await service.store.fires(schedule.id, limit=5)
        rows.append(
            {
                "schedule": schedule,
                "body": shown_body(schedule.body),
                "next_fire_at": service.next_fire_at(schedule),
                "fires": fires,
            }
        )
    return render(
        request,
        "schedules.html",
        {
            "rows": rows,
            "form": form or {"timezone": "UTC", "serverCount": "1", "timeout": "600"},
            "errors": errors or {},
            "now": time.time(),
        },
        status=status,
    )


@routes.get("/schedules")
async def schedules_page(request: web.Request) -> web.Response:
    require(request, SCOPE)
    return await _page(request)


def _body_from_form(form: dict[str, str]) -> dict[str, Any]:
    """The API body a form describes; numbers that are not numbers stay text
    so that validation names them."""

    def number(text: str) -> int | str:
        return int(text) if text.strip().isdigit() else text

    run: dict[str, Any] = {
        "testSource": {
            "type": "git",
            "gitRepo": form.get("gitRepo", ""),
            "gitBranch": form.get("gitBranch", ""),
        },
        "testPattern": form.get("testPattern", ""),
        "serverCount": number(form.get("serverCount", "1") or "1"),
        "timeout": number(form.get("timeout", "600") or "600"),
    }
    return {
        "name": form.get("name", ""),
        "cron": form.get("cron", ""),
        "timezone": form.get("timezone", "") or "UTC",
        "run": run,
    }


_FIELD_OF_ERROR = {
    "run.testSource.gitRepo": "gitRepo",
    "run.testSource.gitBranch": "gitBranch",
    "run.testPattern": "testPattern",
    "run.serverCount": "serverCount",
    "run.timeout": "timeout",
}


@routes.post("/schedules")
async def create_schedule(request: web.Request) -> web.Response:
    require(request, SCOPE)
    posted = await request.post()
    form = {name: str(posted.get(name, "")) for name in _FORM_FIELDS}
    try:
        draft = parse_schedule_body(
            _body_from_form(form),
            max_server_count=request.app[SETTINGS].max_server_count,
        )
        await request.app[SCHEDULES].create(draft)
    except InvalidRequest as exc:
        errors = {_FIELD_OF_ERROR.get(k, k): v for k, v in exc.fields.items()}
        # The page shows the form again, but never a password or token the
        # URL held: those must be typed again, as a password field would be.
        try:
            form["gitRepo"], hidden = split_credentials(form["gitRepo"])
        except ValueError:
            # Not a URL that can be read apart: none of it is shown.
            form["gitRepo"], hidden = "", form["gitRepo"]
        if hidden:
            errors.setdefault(
                "gitRepo", "its credentials are not shown again: type them again"
            )
        return await _page(request, form=form, errors=errors, status=400)
    raise web.HTTPSeeOther("/schedules")


@routes.post("/schedules/{schedule_id}/{action:pause|resume|delete}")
async def change_schedule(request: web.Request) -> web.Response:
    require(request, SCOPE)
    service = request.app[SCHEDULES]
    schedule_id = request.match_info["schedule_id"]
    action = request.match_info["action"]
    if action == "delete":
        await service.delete(schedule_id)
    else:
        await service.set_paused(schedule_id, action == "pause")
    raise web.HTTPSeeOther("/schedules")
