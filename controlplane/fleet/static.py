"""The ``static`` fleet: an on-prem inventory of SSH hosts, leased to runs.

Every host offers ``slots`` places, each running one shard at a time. A
run leases the places it needs, in the order runs asked (the first in line
waits for enough free places; later runs wait behind it, so a large run is
never starved by small ones), and keeps them until it ends. While it waits
the run stays ``queued``. Places are spread over hosts: a run gets one
place on each of two hosts before two places on one.

The hosts are long-lived and shared, so keys work differently from per-run
hosts: the control plane logs in with the operator's key (its public half
is in the host's ``authorized_keys``; the control plane never copies it),
and accepts only the host key the inventory pins. A host that does not
answer when leased, or lacks what the harness needs, is skipped for a
while and another free place is taken. When a run ends, whatever it left
running on its hosts is stopped (the harness's ``stop`` finds a shard's
processes by the marker in their environment) and its folders removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import attrs

from controlplane.errors import HostError
from controlplane.fleet.base import Host
from controlplane.fleet.inventory import Inventory, InventoryHost
from controlplane.logs import get_logger
from controlplane.remote.ssh import HostConnection, quote

log = get_logger(__name__)

_CLEAN_TIMEOUT_S = 60.0
# How often a waiting run looks again, for hosts whose time out is over.
_RECHECK_S = 5.0

# What every host must offer the harness; run before a host is handed out.
_PROBE = """\
for tool in sh tar node; do
    command -v "$tool" >/dev/null 2>&1 || {{
        echo "$tool is not on the PATH"; exit 3
    }}
done
for dir in {work} {deps}; do
    mkdir -p "$dir" 2>/dev/null && [ -w "$dir" ] || {{
        echo "$dir is not writable"; exit 3
    }}
