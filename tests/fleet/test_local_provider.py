"""Loopback SSH hosts: pinned keys, separate networks, nothing left behind."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import asyncssh
import attrs
import pytest

from controlplane.errors import HostError
from controlplane.fleet.base import Host
from controlplane.fleet.local import (
    LocalProvider,
    detect_netns,
    detect_private_mounts,
)
from controlplane.remote.ssh import HostConnection
from tests.conftest import traceloom_processes

# Run ids unique to this test process: another session's hosts are not ours.
RUNS = {
    name: f"{name}_{os.getpid()}"
    for name in ("run_a", "run_b", "run_big", "run_c1", "run_c2", "run_x")
}


@pytest.fixture
async def provider(tmp_path: Path) -> AsyncIterator[LocalProvider]:
    local = LocalProvider(
        hosts_dir=tmp_path / "hosts", deps_dir=tmp_path / "deps", max_hosts=3
    )
    yield local
    await local.close()


async def test_host_runs_commands_in_its_own_folder(provider: LocalProvider) -> None:
    """A started host answers over SSH with the key it was made with."""
    [host] = await provider.acquire(RUNS["run_a"], 1)
    conn = await HostConnection.open(host)

    done = await conn.run("pwd; echo $HOME")
    await conn.close()

    assert done.exit_status == 0
    assert done.stdout.decode().split() == [host.work_root, host.work_root]


async def test_wrong_host_key_is_refused(provider: LocalProvider) -> None:
    """The client accepts only the host key it knew before connecting."""
    [host] = await provider.acquire(RUNS["run_a"], 1)
    impostor = asyncssh.generate_private_key("ssh-ed25519").convert_to_public()

    with pytest.raises(HostError, match="cannot reach"):
        await HostConnection.open(attrs.evolve(host, host_key=impostor))


async def test_wrong_client_key_is_refused(provider: LocalProvider) -> None:
    """The host accepts only the run's client key."""
    [host] = await provider.acquire(RUNS["run_a"], 1)
    stranger = asyncssh.generate_private_key("ssh-ed25519")

    with pytest.raises(HostError, match="cannot reach"):
        await HostConnection.open(attrs.evolve(host, client_key=stranger))


async def test_failing_command_carries_host_status_and_output(
    provider: LocalProvider,
) -> None:
    """A remote error names the host, the command, its status and output."""
    [host] = await provider.acquire(RUNS["run_a"], 1)
    conn = await HostConnection.open(host)

    with pytest.raises(HostError) as caught:
        await conn.run("echo boom >&2; exit 7")
    await conn.close()

    error = caught.value
    assert getattr(error, "exit_status", None) == 7
    assert getattr(error, "host", None) == host.name
    assert "boom" in str(error)


@pytest.mark.skipif(detect_netns() == "off", reason="network namespaces not allowed")
async def test_hosts_can_bind_the_same_port(provider: LocalProvider) -> None:
    """Two hosts' commands listen on one fixed port at once (own netns each)."""
    hosts = await provider.acquire(RUNS["run_a"], 2)
    conns = [await HostConnection.open(h) for h in hosts]
    listen = (
        "python3 -c 'import socket,time; s=socket.socket();"
        ' s.bind(("127.0.0.1", 4173)); s.listen(); print("bound", flush=True);'
        " time.sleep(2)'"
    )

    results = await asyncio.gather(*(c.run(listen) for c in conns))
    for conn in conns:
        await conn.close()

    assert [r.stdout.strip() for r in results] == [b"bound", b"bound"]


