"""The static fleet against real OpenSSH servers: keys, slots, leases, cleanup."""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml

from controlplane.errors import HostError
from controlplane.fleet.inventory import load_inventory
from controlplane.fleet.procs import marked_pids
from controlplane.fleet.static import StaticProvider
from controlplane.remote.ssh import HostConnection
from tests.openssh import OpenSshHost, client_key, openssh_host, wait_until_gone

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="starts sshd and creates users: needs root (CI is root)"
)

MakeProvider = Callable[..., StaticProvider]


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    return client_key(tmp_path)


@pytest.fixture
def rack(key: tuple[Path, str]) -> Iterator[list[OpenSshHost]]:
    """Two on-prem hosts, each an sshd for its own user."""
    with (
        openssh_host("rack-01", key[1]) as first,
        openssh_host("rack-02", key[1]) as second,
    ):
        yield [first, second]


@pytest.fixture
async def make_provider(
    tmp_path: Path, key: tuple[Path, str]
) -> AsyncIterator[MakeProvider]:
    made: list[StaticProvider] = []

    def make(entries: list[dict[str, Any]], **options: Any) -> StaticProvider:
        path = tmp_path / f"inventory-{len(made)}.yaml"
        path.write_text(yaml.safe_dump({"hosts": entries}))
        provider = StaticProvider(load_inventory(path), **options)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.close()


async def test_hosts_answer_as_their_user_with_the_pinned_key(
    rack: list[OpenSshHost], key: tuple[Path, str], make_provider: MakeProvider
) -> None:
    """A leased host is reached as its user, in the inventory's work folder."""
    provider = make_provider([rack[0].inventory_entry(key[0])])

    [host] = await provider.acquire("run_keys", 1)
    conn = await HostConnection.open(host)
    done = await conn.run(f"id -un; test -w {host.work_root} && echo writable")
    await conn.close()

    assert done.stdout.decode().split() == [rack[0].user, "writable"]
    assert host.name == "rack-01#0"
    assert host.key_path == str(key[0])


async def test_a_wrong_pinned_host_key_is_never_accepted(
    rack: list[OpenSshHost], key: tuple[Path, str], make_provider: MakeProvider
) -> None:
    """An inventory pinning another key cannot lease the host: no trust on use."""
    impostor = asyncssh.generate_private_key("ssh-ed25519").export_public_key()
    entry = rack[0].inventory_entry(key[0], host_key=impostor.decode())
    provider = make_provider([entry])

    with pytest.raises(HostError, match=r"not usable: rack-01 .*cannot reach"):
        await provider.acquire("run_impostor", 1)

    assert provider.held_by("run_impostor") == []


async def test_an_unusable_host_is_skipped_for_a_free_one(
    rack: list[OpenSshHost], key: tuple[Path, str], make_provider: MakeProvider
) -> None:
    """A host that does not answer is set aside; the run gets another host."""
    down = rack[0].inventory_entry(key[0], name="rack-down", port=1)
    provider = make_provider([down, rack[1].inventory_entry(key[0])])

    hosts = await provider.acquire("run_skip", 1)

    assert [h.name for h in hosts] == ["rack-02#0"]
    assert provider.free_count == 0  # rack-down is set aside, rack-02 is held


async def test_slots_spread_over_hosts_before_doubling_up(
    rack: list[OpenSshHost], key: tuple[Path, str], make_provider: MakeProvider
) -> None:
    """Two hosts of two slots: two places go to both hosts, four fill them."""
    provider = make_provider(
        [h.inventory_entry(key[0], slots=2) for h in rack],
    )

    first = await provider.acquire("run_spread", 2)
    rest = await provider.acquire("run_full", 2)

    assert sorted(h.name for h in first) == ["rack-01#0", "rack-02#0"]
    assert sorted(h.name for h in rest) == ["rack-01#1", "rack-02#1"]
    assert provider.free_count == 0


async def test_runs_wait_in_line_for_free_slots(
    rack: list[OpenSshHost], key: tuple[Path, str], make_provider: MakeProvider
) -> None:
    """A run waits while every slot is busy; a later, smaller run waits behind it."""
    provider = make_provider([rack[0].inventory_entry(key[0], slots=2)])
    await provider.lease("run_busy", 1)
    big = asyncio.create_task(provider.lease("run_big", 2))
    await asyncio.sleep(0.3)
    small = asyncio.create_task(provider.lease("run_small", 1))
    await asyncio.sleep(0.3)

    assert not big.done()
    assert not small.done()  # one slot is free, but run_big is first in line
    await provider.release("run_busy")
    await asyncio.wait_for(big, 20)
    await asyncio.sleep(0.3)
    assert not small.done()
    await provider.release("run_big")
    await asyncio.wait_for(small, 20)

    assert provider.held_by("run_small") == ["rack-01#0"]


async def test_more_slots_than_the_inventory_has_is_refused(
    rack: list[OpenSshHost], key: tuple[Path, str], make_provider: MakeProvider
) -> None:
    """A run asking for more places than exist fails at once, with the count."""
    provider = make_provider([rack[0].inventory_entry(key[0], slots=2)])

    with pytest.raises(HostError, match="exceeds the 2 slots"):
        await provider.lease("run_huge", 3)


async def test_release_stops_what_a_run_left_and_removes_its_folder(
    rack: list[OpenSshHost], key: tuple[Path, str], make_provider: MakeProvider
) -> None:
    """A shard's leftover processes are stopped by the harness at run end."""
    provider = make_provider([rack[0].inventory_entry(key[0])])
    [host] = await provider.acquire("run_leftover", 1)
    shard = f"{host.work_root}/runs/run_leftover/shard-0"
    harness = rack[0].prefix / "harness"
    conn = await HostConnection.open(host)
    await conn.run(
        f"mkdir -p {shard} && echo tok123 > {shard}/token"
        f" && echo {shlex.quote(str(harness))} > {shard}/harness_dir"
        # Detached from the session, as the harness leaves a shard running.
        " && (TRACELOOM_SHARD=tok123 setsid sleep 600 </dev/null >/dev/null 2>&1 &)"
    )
    await conn.close()
    # The detached sleep starts after the command returns: wait until it runs.
    deadline = asyncio.get_running_loop().time() + 20
    while not marked_pids("TRACELOOM_SHARD=tok123"):
        assert asyncio.get_running_loop().time() < deadline, "the sleep never ran"
        await asyncio.sleep(0.05)

    await provider.release("run_leftover")

    assert marked_pids("TRACELOOM_SHARD=tok123") == []
    assert await asyncio.to_thread(wait_until_gone, rack[0].uid) == []
    assert not (rack[0].work_root / "runs" / "run_leftover").exists()
    assert provider.held_by("run_leftover") == []
    assert provider.free_count == 1


async def test_a_run_cancelled_while_waiting_leaves_the_line(
    rack: list[OpenSshHost], key: tuple[Path, str], make_provider: MakeProvider
) -> None:
    """A waiting run that is cancelled holds nothing and blocks no one."""
    provider = make_provider([rack[0].inventory_entry(key[0])])
    await provider.lease("run_holder", 1)
    cancelled = asyncio.create_task(provider.lease("run_gone", 1))
    behind = asyncio.create_task(provider.lease("run_next", 1))
    await asyncio.sleep(0.3)

    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    await provider.release("run_holder")
    await asyncio.wait_for(behind, 20)

    assert provider.held_by("run_gone") == []
    assert provider.held_by("run_next") == ["rack-01#0"]
