"""What earlier runs of a suite teach the planner: file costs, start cost.

A suite is its repository plus its pattern. A file's cost is the host time
its tests took: the sum of their attempts' durations divided by the
Playwright workers a host runs in parallel. The start cost is the time from
starting Playwright to its first test (browser, ``webServer``,
``globalSetup``). Both are blended over runs, so one slow run moves the
estimate but does not replace it.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

import attrs

from controlplane.domain import TestResult

BLEND_WEIGHT = 0.5
DEFAULT_START_COST_S = 3.0
# With no history at all, a spec file's cost is guessed from its size.
SECONDS_PER_KIB = 0.5
MIN_GUESS_S = 0.5


def suite_key(repo: str, pattern: str) -> str:
    """A stable id for (repository, pattern), with URL credentials dropped."""
    parts = urlsplit(repo)
    if parts.scheme and parts.netloc:
        host = parts.netloc.rsplit("@", 1)[-1]
        repo = urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))
    return hashlib.sha256(f"{repo}\0{pattern}".encode()).hexdigest()[:24]


@attrs.frozen
class Estimate:
    cost_s: float
    known: bool


def estimate_costs(
    sizes: dict[str, int], known: dict[str, tuple[float, int]]
) -> dict[str, Estimate]:
    """A cost for every file: learnt where seen, else scaled from its size."""
    seen = [known[f] for f in sizes if f in known]
    per_byte = None
    if seen:
        ratios = [cost / max(size, 1) for cost, size in seen]
        per_byte = statistics.median(ratios)
    estimates = {}
    for name, size in sizes.items():
        if name in known:
            estimates[name] = Estimate(known[name][0], True)
        elif per_byte is not None:
            estimates[name] = Estimate(max(per_byte * size, 0.05), False)
        else:
            estimates[name] = Estimate(
                max(size / 1024 * SECONDS_PER_KIB, MIN_GUESS_S), False
            )
    return estimates


def observed_file_costs(
    results: Iterable[TestResult], *, workers: int, sizes: dict[str, int]
) -> dict[str, tuple[float, int]]:
    """Host time per file from one run's results (files that ran only)."""
    totals: dict[str, float] = {}
    for result in results:
        if result.attempts:
            totals[result.file] = (
                totals.get(result.file, 0.0)
                + sum(a.duration_ms for a in result.attempts) / 1000
            )
    return {
        name: (total / max(workers, 1), sizes.get(name, 0))
        for name, total in totals.items()
    }
