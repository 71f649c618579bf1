"""Cron expressions keep classic cron's meaning on top of APScheduler."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from controlplane.errors import InvalidRequest
from controlplane.schedules.cron import latest_slot, make_trigger, next_after, weekdays

FRIDAY_NOON = datetime(2026, 1, 2, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("field", "days"),
    [
        ("*", None),
        ("0", {0}),
        ("7", {0}),
        ("1-5", {1, 2, 3, 4, 5}),
        ("5-7", {5, 6, 0}),
        ("mon,wed,FRI", {1, 3, 5}),
        ("*/2", {0, 2, 4, 6}),
        ("1-5/2", {1, 3, 5}),
        ("sun-tue", {0, 1, 2}),
    ],
)
def test_weekdays_count_from_sunday_as_cron_does(
    field: str, days: set[int] | None
) -> None:
    """0 and 7 are Sunday, 1 is Monday, names and steps work."""
    assert weekdays(field) == days


@pytest.mark.parametrize(
    ("cron", "expected"),
    [
        ("0 9 * * 1-5", [(1, 5, 9, 0), (1, 6, 9, 0)]),  # Monday, Tuesday
        ("30 2 * * 0", [(1, 4, 2, 30), (1, 11, 2, 30)]),  # Sundays
        ("0 0 1 * *", [(2, 1, 0, 0), (3, 1, 0, 0)]),
        ("15 */6 * * *", [(1, 2, 12, 15), (1, 2, 18, 15)]),
    ],
)
def test_slots_follow_the_expression(
    cron: str, expected: list[tuple[int, int, int, int]]
) -> None:
    """The next slots after Friday 2 January 2026 at noon, in UTC."""
    trigger = make_trigger(cron, "UTC")
    slots = []
    moment = FRIDAY_NOON

    for _ in expected:
        slot = next_after(trigger, moment)
        assert slot is not None
        slots.append((slot.month, slot.day, slot.hour, slot.minute))
        moment = slot

    assert slots == expected


def test_a_time_zone_moves_the_slot() -> None:
    """9:00 in Paris is 8:00 UTC in winter."""
    slot = next_after(make_trigger("0 9 * * *", "Europe/Paris"), FRIDAY_NOON)

    assert slot is not None
    assert slot.astimezone(UTC).hour == 8


def test_six_fields_put_seconds_first() -> None:
    """``*/15 * * * * *`` fires every 15 seconds."""
    trigger = make_trigger("*/15 * * * * *", "UTC")

    first = next_after(trigger, FRIDAY_NOON)

    assert first == datetime(2026, 1, 2, 12, 0, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cron", "zone", "field"),
    [
        ("* * *", "UTC", "cron"),
        ("60 * * * *", "UTC", "cron"),
        ("0 3 1 * 1", "UTC", "cron"),
        ("0 3 * * 8", "UTC", "cron"),
        ("0 3 * * 5-1", "UTC", "cron"),
        ("0 3 * * *", "Nowhere/Land", "timezone"),
    ],
)
def test_wrong_expressions_name_their_field(cron: str, zone: str, field: str) -> None:
    """A wrong cron or zone is an InvalidRequest naming it."""
    with pytest.raises(InvalidRequest) as caught:
        make_trigger(cron, zone)

    assert field in caught.value.fields


def test_latest_slot_is_the_last_one_in_the_window() -> None:
    """Of the slots in (after, at_or_before], the last; None when there is none."""
    trigger = make_trigger("*/10 * * * * *", "UTC")
    after = FRIDAY_NOON

    latest = latest_slot(
        trigger, after=after, at_or_before=datetime(2026, 1, 2, 12, 0, 35, tzinfo=UTC)
    )
    none = latest_slot(
        trigger, after=after, at_or_before=datetime(2026, 1, 2, 12, 0, 5, tzinfo=UTC)
    )

    assert latest == datetime(2026, 1, 2, 12, 0, 30, tzinfo=UTC)
    assert none is None


@pytest.mark.parametrize(
    ("cron", "reason"),
    [
        ("0 0 30 2 *", "never fires"),
        ("0 0 31 4 *", "never fires"),
        ("a b c d e", "is not a day of the week"),
        ("0 3 x * *", "x"),
    ],
)
def test_the_reason_names_what_is_wrong(cron: str, reason: str) -> None:
    """A field that is wrong is named before their combination is judged."""
    with pytest.raises(InvalidRequest) as refused:
        make_trigger(cron, "UTC")

    assert reason in refused.value.fields["cron"]
    assert "not both" not in refused.value.fields["cron"]


def test_a_leap_day_schedule_is_accepted() -> None:
    """29 February comes every four years: it fires, so it is allowed."""
    trigger = make_trigger("0 3 29 2 *", "UTC")

    after = next_after(trigger, datetime(2026, 12, 4, tzinfo=UTC))
    assert after == datetime(2028, 2, 29, 3, 0, tzinfo=UTC)
