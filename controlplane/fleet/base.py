"""What every fleet provider hands the dispatcher: SSH-reachable hosts."""

from __future__ import annotations

from typing import Protocol

import asyncssh
import attrs


@attrs.frozen(kw_only=True)
class Host:
    """A machine the dispatcher may use for one run, reached over SSH.

    ``host_key`` is known before the first connection and is the only key the
    client accepts; ``client_key`` is the only key the host accepts.
    """

    name: str
    address: str
    port: int
    username: str
    host_key: asyncssh.SSHKey
    client_key: asyncssh.SSHKey
    work_root: str
    deps_root: str


class FleetProvider(Protocol):
    """Gets hosts for a run and gives them back whatever the run's outcome."""

    async def acquire(self, run_id: str, count: int) -> list[Host]:
        """Return ``count`` ready hosts for ``run_id`` or raise HostError."""
        ...

    async def release(self, run_id: str) -> None:
        """Stop or return every host of ``run_id``; safe to call twice."""
        ...

    async def close(self) -> None:
        """Release every host still held."""
        ...
