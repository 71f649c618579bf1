"""The body of ``POST /api/schedules``, validated with every flaw named."""

from __future__ import annotations

from typing import Any

import attrs

from controlplane.api.models import parse_run_body
from controlplane.domain import RunRequest, TriggerSource
from controlplane.errors import InvalidRequest
from controlplane.schedules.cron import make_trigger

_FIELDS = frozenset({"name", "cron", "timezone", "paused", "run"})
NAME_MAX = 100


@attrs.frozen(kw_only=True)
class ScheduleDraft:
    """A valid schedule body: the run body as given, and what it means."""

    name: str
    cron: str
    timezone: str
    paused: bool
    run_body: dict[str, Any]
    request: RunRequest


def parse_schedule_body(data: Any, *, max_server_count: int) -> ScheduleDraft:
    """Validate a schedule body; raise InvalidRequest naming every flaw.

    ``run`` is a ``POST /api/runs`` body; its ``triggerSource`` is
    ``schedule`` (the default here) and may not be anything else.
    """
    if not isinstance(data, dict):
        raise InvalidRequest({"body": "must be a JSON object"})
    problems = dict.fromkeys(sorted(set(data) - _FIELDS), "unknown field")
    name = data.get("name")
    if not isinstance(name, str) or not name.strip():
        problems["name"] = "is required: a non-empty string"
    elif len(name) > NAME_MAX:
        problems["name"] = f"is longer than {NAME_MAX} characters"
    cron, timezone = data.get("cron"), data.get("timezone", "UTC")
    if not isinstance(cron, str):
        problems["cron"] = "is required: a cron expression such as '0 3 * * *'"
    if not isinstance(timezone, str):
        problems["timezone"] = "must be a time zone name such as 'Europe/Paris'"
    if isinstance(cron, str) and isinstance(timezone, str):
        try:
            make_trigger(cron, timezone)
        except InvalidRequest as exc:
            problems.update(exc.fields)
    paused = data.get("paused", False)
    if not isinstance(paused, bool):
        problems["paused"] = "must be true or false"
    request = _run_request(data.get("run"), max_server_count, problems)
    if problems or request is None:
        raise InvalidRequest(problems)
    request.trigger_source = TriggerSource.SCHEDULE
    run_body = {**data["run"], "triggerSource": TriggerSource.SCHEDULE.value}
    return ScheduleDraft(
        name=str(name).strip(),
        cron=" ".join(str(cron).split()),
        timezone=str(timezone),
        paused=paused,
        run_body=run_body,
        request=request,
    )


def _run_request(
    run: Any, max_server_count: int, problems: dict[str, str]
) -> RunRequest | None:
    if run is None:
        problems["run"] = "is required: the body of a POST /api/runs"
        return None
    if isinstance(run, dict) and run.get("triggerSource", "schedule") != "schedule":
        problems["run.triggerSource"] = "must be 'schedule' (or left out)"
        return None
    try:
        return parse_run_body(run, max_server_count=max_server_count)
    except InvalidRequest as exc:
        problems.update({f"run.{k}": v for k, v in exc.fields.items()})
        return None
