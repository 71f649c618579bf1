"""What every fleet provider hands the dispatcher: SSH-reachable hosts."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

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
    # Where the client key lives when the operator keeps it (an on-prem
    # host's long-lived key): never copied. Empty for per-run keys, which
    # the control plane keeps itself for as long as the run.
    key_path: str = ""
    # Where the run's repository sits when the provider fixes it: a path
    # that names no run, the same on every host of the run and given to one
    # run at a time, so Playwright's transform cache (keyed by absolute path)
    # is warm for every file that did not change since the path's last run.
    # Only a provider whose host folders live for one run sets it (a reused
    # folder would still hold the last run's files). Empty: a folder per run.
    suite_path: str = ""

    def suite_dir(self, run_id: str) -> str:
        """Where ``run_id``'s copy of the repository is on this host."""
        return self.suite_path or f"{self.work_root}/runs/{run_id}/suite"

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
            "keyPath": self.key_path,
            "suitePath": self.suite_path,
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
            key_path=record.get("keyPath", ""),
            suite_path=str(record.get("suitePath") or ""),
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

    def forget(self, run_id: str) -> None:
        """Let go of ``run_id``'s hosts without stopping them.

        For a control plane that stops while the run goes on: the next
        process adopts the hosts (``adopt``) and resumes the run on them.
        """
        ...

    async def close(self) -> None:
        """Release every host still held."""
        ...


@runtime_checkable
class LeasingProvider(Protocol):
    """A provider of hosts shared between runs, which may all be busy."""

    async def lease(self, run_id: str, count: int) -> None:
        """Wait until ``count`` hosts are free and hold them for ``run_id``.

        Raises HostError when ``count`` hosts could never be free at once.
        ``acquire`` then hands out the held hosts; ``release`` frees them.
        """
        ...


async def wait_for_lease(provider: FleetProvider, run_id: str, count: int) -> None:
    """Hold ``count`` hosts for ``run_id`` if ``provider`` shares its hosts."""
    if isinstance(provider, LeasingProvider) and count > 0:
        await provider.lease(run_id, count)