done
"""

# Stop what a run left on a host, then remove its folder. Each shard's
# harness is the one that started it (recorded in harness_dir), else any.
_CLEAN = """\
run={run}
[ -d "$run" ] || exit 0
for shard in "$run"/shard-*; do
    [ -f "$shard/token" ] || continue
    harness="$(cat "$shard/harness_dir" 2>/dev/null)/traceloom-harness.sh"
    [ -f "$harness" ] ||
        harness=$(ls {work}/harness/*/traceloom-harness.sh 2>/dev/null | head -n 1)
    [ -n "$harness" ] && sh "$harness" stop "$shard"
done
rm -rf "$run"
"""


@attrs.define(eq=False)
class _Place:
    """One slot of one host, free or leased to a run."""

    host: Host
    entry: InventoryHost
    order: int
    run_id: str | None = None
    # Handed out by acquire (the run may have started something there).
    in_use: bool = False


def _host_for(entry: InventoryHost, slot: int) -> Host:
    return Host(
        name=f"{entry.name}#{slot}",
        address=entry.address,
        port=entry.port,
        username=entry.user,
        host_key=entry.host_key,
        client_key=entry.client_key,
        work_root=entry.work_root,
        deps_root=entry.deps_root,
        handle=entry.name,
        key_path=str(entry.key_path),
    )


class StaticProvider:
    """Leases the places of an inventory's hosts to runs, first come first."""

    # XXX: the slots of one host share its network, so a suite whose web
    # server uses a fixed port needs slots: 1 there; running each shard in
    # a network namespace of its own (as local hosts do) would remove that.

    def __init__(
        self,
        inventory: Inventory,
        *,
        probe_timeout_s: float = 15.0,
        unusable_for_s: float = 60.0,
    ) -> None:
        self.inventory = inventory
        self.probe_timeout_s = probe_timeout_s
        self.unusable_for_s = unusable_for_s
        self._places = [
            _Place(_host_for(entry, slot), entry, order)
            for order, (entry, slot) in enumerate(
                (e, s) for e in inventory.hosts for s in range(e.slots)
            )
        ]
        self._unusable_until: dict[str, float] = {}
        self._line: list[object] = []
        self._changed = asyncio.Condition()

    # -- what the engine sees ----------------------------------------------

    @property
    def free_count(self) -> int:
        """Places free now, on hosts not set aside as unusable."""
        return len(self._free())

    def held_by(self, run_id: str) -> list[str]:
        """Names of the places ``run_id`` holds."""
        return [p.host.name for p in self._places if p.run_id == run_id]

    async def lease(self, run_id: str, count: int) -> None:
        """Wait in line until ``count`` places are free; hold them for the run."""
        if count > len(self._places):
            raise HostError(
                f"serverCount {count} exceeds the {len(self._places)} slots of the"
                f" static inventory {self.inventory.source}"
            )
        ticket = object()
        async with self._changed:
            self._line.append(ticket)
            try:
                if not self._grantable(ticket, count):
                    log.info(
                        "lease.waiting",
                        wanted=count,
                        free=len(self._free()),
                        ahead=self._line.index(ticket),
                    )
                while not self._grantable(ticket, count):
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._changed.wait(), _RECHECK_S)
                self._assign(run_id, count)
            finally:
                self._line.remove(ticket)
                self._changed.notify_all()
        log.info("lease.granted", places=self.held_by(run_id))

    async def acquire(self, run_id: str, count: int) -> list[Host]:
        """Hand out ``count`` held (or newly leased) places whose hosts answer."""
        held = self._waiting_places(run_id)
        if len(held) < count:
            if any(p.run_id == run_id for p in self._places):
                # More places for a run that has some (a replacement for a
                # lost host): only what is free now, or the run could wait
                # for places it holds itself.
                async with self._changed:
                    self._take_now(run_id, count - len(held))
            else:
                await self.lease(run_id, count - len(held))
        chosen = self._waiting_places(run_id)[:count]
        try:
            chosen = await self._usable(run_id, chosen)
        except BaseException:
            async with self._changed:
                for place in self._waiting_places(run_id):
                    self._free_place(place)
                self._changed.notify_all()
            raise
        for place in chosen:
            place.in_use = True
        return [p.host for p in chosen]

    async def release(self, run_id: str) -> None:
        """Stop what the run left on its hosts, then free its places."""
        mine = [p for p in self._places if p.run_id == run_id]
        if not mine:
            return
        used = {p.entry.name: p.host for p in mine if p.in_use}
        await asyncio.gather(*(self._clean(host, run_id) for host in used.values()))
        async with self._changed:
            for place in mine:
                if place.run_id == run_id:
                    self._free_place(place)
            self._changed.notify_all()
        log.info("lease.released", places=[p.host.name for p in mine])

    def adopt(self, run_id: str, hosts: list[Host]) -> None:
        """Hold again the places a run had before the control plane restarted."""
        by_name = {p.host.name: p for p in self._places}
        for host in hosts:
            place = by_name.get(host.name)
            if place is None:
                log.warning("host.adopt_unknown", host=host.name)
                continue
            if place.run_id not in (None, run_id):
                # XXX: a run leased this place between the restart and this
                # run's resume, so the host runs one shard more than its
                # slots for a while; holding the places of recovering runs
                # before any new run is admitted would remove this.
                log.warning("lease.overlap", host=host.name, other=place.run_id)
                continue
            place.run_id = run_id
            place.in_use = True
            log.info("host.adopted", host=host.name)

    def forget(self, run_id: str) -> None:
        """Free ``run_id``'s places here, leaving its shards on the hosts.

        The control plane is stopping; the next process adopts the places
        again when it resumes the run.
        """
        for place in self._places:
            if place.run_id == run_id:
                self._free_place(place)
        log.info("lease.left_running", run_id=run_id)

    async def close(self) -> None:
        """Release every run's places."""
        for run_id in {p.run_id for p in self._places if p.run_id is not None}:
            await self.release(run_id)

    # -- places -------------------------------------------------------------

    def _free(self) -> list[_Place]:
        now = time.monotonic()
        return [
            p
            for p in self._places
            if p.run_id is None and self._unusable_until.get(p.entry.name, 0) <= now
        ]

    def _waiting_places(self, run_id: str) -> list[_Place]:
        return [p for p in self._places if p.run_id == run_id and not p.in_use]

    def _grantable(self, ticket: object, count: int) -> bool:
        return self._line[0] is ticket and len(self._free()) >= count

    def _assign(self, run_id: str, count: int) -> None:
        """Give ``count`` free places to ``run_id``, spread over hosts."""
        for _ in range(count):
            free = self._free()
            best = min(free, key=lambda p: self._spread_key(p, run_id))
            best.run_id = run_id

    def _spread_key(self, place: _Place, run_id: str) -> tuple[int, int, int]:
        """Places on hosts this run uses least, then hosts least busy, first."""
        same_host = [p for p in self._places if p.entry.name == place.entry.name]
        mine = sum(1 for p in same_host if p.run_id == run_id)
        busy = sum(1 for p in same_host if p.run_id is not None)
        return (mine, busy, place.order)

    def _take_now(self, run_id: str, count: int) -> None:
        free = len(self._free())
        if free < count:
            raise HostError(
                f"no free slot in the static inventory for another host"
                f" ({free} free, {count} needed)"
            )
        self._assign(run_id, count)

    def _free_place(self, place: _Place) -> None:
        place.run_id = None
        place.in_use = False

    # -- hosts --------------------------------------------------------------

    async def _usable(self, run_id: str, chosen: list[_Place]) -> list[_Place]:
        """Check each chosen host answers; swap places on hosts that do not.

        Raises HostError naming every host that failed when no free place
        is left to take instead.
        """
        failures: list[str] = []
        while True:
            entries = {p.entry.name: p for p in chosen}
            results = await asyncio.gather(
                *(self._probe(p.host) for p in entries.values())
            )
            bad = {name for name, error in zip(entries, results, strict=True) if error}
            failures.extend(e for e in results if e)
            if not bad:
                return chosen
            async with self._changed:
                until = time.monotonic() + self.unusable_for_s
                for name in bad:
                    self._unusable_until[name] = until
                dropped = [p for p in chosen if p.entry.name in bad]
                for place in dropped:
                    self._free_place(place)
                self._changed.notify_all()
                chosen = [p for p in chosen if p.entry.name not in bad]
                try:
                    self._take_now(run_id, len(dropped))
                except HostError:
                    raise HostError(
                        "static hosts are not usable: " + "; ".join(failures)
                    ) from None
                chosen += [p for p in self._waiting_places(run_id) if p not in chosen]

    async def _probe(self, host: Host) -> str | None:
        """None when ``host`` answers and can run the harness, else why not."""
        where = f"{host.handle} ({host.username}@{host.address}:{host.port})"
        try:
            conn = await HostConnection.open(host, timeout_s=self.probe_timeout_s)
        except HostError as exc:
            log.warning("host.unusable", host=host.handle, error=str(exc))
            return f"{where}: {exc}"
        try:
            script = _PROBE.format(
                work=quote(host.work_root), deps=quote(host.deps_root)
            )
            done = await conn.run(script, check=False, timeout_s=self.probe_timeout_s)
        except HostError as exc:
            return f"{where}: {exc}"
        finally:
            await conn.close()
        if done.exit_status != 0:
            output = (done.stdout or done.stderr).decode(errors="replace").strip()
            log.warning("host.unusable", host=host.handle, error=output)
            return f"{where}: {output or f'exit status {done.exit_status}'}"
        return None

    async def _clean(self, host: Host, run_id: str) -> None:
        """Stop what ``run_id`` left running on ``host``; remove its folder.

        The dependencies shipped to ``deps_root`` stay, as a cache.
        """
        # XXX: nothing evicts old entries of deps_root (one per lockfile), so
        # a long-lived host's disk fills over months; removing entries unused
        # for N days here, under a lock against a run putting one, would.
        script = _CLEAN.format(
            run=quote(f"{host.work_root}/runs/{run_id}"), work=quote(host.work_root)
        )
        try:
            conn = await HostConnection.open(host, timeout_s=self.probe_timeout_s)
            try:
                await conn.run(script, timeout_s=_CLEAN_TIMEOUT_S)
            finally:
                await conn.close()
        except HostError as exc:
            log.warning("host.cleanup_failed", host=host.handle, error=str(exc))
            return
        log.info("host.cleaned", host=host.handle)
