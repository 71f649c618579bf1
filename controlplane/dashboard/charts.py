"""Geometry of the dashboard's SVG charts, computed here and drawn by templates.

The run timeline has one row per shard (a shard is one host's share of the
run), a bar from when the shard started to when it ended, and inside it each
test attempt in a lane of its own worker, so a glance shows how busy each
host was and where the time went. The trend chart plots a test's duration
over its recent runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from controlplane.domain import Run, Shard, TestResult

WIDTH = 960
LABEL_W = 190
PLOT_X0, PLOT_X1 = LABEL_W, WIDTH - 20
ROW_H, BAR_H, TOP = 36, 26, 28
_TICK_STEPS_S = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200)


@attrs.frozen(kw_only=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@attrs.frozen(kw_only=True)
class Row:
    label: str
    sublabel: str
    y: float


@attrs.frozen(kw_only=True)
class Tick:
    x: float
    label: str


@attrs.frozen(kw_only=True)
class Timeline:
    width: int
    height: int
    rows: list[Row]
    bars: list[Bar]
    ticks: list[Tick]
    plot_x0: int = PLOT_X0
    plot_x1: int = PLOT_X1
    empty: bool = False


def span_label(seconds: float) -> str:
    """``45s``, ``2m``, ``2m30s``, ``1h5m``: short and exact enough for axes."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, rest = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def _lanes(attempts: list[tuple[float, float]]) -> list[int]:
    """A lane per attempt so that no two overlapping attempts share one."""
    ends: list[float] = []
    lanes = []
    for start, end in attempts:
        for lane, busy_until in enumerate(ends):
            if busy_until <= start + 1e-3:
                ends[lane] = end
                lanes.append(lane)
                break
        else:
            ends.append(end)
            lanes.append(len(ends) - 1)
    return lanes


def run_timeline(
    run: Run, shards: Sequence[Shard], tests: Sequence[TestResult], now: float
) -> Timeline:
    """Where each shard's and each test attempt's time went, on one axis."""
    started = [s.started_at for s in shards if s.started_at is not None]
    t0 = run.started_at or (min(started) if started else None)
    if t0 is None:
        return Timeline(width=WIDTH, height=60, rows=[], bars=[], ticks=[], empty=True)
    t1 = max(run.finished_at or now, *(s.finished_at or 0 for s in shards), t0 + 1)
    scale = (PLOT_X1 - PLOT_X0) / (t1 - t0)

    def x(ts: float) -> float:
        return round(PLOT_X0 + (min(max(ts, t0), t1) - t0) * scale, 1)

    rows: list[Row] = []
    bars: list[Bar] = []
    if started and min(started) - t0 > 0.5:
        y = TOP
        rows.append(Row(label="prepare", sublabel="clone, dependencies", y=y))
        bars.append(
            _bar(x(t0), x(min(started)), y, "prepare", "prepare", t0, min(started))
        )
    by_shard: dict[int, list[TestResult]] = {}
    for test in tests:
        by_shard.setdefault(test.shard_index, []).append(test)
    for shard in shards:
        y = TOP + len(rows) * ROW_H
        rows.append(
            Row(
                label=f"shard {shard.index}",
                sublabel=_host_label(shard.host, run.id),
                y=y,
            )
        )
        if shard.started_at is None:
            continue
        end = shard.finished_at or (run.finished_at or now)
        bars.append(
            _bar(
                x(shard.started_at),
                x(end),
                y,
                f"shard {shard.status.value}",
                f"shard {shard.index} on {shard.host or '?'}: {shard.status.value}",
                shard.started_at,
                end,
            )
        )
        bars.extend(_attempt_bars(by_shard.get(shard.index, []), x, y))
    height = TOP + max(len(rows), 1) * ROW_H + 8
    return Timeline(
        width=WIDTH, height=height, rows=rows, bars=bars, ticks=_ticks(t1 - t0, x, t0)
    )