@pytest.mark.skipif(
    not detect_private_mounts(detect_netns()), reason="private mounts not allowed"
)
async def test_hosts_keep_their_own_files_at_one_absolute_path(
    provider: LocalProvider,
) -> None:
    """Every host's work root is the same path, holding that host's files only.

    Playwright merges blob reports only when every shard ran from the same
    absolute folder, as remote hosts with one fixed work root do.
    """
    hosts = await provider.acquire(RUNS["run_a"], 2)
    conns = [await HostConnection.open(h) for h in hosts]
    for conn, host in zip(conns, hosts, strict=True):
        await conn.run(f"echo {host.name} > mine; mkdir -p runs/x")

    seen = [await c.run("pwd -P; cat mine; ls") for c in conns]
    for conn in conns:
        await conn.close()

    assert hosts[0].work_root == hosts[1].work_root
    for host, result in zip(hosts, seen, strict=True):
        lines = result.stdout.decode().split()
        assert lines[0] == host.work_root
        assert lines[1] == host.name
    on_disk = provider.hosts_dir / hosts[0].name / "mine"
    assert on_disk.read_text().strip() == hosts[0].name
    assert not any((provider.hosts_dir / "work").iterdir())
    # The folder is the host's alone: the suite sits at a path naming no run,
    # and a host taken up again after a restart says so still.
    assert hosts[0].suite_path == f"{hosts[0].work_root}/suite-0"
    assert hosts[1].suite_path == hosts[0].suite_path
    assert hosts[0].suite_dir("run_q") == hosts[0].suite_path
    again = Host.from_record(hosts[0].to_record(), hosts[0].client_key)
    assert again == hosts[0]


@pytest.mark.skipif(
    not detect_private_mounts(detect_netns()), reason="private mounts not allowed"
)
async def test_runs_at_once_never_share_a_suite_path(
    provider: LocalProvider, tmp_path: Path
) -> None:
    """One lane per run in flight; a lane is given again once its run ended.

    Runs of another control plane process sharing the folder (one that was
    restarted, its hosts not yet taken up) hold their lanes while alive.
    """
    [a] = await provider.acquire(RUNS["run_a"], 1)
    [b] = await provider.acquire(RUNS["run_b"], 1)
    # A replacement host of a run keeps the run's lane.
    [a2] = await provider.acquire(RUNS["run_a"], 1)
    assert [h.suite_path.rsplit("/", 1)[-1] for h in (a, b, a2)] == [
        "suite-0", "suite-1", "suite-0",
    ]  # fmt: skip
    later = LocalProvider(
        hosts_dir=tmp_path / "hosts", deps_dir=tmp_path / "deps", max_hosts=8
    )
    try:
        [c] = await later.acquire(RUNS["run_c1"], 1)
        assert c.suite_path.endswith("/suite-2")
        # Taken up by the later process: a new host of the run keeps its lane.
        later.adopt(RUNS["run_a"], [a, a2])
        await provider.release(RUNS["run_b"])
        [a3] = await later.acquire(RUNS["run_a"], 1)
        assert a3.suite_path == a.suite_path
        [d] = await later.acquire(RUNS["run_c2"], 1)
        assert d.suite_path.endswith("/suite-1")
        await later.release(RUNS["run_c1"])
        await later.release(RUNS["run_c2"])
        [e] = await later.acquire(RUNS["run_x"], 1)
        assert e.suite_path.endswith("/suite-1")
    finally:
        provider.forget(RUNS["run_a"])
        await later.close()


async def test_a_cancel_as_a_run_claims_hosts_gives_the_capacity_back(
    tmp_path: Path,
) -> None:
    """Cancelled right after its claim (the lane is picked then), no capacity
    stays counted: the next run still gets every host."""
    local = LocalProvider(
        hosts_dir=tmp_path / "hosts", deps_dir=tmp_path / "deps", max_hosts=2
    )
    try:
        task = asyncio.create_task(local.acquire(RUNS["run_c1"], 2))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await local.release(RUNS["run_c1"])
        assert local.live_count == 0
        hosts = await asyncio.wait_for(local.acquire(RUNS["run_c2"], 2), 30)
        assert len(hosts) == 2
    finally:
        await local.close()


