"""The dashboard: server-rendered pages for engineers and operators.

``setup(app)`` adds the templates, the routes and the stylesheet and script
to the control plane's application; ``auth.dashboard_auth`` (a middleware
the app factory installs) guards every path outside ``/api/``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from controlplane.api.runs import iso
from controlplane.dashboard.charts import span_label

STATIC_DIR = Path(__file__).parent / "static"
# Shown for a value not known (yet): an en dash.
NOTHING = "\u2013"


def when(ts: float | None) -> str:
    """A moment in UTC, to the second."""
    if ts is None:
        return NOTHING
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return NOTHING
    delta = (now or time.time()) - ts
    if delta < 0:
        return f"in {span_label(-delta)}"
    if delta < 5:
        return "just now"
    return f"{span_label(delta)} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return NOTHING
    if seconds < 10:
        return f"{seconds:.1f}s"
    return span_label(seconds)


def milliseconds(ms: int | float | None) -> str:
    if ms is None:
        return NOTHING
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def percent(fraction: float | None) -> str:
    return NOTHING if fraction is None else f"{fraction * 100:.0f}%"


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(text: str | None) -> str:
    """Error text without the terminal colours Playwright puts in it."""
    return _ANSI.sub("", text or "")


def first_line(text: str | None) -> str:
    lines = plain(text).strip().splitlines()
    return lines[0] if lines else ""


def short_sha(sha: str | None) -> str:
    return sha[:10] if sha else NOTHING


def setup(app: web.Application) -> None:
    """Templates, routes and static files of the dashboard."""
    from controlplane.dashboard import live, schedules, views

    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.PackageLoader("controlplane.dashboard", "templates"),
        autoescape=jinja2.select_autoescape(["html", "svg"], default=True),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        when=when,
        ago=ago,
        duration=duration,
        ms=milliseconds,
        percent=percent,
        short_sha=short_sha,
        plain=plain,
        first_line=first_line,
        iso=iso,
    )
    live.install(app)
    app.router.add_routes(views.routes)
    app.router.add_routes(schedules.routes)
    app.router.add_static("/static/", STATIC_DIR, name="static")
