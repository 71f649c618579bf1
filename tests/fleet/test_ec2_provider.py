"""The EC2 Spot provider against moto's server, its instances as loopback hosts.

See ``ec2_fakes`` for what stands in for EC2 and the instances, and why.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import attrs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from controlplane.api.app import make_app, make_provider
from controlplane.domain import GitSource, Run, RunRequest, RunStatus
from controlplane.errors import HostError, TraceLoomError
from controlplane.fleet.ec2 import Ec2Provider, Endpoint
from controlplane.fleet.ec2_api import (
    TAG_DEPLOYMENT,
    TAG_EXPIRES,
    TAG_MANAGED,
    TAG_RUN,
    Instance,
    parse_expiry,
)
from controlplane.fleet.ec2_reaper import Ec2Reaper
from controlplane.remote.ssh import HostConnection
from controlplane.settings import Settings, settings_from_env
from controlplane.storage.db import Database
from tests.fleet.ec2_fakes import INSTANCE_TYPES, LoopbackInstances, MotoEc2, moto_ec2

RUN = f"run_ec2_{os.getpid()}"


@pytest.fixture
async def moto(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MotoEc2]:
    async with moto_ec2(monkeypatch) as ec2:
        yield ec2


@pytest.fixture
async def loopback(moto: MotoEc2, tmp_path: Path) -> AsyncIterator[LoopbackInstances]:
    hosts = LoopbackInstances(moto, tmp_path / "instances", deps_dir=tmp_path / "deps")
    yield hosts
    await asyncio.wait_for(hosts.close(), 60)


Factory = Any


@pytest.fixture
async def make(moto: MotoEc2, loopback: LoopbackInstances) -> AsyncIterator[Factory]:
    """Providers on the moto account; every one is closed after the test."""
    made: list[Ec2Provider] = []

    def factory(**config: Any) -> Ec2Provider:
        resolve = config.pop("resolve", None) or loopback.resolve
        provider = Ec2Provider(
            config=moto.config(**config), session=moto.session, resolve=resolve
        )
        made.append(provider)
        return provider

    yield factory
    for provider in made:
        # Bounded: a close that hangs fails here, named, not at the test timeout.
        await asyncio.wait_for(provider.close(), 60)


async def wait_until(predicate: Any, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout_s}s")


class TestLaunch:
    async def test_one_instant_fleet_from_the_template_over_types_and_subnets(
        self, moto: MotoEc2, make: Factory
    ) -> None:
        """Two hosts come from one CreateFleet: instant, Spot, overrides, a token."""
        provider = make()

        hosts = await provider.acquire(RUN, 2)

        [request] = moto.capacity.requests
        [config] = request["LaunchTemplateConfigs"]
        assert len(hosts) == 2
        assert request["Type"] == "instant"
        assert request["ClientToken"].startswith("traceloom-")
        assert request["SpotOptions"] == {
            "AllocationStrategy": "price-capacity-optimized"
        }
        assert request["TargetCapacitySpecification"] == {
            "TotalTargetCapacity": 2,
            "DefaultTargetCapacityType": "spot",
        }
        assert config["LaunchTemplateSpecification"]["LaunchTemplateId"] == (
            moto.template_id
        )
        assert {(o["InstanceType"], o["SubnetId"]) for o in config["Overrides"]} == {
            (t, s) for t in INSTANCE_TYPES for s in moto.subnet_ids
        }

    async def test_instances_carry_the_managed_run_and_expiry_tags(
        self, moto: MotoEc2, make: Factory
    ) -> None:
        """Tags mark the instance as TraceLoom's, its deployment, run and expiry."""
        provider = make(instance_lifetime_s=3600)

        await provider.acquire(RUN, 1)

        [instance] = await moto.instances(**{TAG_RUN: RUN})
        tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
        expires = parse_expiry(tags[TAG_EXPIRES])
        assert tags[TAG_MANAGED] == "true"
        assert tags["Name"] == "traceloom-runner"  # from the template's own tags
        assert tags[TAG_DEPLOYMENT] == provider.config.deployment_name
        assert expires is not None
        assert 3500 < expires - time.time() <= 3600

    async def test_the_user_data_version_is_deleted_after_the_launch(
        self, moto: MotoEc2, make: Factory
    ) -> None:
        """The template keeps no copy of the host key once the fleet is launched."""
        provider = make()

        await provider.acquire(RUN, 1)

        async with moto.client() as ec2:
            answer = await ec2.describe_launch_template_versions(
                LaunchTemplateId=moto.template_id
            )
        versions = answer["LaunchTemplateVersions"]
        assert len(versions) == 2
        assert all("UserData" not in v["LaunchTemplateData"] for v in versions)