def test_a_host_record_from_before_suite_paths_keeps_runs_apart() -> None:
    """A record without the field (an older control plane's) names the run."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    record = {
        "name": "h", "address": "127.0.0.1", "port": 22, "username": "u",
        "hostKey": key.export_public_key().decode(), "workRoot": "/w",
        "depsRoot": "/d",
    }  # fmt: skip
    host = Host.from_record(record, key)
    assert host.suite_path == ""
    assert host.suite_dir("run_q") == "/w/runs/run_q/suite"
    nulled = Host.from_record({**record, "suitePath": None}, key)
    assert nulled.suite_path == ""
    assert host.suite_dir("run_q") == "/w/runs/run_q/suite"


async def test_release_stops_hosts_and_their_processes(
    provider: LocalProvider,
) -> None:
    """After release no host process and nothing a host started is alive."""
    hosts = await provider.acquire(RUNS["run_a"], 2)
    for host in hosts:
        conn = await HostConnection.open(host)
        # A detached sleeper, as a harness would leave behind.
        await conn.run("setsid sleep 300 </dev/null >/dev/null 2>&1 &")
        await conn.close()

    assert traceloom_processes(RUNS["run_a"])
    await provider.release(RUNS["run_a"])

    assert not traceloom_processes(RUNS["run_a"])
    folders = [provider.hosts_dir / h.name for h in hosts]
    assert not any(f.exists() for f in folders)
    with pytest.raises(HostError):
        await HostConnection.open(hosts[0], timeout_s=3)


async def test_cap_refuses_more_hosts_than_allowed(provider: LocalProvider) -> None:
    """A run asking for more hosts than the cap gets a clear error."""
    with pytest.raises(HostError, match="cap of 3"):
        await provider.acquire(RUNS["run_big"], 4)


async def test_runs_wait_for_capacity(provider: LocalProvider) -> None:
    """A second run waits until the first releases its hosts."""
    await provider.acquire(RUNS["run_a"], 2)
    second = asyncio.create_task(provider.acquire(RUNS["run_b"], 2))
    await asyncio.sleep(0.5)

    assert not second.done()
    await provider.release(RUNS["run_a"])
    hosts = await asyncio.wait_for(second, 20)

    assert len(hosts) == 2


async def test_cap_holds_for_runs_asking_at_the_same_moment(
    provider: LocalProvider,
) -> None:
    """Concurrent acquires never have more hosts starting or up than the cap."""
    first = asyncio.create_task(provider.acquire(RUNS["run_c1"], 2))
    second = asyncio.create_task(provider.acquire(RUNS["run_c2"], 2))
    await asyncio.sleep(0.05)

    assert provider.live_count <= provider.max_hosts
    done, pending = await asyncio.wait({first, second}, timeout=20)
    assert len(done) == 1
    assert len(pending) == 1
    await provider.release(RUNS["run_c1"] if first in done else RUNS["run_c2"])
    await asyncio.wait_for(pending.pop(), 20)
    assert provider.live_count == 2


def _host_servers(run_id: str) -> list[int]:
    """Pids of local host servers started for ``run_id``."""
    wanted = f"{run_id}-h".encode()
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"controlplane.fleet.localhost_server" in argv and any(
            arg.startswith(wanted) for arg in argv
        ):
            found.append(int(entry.name))
    return found


async def test_cancel_while_hosts_start_leaves_no_host(
    provider: LocalProvider, tmp_path: Path
) -> None:
    """A run cancelled while its hosts boot stops them and frees the cap."""
    run_id = RUNS["run_x"]
    starting = asyncio.create_task(provider.acquire(run_id, 2))
    deadline = asyncio.get_running_loop().time() + 20
    while not _host_servers(run_id):
        assert asyncio.get_running_loop().time() < deadline, "no host started"
        await asyncio.sleep(0.01)

    starting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await starting

    assert _host_servers(run_id) == []
    assert provider.live_count == 0
    assert list((tmp_path / "hosts").glob(f"{run_id}-h*")) == []
