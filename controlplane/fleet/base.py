"""What every fleet provider hands the dispatcher: SSH-reachable hosts."""

from __future__ import annotations

from typing import Any, Protocol

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
    # The provider's own reference: a pid, an instance id.
    handle: str = ""

    def to_record(self) -> dict[str, str | int]:
        """Everything but the client key, to find the host again later."""
        return {
            "name": self.name,
            "address": self.address,
            "port": self.port,
            "username": self.username,
            "hostKey": self.host_key.export_public_key().decode().strip(),
            "workRoot": self.work_root,
            "depsRoot": self.deps_root,
            "handle": self.handle,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any], client_key: asyncssh.SSHKey) -> Host:
        return cls(
            name=record["name"],
            address=record["address"],
            port=int(record["port"]),
            username=record["username"],
            host_key=asyncssh.import_public_key(record["hostKey"]),
            client_key=client_key,
            work_root=record["workRoot"],
            deps_root=record["depsRoot"],
            handle=record.get("handle", ""),
        )


class FleetProvider(Protocol):
    """Gets hosts for a run and gives them back whatever the run's outcome."""

    async def acquire(self, run_id: str, count: int) -> list[Host]:
        """Return ready hosts for ``run_id`` or raise HostError.

        Usually ``count`` of them; a cloud provider short of capacity may
        return fewer (at least one), and the run goes on with those.
        """
        ...

    async def release(self, run_id: str) -> None:
        """Stop or return every host of ``run_id``; safe to call twice."""
        ...

    def adopt(self, run_id: str, hosts: list[Host]) -> None:
        """Take back ``run_id``'s hosts after a restart, so release stops them."""
        ...

    async def close(self) -> None:
        """Release every host still held."""
        ...
