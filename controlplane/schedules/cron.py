"""Cron expressions with classic cron's meaning, as APScheduler triggers.

Five fields (minute, hour, day of month, month, day of week), or six with
seconds in front. Days of the week count as in cron: 0 and 7 are Sunday,
1 is Monday, and names (``mon``) work too. APScheduler's own numbering
starts the week on Monday, so the day-of-week field is translated to names
here rather than passed through. Classic cron runs a job when *either* a
restricted day of month or a restricted day of week matches, APScheduler
when both do; rather than pick one silently, an expression that restricts
both is refused.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.triggers.cron import CronTrigger

from controlplane.errors import InvalidRequest

_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_DAY_NUMBERS = {name: number for number, name in enumerate(_DAY_NAMES)}
_FIELD_NAMES = ("minute", "hour", "day", "month", "day_of_week")
_STEP = re.compile(r"(?P<range>[^/]+)(?:/(?P<step>\d+))?\Z")


def _day(token: str) -> int:
    token = token.lower()
    if token in _DAY_NUMBERS:
        return _DAY_NUMBERS[token]
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token) % 7
    raise ValueError(f"{token!r} is not a day of the week (0-7 or sun-sat)")


def weekdays(field: str) -> set[int] | None:
    """The days (0 = Sunday) a cron day-of-week field names; None for ``*``."""
    if field in ("*", "?"):
        return None
    days: set[int] = set()
    for part in field.split(","):
        match = _STEP.match(part)
        if match is None:
            raise ValueError(f"{part!r} is not a day-of-week entry")
        span, step = match["range"], int(match["step"] or 1)
        if step < 1:
            raise ValueError("a step must be at least 1")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-", 1)
            first, last = _day(low), _day(high)
            # 7 is Sunday too: "5-7" is Friday to Sunday.
            if high.strip() == "7":
                last = 7
            if last < first:
                raise ValueError(f"{part!r} runs backwards")
        else:
            first = last = _day(span)
        days.update(day % 7 for day in range(first, last + 1, step))
    return days


def _split(expression: str) -> dict[str, str]:
    fields = expression.split()
    if len(fields) not in (5, 6):
        raise ValueError(
            "must have 5 fields (minute hour day month weekday),"
            " or 6 with seconds first"
        )
    names = ("second", *_FIELD_NAMES) if len(fields) == 6 else _FIELD_NAMES
    return dict(zip(names, fields, strict=True))


def make_trigger(expression: str, timezone: str) -> CronTrigger:
    """An APScheduler trigger for ``expression`` in ``timezone``.

    Raises InvalidRequest naming ``cron`` or ``timezone`` when either is wrong.
    """
    problems: dict[str, str] = {}
    zone = None
    try:
        zone = ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        problems["timezone"] = f"{timezone!r} is not a known time zone (e.g. UTC)"
    try:
        given = _split(expression)
        fields = dict(given)
        days = weekdays(fields["day_of_week"])
        fields["day_of_week"] = (
            "*" if days is None else ",".join(_DAY_NAMES[d] for d in sorted(days))
        )
        fields = {k: "*" if v == "?" else v for k, v in fields.items()}
        # Each field must be valid before their combination is judged.
        trigger = CronTrigger(**fields, timezone=zone or "UTC")
        if given["day"] not in ("*", "?") and given["day_of_week"] not in ("*", "?"):
            raise ValueError(
                "give a day of month or a day of week, not both (cron and"
                " APScheduler disagree on what both would mean)"
            )
        if next_after(trigger, datetime.now(UTC)) is None:
            raise ValueError("never fires (no such day, e.g. 30 February)")
    except ValueError as exc:
        problems["cron"] = str(exc)
    if problems:
        raise InvalidRequest(problems)
    return trigger


def next_after(trigger: CronTrigger, moment: datetime) -> datetime | None:
    """The first slot strictly after ``moment``."""
    return trigger.get_next_fire_time(None, moment + timedelta(microseconds=1))  # type: ignore[no-any-return]


def latest_slot(
    trigger: CronTrigger, *, after: datetime, at_or_before: datetime
) -> datetime | None:
    """The last slot in ``(after, at_or_before]``, or None if there is none.

    Walks slot by slot, so callers bound ``after`` (by the misfire grace).
    """
    found = None
    slot = next_after(trigger, after)
    while slot is not None and slot <= at_or_before:
        found = slot
        slot = next_after(trigger, slot)
    return found