def _bar(
    x0: float, x1: float, y: float, css: str, what: str, start: float, end: float
) -> Bar:
    return Bar(
        x=x0,
        y=y,
        width=max(x1 - x0, 1.5),
        height=BAR_H,
        css=css,
        title=f"{what} ({span_label(end - start)})",
    )


def _attempt_bars(
    tests: list[TestResult], x: Callable[[float], float], y: float
) -> list[Bar]:
    attempts = sorted(
        (
            (a.started_at, a.started_at + a.duration_ms / 1000, test, a)
            for test in tests
            for a in test.attempts
            if a.started_at is not None
        ),
        key=lambda item: item[0],
    )
    if not attempts:
        return []
    lanes = _lanes([(start, end) for start, end, _t, _a in attempts])
    count = max(lanes) + 1
    lane_h = (BAR_H - 4) / count
    bars = []
    for (start, end, test, attempt), lane in zip(attempts, lanes, strict=True):
        retry = f" (retry {attempt.retry})" if attempt.retry else ""
        x0, x1 = x(start), x(end)
        bars.append(
            Bar(
                x=x0,
                y=round(y + 2 + lane * lane_h, 1),
                width=max(x1 - x0, 1.0),
                height=round(max(lane_h - 1, 1.5), 1),
                css=f"attempt {attempt.status}",
                title=f"{test.title}{retry}: {attempt.status},"
                f" {attempt.duration_ms / 1000:.1f}s",
            )
        )
    return bars


def _host_label(host: str | None, run_id: str) -> str:
    """The host's name, without the run's id that local hosts' names repeat."""
    if not host:
        return "no host"
    if host.startswith(f"{run_id}-"):
        return f"host {host[len(run_id) + 1 :]}"
    return host if len(host) <= 24 else "\u2026" + host[-23:]


def _ticks(span_s: float, x: Callable[[float], float], t0: float) -> list[Tick]:
    step = next((s for s in _TICK_STEPS_S if span_s / s <= 8), _TICK_STEPS_S[-1])
    ticks = []
    at = 0
    while at <= span_s + 1e-6:
        ticks.append(Tick(x=x(t0 + at), label=span_label(at)))
        at += step
    return ticks


@attrs.frozen(kw_only=True)
class Point:
    x: float
    y: float
    css: str
    title: str
    href: str


@attrs.frozen(kw_only=True)
class Trend:
    width: int
    height: int
    points: list[Point]
    polyline: str
    y_ticks: list[Tick]
    x0: int
    x1: int
    y0: int
    y1: int


def duration_trend(
    samples: Sequence[tuple[str, float, int, str]],
    *,
    width: int = 720,
    height: int = 200,
) -> Trend:
    """Durations over runs, oldest left: ``(run_id, created_at, ms, status)``."""
    x0, x1, y0, y1 = 56, width - 16, height - 28, 16
    peak = max((ms for _r, _c, ms, _s in samples), default=0) or 1
    step = (x1 - x0) / max(len(samples) - 1, 1)
    points = []
    for i, (run_id, _created, ms, status) in enumerate(samples):
        px = x0 + i * step if len(samples) > 1 else (x0 + x1) / 2
        py = y0 - (y0 - y1) * ms / peak
        points.append(
            Point(
                x=round(px, 1),
                y=round(py, 1),
                css=f"point {status}",
                title=f"{run_id}: {status}, {ms / 1000:.2f}s",
                href=f"/runs/{run_id}",
            )
        )
    ticks = [
        Tick(x=y0 - (y0 - y1) * fraction, label=f"{peak * fraction / 1000:.1f}s")
        for fraction in (0, 0.5, 1)
    ]
    return Trend(
        width=width,
        height=height,
        points=points,
        polyline=" ".join(f"{p.x},{p.y}" for p in points),
        y_ticks=ticks,
        x0=x0,
        x1=x1,
        y0=y0,
        y1=y1,
    )