class TestKeys:
    async def test_host_key_is_known_before_connecting_and_pinned(
        self, make: Factory, loopback: LoopbackInstances
    ) -> None:
        """The host key sent in the user data is the one pinned; no other works."""
        provider = make()
        [host] = await provider.acquire(RUN, 1)
        sent = asyncssh.import_private_key(loopback.user_data[host.handle]["hostKey"])
        impostor = asyncssh.generate_private_key("ssh-ed25519").convert_to_public()

        conn = await HostConnection.open(host)
        done = await conn.run("echo ready")
        await conn.close()

        assert done.stdout == b"ready\n"
        assert (
            sent.export_public_key().split()[:2]
            == host.host_key.export_public_key().split()[:2]
        )
        with pytest.raises(HostError, match="cannot reach"):
            await HostConnection.open(attrs.evolve(host, host_key=impostor))

    async def test_only_the_runs_client_key_is_accepted(
        self, make: Factory, loopback: LoopbackInstances
    ) -> None:
        """Every instance of a run authorizes the run's key, and nothing else."""
        provider = make()
        first = await provider.acquire(RUN, 1)
        second = await provider.acquire(RUN, 1)
        stranger = asyncssh.generate_private_key("ssh-ed25519")

        authorized = {
            loopback.user_data[h.handle]["authorizedKey"] for h in first + second
        }

        assert authorized == {first[0].client_key.export_public_key().decode().strip()}
        with pytest.raises(HostError, match="cannot reach"):
            await HostConnection.open(attrs.evolve(first[0], client_key=stranger))


class TestRelease:
    async def test_release_terminates_every_instance_of_the_run(
        self, moto: MotoEc2, make: Factory, loopback: LoopbackInstances
    ) -> None:
        """Released, the run's instances are terminated and their hosts stop."""
        provider = make()
        hosts = await provider.acquire(RUN, 2)

        await provider.release(RUN)

        assert await moto.running(**{TAG_RUN: RUN}) == []
        assert provider.held(RUN) == []
        await wait_until(lambda: _none_alive(loopback))
        assert sorted(loopback.hosts) == sorted(h.handle for h in hosts)

    async def test_an_instance_that_never_answers_ssh_is_terminated(
        self, moto: MotoEc2, make: Factory, tmp_path: Path
    ) -> None:
        """No SSH answer by the deadline: the instance goes and the reason is told."""

        async def nowhere(instance: Instance) -> Endpoint:
            return Endpoint(
                address="127.0.0.1",
                port=9,  # discard: nothing listens there
                username="runner",
                work_root=str(tmp_path),
                deps_root=str(tmp_path),
            )

        provider = make(ssh_ready_timeout_s=3.0, resolve=nowhere)

        with pytest.raises(HostError, match="none of 1 instances became ready"):
            await provider.acquire(RUN, 1)

        assert await moto.running(**{TAG_RUN: RUN}) == []


