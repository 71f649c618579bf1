"""Prometheus metrics of one control plane, in a registry of its own.

Run and shard gauges are read from the database when scraped, so they show
the shared state rather than what this process happened to see; the API
latency histogram is observed by the request middleware.
"""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST as CONTENT_TYPE
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest

from controlplane.domain import RunStatus
from controlplane.storage.db import Database

__all__ = ["CONTENT_TYPE", "Metrics"]

_LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip


class Metrics:
    """The gauges and histogram behind ``GET /metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.runs = Gauge(
            "traceloom_runs",
            "Runs stored, by status.",
            ["status"],
            registry=self.registry,
        )
        self.shards_running = Gauge(
            "traceloom_shards_running",
            "Shards running on a host right now.",
            registry=self.registry,
        )
        self.request_duration = Histogram(
            "traceloom_http_request_duration_seconds",
            "Time to answer an API request, by method, route and status.",
            ["method", "route", "status"],
            buckets=_LATENCY_BUCKETS_S,
            registry=self.registry,
        )

    def observe_request(
        self, *, method: str, route: str, status: int, duration_s: float
    ) -> None:
        self.request_duration.labels(method, route, str(status)).observe(duration_s)

    async def refresh(self, db: Database) -> None:
        """Read the run and shard gauges from the database."""
        counts = await db.run_status_counts()
        for status in RunStatus:
            self.runs.labels(status.value).set(counts.get(status, 0))
        self.shards_running.set(await db.running_shard_count())

    def render(self) -> bytes:
        return generate_latest(self.registry)
