"""The reaper: EC2 runners that no live run needs are terminated.

It runs in the control plane, apart from every run: every
``reap_interval_s`` (and once at start, so a control plane that crashed and
came back sweeps first) it lists this deployment's TraceLoom instances and
terminates those whose run is finished or unknown to the database, that
carry no run tag, or whose expiry tag has passed or is missing. It never
touches another deployment's instances (``traceloom:deployment``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from controlplane.domain import RunStatus
from controlplane.fleet.ec2 import Ec2Provider
from controlplane.fleet.ec2_api import (
    LIVE_STATES,
    TAG_DEPLOYMENT,
    TAG_EXPIRES,
    TAG_MANAGED,
    TAG_RUN,
    Ec2Error,
    Instance,
    parse_expiry,
)
from controlplane.logs import get_logger

log = get_logger(__name__)

RunStatusLookup = Callable[[str], Awaitable[RunStatus | None]]


class Ec2Reaper:
    """Sweeps the provider's deployment for instances to terminate."""

    def __init__(self, provider: Ec2Provider, run_status: RunStatusLookup) -> None:
        self.provider = provider
        self.run_status = run_status
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> list[str]:
        """Terminate what no live run needs; return the ids terminated."""
        config = self.provider.config
        api = await self.provider.api()
        instances = await api.describe(
            tags={TAG_MANAGED: "true", TAG_DEPLOYMENT: config.deployment_name},
            states=LIVE_STATES,
        )
        now = time.time()
        doomed: dict[str | None, list[str]] = {}
        for instance in instances:
            run_id = instance.tags.get(TAG_RUN)
            status = await self.run_status(run_id) if run_id else None
            why = _reason(instance, run_id, status, now)
            if why is None:
                continue
            log.warning(
                "instance.reaped", instance=instance.instance_id, run_id=run_id, why=why
            )
            # Only a known run has a record to note the termination in.
            doomed.setdefault(run_id if status else None, []).append(
                instance.instance_id
            )
        for run_id, ids in doomed.items():
            await self.provider.terminate(run_id, ids)
        return sorted(i for ids in doomed.values() for i in ids)

    def start(self) -> None:
        """Sweep now, then every ``reap_interval_s``, until ``stop``."""
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="ec2-reaper")

    async def _loop(self) -> None:
        while True:
            try:
                await self.sweep()
            except Ec2Error as exc:
                log.error("reaper.failed", error=str(exc))
            await asyncio.sleep(self.provider.config.reap_interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None


def _reason(
    instance: Instance, run_id: str | None, status: RunStatus | None, now: float
) -> str | None:
    """Why ``instance`` should go, or None to keep it."""
    expires = parse_expiry(instance.tags.get(TAG_EXPIRES, ""))
    if expires is None:
        return "it has no valid expiry tag"
    if expires <= now:
        return "its expiry passed"
    if not run_id:
        return "it has no run tag"
    if status is None:
        return "its run is unknown"
    if status.finished:
        return f"its run is {status.value}"
    return None