class TestCapacity:
    async def test_partial_spot_capacity_is_used_after_retries(
        self, moto: MotoEc2, make: Factory
    ) -> None:
        """Spot gives 1 of 3: the rest is asked again with backoff, then 1 host."""
        moto.capacity.spot = 1
        provider = make(capacity_wait_s=2.0, backoff_base_s=0.2)

        hosts = await provider.acquire(RUN, 3)

        asked = [r["TargetCapacitySpecification"]["TotalTargetCapacity"] for r in
                 moto.capacity.requests]  # fmt: skip
        tokens = {r["ClientToken"] for r in moto.capacity.requests}
        assert len(hosts) == 1
        assert asked[0] == 3
        assert set(asked[1:]) == {2}
        assert len(asked) >= 3
        assert len(tokens) == len(asked)
        assert await moto.running(**{TAG_RUN: RUN}) == [hosts[0].handle]

    async def test_on_demand_fill_launches_only_the_missing_count(
        self, moto: MotoEc2, make: Factory
    ) -> None:
        """Spot gives 2 of 3; on demand is asked for 1, and the run has 3 hosts."""
        moto.capacity.spot = 2
        provider = make(on_demand_fill=True, capacity_wait_s=0.5)

        hosts = await provider.acquire(RUN, 3)

        last = moto.capacity.requests[-1]
        lifecycles = sorted(
            i.get("InstanceLifecycle", "on-demand")
            for i in await moto.instances(**{TAG_RUN: RUN})
        )
        assert len(hosts) == 3
        assert last["TargetCapacitySpecification"] == {
            "TotalTargetCapacity": 1,
            "DefaultTargetCapacityType": "on-demand",
        }
        assert lifecycles == ["on-demand", "spot", "spot"]

    async def test_quota_error_without_any_host_names_the_quota(
        self, moto: MotoEc2, make: Factory
    ) -> None:
        """A Spot quota is not retried; with no host at all the reason names it."""
        moto.capacity.spot = 0
        moto.capacity.spot_error = "MaxSpotInstanceCountExceeded"
        provider = make(capacity_wait_s=5.0)

        with pytest.raises(HostError) as caught:
            await provider.acquire(RUN, 2)

        assert "an account quota is reached" in str(caught.value)
        assert "MaxSpotInstanceCountExceeded" in str(caught.value)
        assert len(moto.capacity.requests) == 1
        assert await moto.running() == []

    async def test_quota_on_both_lifecycles_gives_both_reasons(
        self, moto: MotoEc2, make: Factory
    ) -> None:
        """On-demand fill hitting its own quota adds its reason to Spot's."""
        moto.capacity.spot = 0
        moto.capacity.on_demand = 0
        moto.capacity.spot_error = "MaxSpotInstanceCountExceeded"
        moto.capacity.on_demand_error = "VcpuLimitExceeded"
        provider = make(on_demand_fill=True)

        with pytest.raises(HostError) as caught:
            await provider.acquire(RUN, 1)

        assert "MaxSpotInstanceCountExceeded" in str(caught.value)
        assert "VcpuLimitExceeded" in str(caught.value)

    async def test_live_instances_never_exceed_the_cap(
        self, moto: MotoEc2, make: Factory
    ) -> None:
        """With a cap of 3, a second run gets what is left, a third none in time."""
        provider = make(max_instances=3, capacity_wait_s=1.0)
        first = await provider.acquire(f"{RUN}_a", 2)

        second = await provider.acquire(f"{RUN}_b", 2)
        with pytest.raises(HostError, match="TRACELOOM_MAX_INSTANCES=3"):
            await provider.acquire(f"{RUN}_c", 1)

        assert len(first) == 2
        assert len(second) == 1
        assert len(await moto.running()) == 3

    async def test_the_cap_counts_instances_launched_elsewhere(
        self, moto: MotoEc2, make: Factory
    ) -> None:
        """Another control plane's runners in the account count against the cap."""
        other = make(deployment_name="elsewhere")
        await other.acquire(f"{RUN}_other", 2)
        provider = make(max_instances=3)

        hosts = await provider.acquire(RUN, 2)

        assert len(hosts) == 1

    async def test_a_waiting_run_gets_instances_once_another_releases(
        self, make: Factory
    ) -> None:
        """A run at the cap waits, and starts as soon as a release frees places."""
        provider = make(max_instances=2, capacity_wait_s=30.0)
        await provider.acquire(f"{RUN}_a", 2)

        waiting = asyncio.create_task(provider.acquire(f"{RUN}_b", 2))
        await asyncio.sleep(0.5)
        assert not waiting.done()
        await provider.release(f"{RUN}_a")
        hosts = await asyncio.wait_for(waiting, 30)

        assert len(hosts) == 2


def _none_alive(loopback: LoopbackInstances) -> Any:
    async def check() -> bool:
        return loopback.alive() == []

    return check()


def _run(run_id: str, status: RunStatus) -> Run:
    return Run(
        id=run_id,
        request=RunRequest(
            test_source=GitSource(git_repo="/r", git_branch="main"),
            test_pattern="*.ts",
        ),
        status=status,
        created_at=time.time(),
    )


class TestReaper:
    async def test_reaper_after_a_crash_terminates_what_no_live_run_needs(
        self, moto: MotoEc2, make: Factory, tmp_path: Path
    ) -> None:
        """A new process's reaper ends finished, unknown and expired runs' instances.

        The crashed process launched for four runs and never released; the
        instances of the run still going, and another deployment's, stay.
        """
        async with Database.open(tmp_path / "db.sqlite3") as db:
            runs = {
                "finished": _run(f"{RUN}_done", RunStatus.PASSED),
                "going": _run(f"{RUN}_going", RunStatus.RUNNING),
                "expired": _run(f"{RUN}_old", RunStatus.RUNNING),
            }
            for run in runs.values():
                await db.insert_run(run)
            crashed = make()
            short_lived = make(instance_lifetime_s=1.0)
            elsewhere = make(deployment_name="another-deployment")
            [finished] = await crashed.acquire(runs["finished"].id, 1)
            [going] = await crashed.acquire(runs["going"].id, 1)
            [unknown] = await crashed.acquire(f"{RUN}_unknown", 1)
            [expired] = await short_lived.acquire(runs["expired"].id, 1)
            [foreign] = await elsewhere.acquire(f"{RUN}_foreign", 1)
            await asyncio.sleep(1.5)
            restarted = make()
            restarted.usage = db

            reaped = await Ec2Reaper(restarted, db.run_status).sweep()

            assert reaped == sorted([finished.handle, unknown.handle, expired.handle])
            assert sorted(await moto.running()) == sorted(
                [going.handle, foreign.handle]
            )
            records = await db.instances(runs["finished"].id)
            assert records[0]["terminatedAt"] is not None

    async def test_reaper_runs_by_itself_until_stopped(
        self, moto: MotoEc2, make: Factory, tmp_path: Path
    ) -> None:
        """Started once, the reaper finds a finished run's instance on its own."""
        async with Database.open(tmp_path / "db.sqlite3") as db:
            run = _run(f"{RUN}_done", RunStatus.RUNNING)
            await db.insert_run(run)
            launcher = make()
            await launcher.acquire(run.id, 1)
            reaper = Ec2Reaper(make(reap_interval_s=0.3), db.run_status)
            reaper.start()
            try:
                await asyncio.sleep(1.0)
                assert len(await moto.running()) == 1

                await db.update_run(run.id, status=RunStatus.FAILED)

                await wait_until(lambda: _nothing_running(moto))
            finally:
                await reaper.stop()


def _nothing_running(moto: MotoEc2) -> Any:
    async def check() -> bool:
        return await moto.running() == []

    return check()


class TestSettings:
    def test_the_ec2_fleet_is_made_from_the_terraform_settings(
        self, tmp_path: Path
    ) -> None:
        """The settings Terraform writes configure the provider, lists split."""
        settings = settings_from_env(
            {
                "TRACELOOM_FLEET": "ec2",
                "TRACELOOM_LAUNCH_TEMPLATE_ID": "lt-0123456789abcdef0",
                "TRACELOOM_SUBNET_IDS": "subnet-a, subnet-b",
                "TRACELOOM_INSTANCE_TYPES": "c7i.large,m7i.large",
                "TRACELOOM_MAX_INSTANCES": "12",
                "TRACELOOM_ON_DEMAND_FILL": "true",
                "TRACELOOM_DEPLOYMENT_NAME": "prod",
            },
            data_dir=tmp_path,
        )

        provider = make_provider(settings)

        assert isinstance(provider, Ec2Provider)
        assert provider.config.subnet_ids == ("subnet-a", "subnet-b")
        assert provider.config.instance_types == ("c7i.large", "m7i.large")
        assert provider.config.max_instances == 12
        assert provider.config.on_demand_fill is True
        assert provider.config.deployment_name == "prod"

    def test_missing_ec2_settings_are_named(self, tmp_path: Path) -> None:
        """Without a template, subnets or types the error names each variable."""
        settings = settings_from_env({"TRACELOOM_FLEET": "ec2"}, data_dir=tmp_path)

        with pytest.raises(TraceLoomError) as caught:
            make_provider(settings)

        for name in ("LAUNCH_TEMPLATE_ID", "SUBNET_IDS", "INSTANCE_TYPES"):
            assert f"TRACELOOM_{name}" in str(caught.value)


class TestRestart:
    async def test_a_restarted_control_plane_reaps_what_a_crashed_one_left(
        self, moto: MotoEc2, make: Factory, settings: Settings
    ) -> None:
        """The app's reaper, at start, ends a finished and an unknown run's hosts."""
        async with Database.open(settings.db_path) as db:
            run = _run(f"{RUN}_done", RunStatus.FAILED)
            await db.insert_run(run)
        crashed = make()
        await crashed.acquire(run.id, 1)
        await crashed.acquire(f"{RUN}_unknown", 1)
        assert len(await moto.running()) == 2

        app = make_app(settings=settings, provider=make())
        async with TestClient(TestServer(app)):
            await wait_until(lambda: _nothing_running(moto))
