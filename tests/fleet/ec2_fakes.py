"""EC2 for tests: moto's server over HTTP, and its instances as loopback hosts.

No AWS account is reachable here, so the EC2 API is moto's server
(``ThreadedMotoServer`` on 127.0.0.1), called by the provider through
aioboto3 like the real one. Where moto falls short of EC2 it is patched in
this process (the server runs in a thread of it), each patch saying why:

- moto does not apply ``SourceVersion`` when a launch template version is
  made, where EC2 copies the source version's data under the given fields;
- moto does not implement ``DeleteLaunchTemplateVersions``;
- moto always fills a fleet and never reports ``Errors``: ``FleetCapacity``
  stands in for Spot and on-demand capacity and quotas running short.

moto's instances are not machines. ``LoopbackInstances`` is the provider's
address resolver in tests: for each instance it reads the user data the
instance was launched with, does what the runner image's boot service does
with it (the host key becomes the only host key, the authorized key the only
client key) and starts a loopback SSH host (the local provider's server) to
stand for the instance. An instance terminated in moto has its host stopped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aioboto3
import attrs
import pytest
from moto.ec2.models.fleets import Fleet
from moto.ec2.responses.fleets import Fleets
from moto.ec2.responses.launch_templates import LaunchTemplates
from moto.moto_api._internal.models import moto_api_backend
from moto.server import ThreadedMotoServer

from controlplane.fleet.ec2 import Ec2Config, Endpoint
from controlplane.fleet.ec2_api import TAG_RUN, Instance
from controlplane.fleet.procs import kill_marked

REGION = "eu-west-1"
INSTANCE_TYPES = ("t3.micro", "t3.small")
RUNNER_AMI = "resolve:ssm:/traceloom/runner-ami"


@attrs.define
class FleetCapacity:
    """Instances Spot and on-demand can still give (None: no limit), and why not.

    Every CreateFleet request is recorded in ``requests`` as sent.
    """

    spot: int | None = None
    on_demand: int | None = None
    spot_error: str = "InsufficientInstanceCapacity"
    on_demand_error: str = "InsufficientInstanceCapacity"
    requests: list[dict[str, Any]] = attrs.Factory(list)

    def take(self, lifecycle: str, wanted: int) -> tuple[int, str]:
        """How many of ``wanted`` are granted, and the error code for the rest."""
        if lifecycle == "spot":
            granted = wanted if self.spot is None else min(self.spot, wanted)
            if self.spot is not None:
                self.spot -= granted
            return granted, self.spot_error
        granted = wanted if self.on_demand is None else min(self.on_demand, wanted)
        if self.on_demand is not None:
            self.on_demand -= granted
        return granted, self.on_demand_error


def _patch_moto(monkeypatch: pytest.MonkeyPatch, capacity: FleetCapacity) -> None:
    original_version = LaunchTemplates.create_launch_template_version

    def create_version_from_source(self: Any) -> Any:
        # EC2 copies the source version's data under the given fields; moto
        # keeps only the given fields.
        source = self._get_param("SourceVersion")
        if source:
            template = self.ec2_backend.get_launch_template(
                self._get_param("LaunchTemplateId")
            )
            merged = copy.deepcopy(template.get_version(source).data)
            merged.update(self._get_param("LaunchTemplateData", {}))
            get_param = self._get_param

            def with_merged(name: str, if_none: Any = None) -> Any:
                if name == "LaunchTemplateData":
                    return merged
                return get_param(name, if_none)

            self._get_param = with_merged
        return original_version(self)

    def delete_versions(self: Any) -> Any:
        # Not in moto. A deleted version keeps its number (moto finds
        # versions by position) but loses its data, user data included.
        from moto.core.responses import ActionResult

        template = self.ec2_backend.get_launch_template(
            self._get_param("LaunchTemplateId")
        )
        deleted = []
        for number in self._get_param("Versions", []):
            version = template.get_version(number)
            version.data = {}
            deleted.append(
                {"LaunchTemplateId": template.id, "VersionNumber": version.number}
            )
        return ActionResult(
            {
                "SuccessfullyDeletedLaunchTemplateVersions": deleted,
                "UnsuccessfullyDeletedLaunchTemplateVersions": [],
            }
        )

    def limited(lifecycle: str, original: Any) -> Any:
        # moto fills every fleet; EC2 gives what capacity and quotas allow
        # and lists the rest in the answer's Errors.
        def create(self: Fleet, weight: float) -> Any:
            granted, code = capacity.take(lifecycle, int(weight))
            errors = self.__dict__.setdefault("traceloom_errors", [])
            if granted < weight:
                errors.append(
                    {
                        "ErrorCode": code,
                        "ErrorMessage": f"{int(weight) - granted} {lifecycle}"
                        " instances could not be launched",
                        "Lifecycle": lifecycle,
                    }
                )
            if granted:
                return original(self, granted)
            return None

        return create

    original_fleet = Fleets.create_fleet

    def create_fleet(self: Any) -> Any:
        capacity.requests.append(
            {
                name: self._get_param(name)
                for name in (
                    "Type",
                    "ClientToken",
                    "LaunchTemplateConfigs",
                    "TargetCapacitySpecification",
                    "SpotOptions",
                    "OnDemandOptions",
                    "TagSpecifications",
                )
            }
        )
        answer = original_fleet(self)
        result: dict[str, Any] = answer.result  # type: ignore[assignment]
        fleet = self.ec2_backend.get_fleet(result["FleetId"])
        result["Errors"] = fleet.__dict__.get("traceloom_errors", [])
        return answer

    monkeypatch.setattr(
        LaunchTemplates, "create_launch_template_version", create_version_from_source
    )
    monkeypatch.setattr(
        LaunchTemplates,
        "delete_launch_template_versions",
        delete_versions,
        raising=False,
    )
    monkeypatch.setattr(
        Fleet, "create_spot_requests", limited("spot", Fleet.create_spot_requests)
    )
    monkeypatch.setattr(
        Fleet,
        "create_on_demand_requests",
        limited("on-demand", Fleet.create_on_demand_requests),
    )
    monkeypatch.setattr(Fleets, "create_fleet", create_fleet)


@attrs.define
class MotoEc2:
    """moto's EC2 with a VPC, two subnets and a runner launch template."""

    url: str
    session: aioboto3.Session
    capacity: FleetCapacity
    template_id: str = ""
    subnet_ids: list[str] = attrs.Factory(list)

    def client(self) -> Any:
        return self.session.client("ec2", region_name=REGION, endpoint_url=self.url)

    def config(self, **overrides: Any) -> Ec2Config:
        """A provider configuration for this account, quick to give up."""
        values: dict[str, Any] = {
            "launch_template_id": self.template_id,
            "subnet_ids": tuple(self.subnet_ids),
            "instance_types": INSTANCE_TYPES,
            "max_instances": 6,
            "capacity_wait_s": 3.0,
            "backoff_base_s": 0.2,
            "backoff_cap_s": 1.0,
            "ssh_ready_timeout_s": 60.0,
            "reap_interval_s": 0.5,
            "deployment_name": f"tests-{os.getpid()}",
            "region": REGION,
            "endpoint_url": self.url,
        }
        values.update(overrides)
        return Ec2Config(**values)

    async def setup(self) -> None:
        async with self.client() as ec2:
            vpc = (await ec2.create_vpc(CidrBlock="10.0.0.0/16"))["Vpc"]["VpcId"]
            for index, zone in enumerate(("a", "b")):
                subnet = await ec2.create_subnet(
                    VpcId=vpc,
                    CidrBlock=f"10.0.{index}.0/24",
                    AvailabilityZone=f"{REGION}{zone}",
                )
                self.subnet_ids.append(subnet["Subnet"]["SubnetId"])
            # What terraform/modules/runners makes, as far as moto models it.
            managed = [
                {"Key": "traceloom:managed", "Value": "true"},
                {"Key": "Name", "Value": "traceloom-runner"},
            ]
            template = await ec2.create_launch_template(
                LaunchTemplateName="traceloom-runner-tests",
                LaunchTemplateData={
                    "ImageId": RUNNER_AMI,
                    "InstanceInitiatedShutdownBehavior": "terminate",
                    "MetadataOptions": {
                        "HttpEndpoint": "enabled",
                        "HttpTokens": "required",
                        "HttpPutResponseHopLimit": 1,
                    },
                    "TagSpecifications": [
                        {"ResourceType": "instance", "Tags": managed},
                        {"ResourceType": "volume", "Tags": managed},
                    ],
                },
            )
            self.template_id = template["LaunchTemplate"]["LaunchTemplateId"]

    async def instances(self, **filters: str) -> list[dict[str, Any]]:
        """Every instance (any state), optionally filtered by tag."""
        async with self.client() as ec2:
            answer = await ec2.describe_instances(
                Filters=[
                    {"Name": f"tag:{k}", "Values": [v]} for k, v in filters.items()
                ]
            )
        return [i for r in answer["Reservations"] for i in r["Instances"]]

    async def running(self, **filters: str) -> list[str]:
        """Ids of the instances that are pending or running."""
        return sorted(
            i["InstanceId"]
            for i in await self.instances(**filters)
            if i["State"]["Name"] in ("pending", "running")
        )


@contextlib.asynccontextmanager
async def moto_ec2(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MotoEc2]:
    """A fresh moto EC2 server on loopback, patched where moto lacks EC2."""
    capacity = FleetCapacity()
    _patch_moto(monkeypatch, capacity)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    session = aioboto3.Session(
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name=REGION,
    )
    moto = MotoEc2(url=f"http://{host}:{port}", session=session, capacity=capacity)
    try:
        await moto.setup()
        yield moto
    finally:
        # moto's backends are global to the process: the next test starts empty.
        moto_api_backend.reset()
        server.stop()


@attrs.define
class _LoopbackHost:
    instance_id: str
    name: str
    folder: Path
    process: asyncio.subprocess.Process


class LoopbackInstances:
    """Stands a loopback SSH host in for each moto instance the provider reaches."""

    def __init__(
        self,
        moto: MotoEc2,
        root: Path,
        *,
        deps_dir: Path,
        netns: str = "off",
        chromium_path: str = "",
    ) -> None:
        self.moto = moto
        self.root = root
        self.deps_dir = deps_dir
        self.netns = netns
        self.chromium_path = chromium_path
        self.hosts: dict[str, _LoopbackHost] = {}
        self.user_data: dict[str, dict[str, str]] = {}
        self._watcher: asyncio.Task[None] | None = None

    def notice_file(self, instance_id: str) -> Path:
        """Where the harness on this instance looks for an interruption notice."""
        return self.root / instance_id / "instance-notice"

    async def resolve(self, instance: Instance) -> Endpoint:
        """The provider's resolver: start the instance's host, say where it is."""
        async with self.moto.client() as ec2:
            answer = await ec2.describe_instance_attribute(
                InstanceId=instance.instance_id, Attribute="userData"
            )
        data = json.loads(base64.b64decode(answer["UserData"]["Value"]))
        self.user_data[instance.instance_id] = data
        folder = self.root / instance.instance_id
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "host_key").write_text(data["hostKey"])
        (folder / "host_key").chmod(0o600)
        (folder / "authorized_keys").write_text(data["authorizedKey"] + "\n")
        name = f"{instance.tags.get(TAG_RUN, 'run')}-{instance.instance_id}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACELOOM_")}
        env["TRACELOOM_NOTICE_FILE"] = str(self.notice_file(instance.instance_id))
        if self.chromium_path:
            env["TRACELOOM_CHROMIUM_PATH"] = self.chromium_path
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "controlplane.fleet.localhost_server",
            "--dir",
            str(folder),
            "--name",
            name,
            "--netns",
            self.netns,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            env=env,
        )
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        assert line.startswith(b"listening "), line
        self.hosts[instance.instance_id] = _LoopbackHost(
            instance.instance_id, name, folder, process
        )
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._follow_terminations())
        return Endpoint(
            address="127.0.0.1",
            port=int(line.split()[1]),
            username="runner",
            work_root=str(folder),
            deps_root=str(self.deps_dir),
        )

    def alive(self) -> list[str]:
        """Instance ids whose loopback host is still running."""
        return sorted(i for i, h in self.hosts.items() if h.process.returncode is None)

    async def _follow_terminations(self) -> None:
        """Stop the host of every instance moto says is gone, as EC2 would."""
        while True:
            await asyncio.sleep(0.3)
            live = self.alive()
            if not live:
                continue
            async with self.moto.client() as ec2:
                answer = await ec2.describe_instances(InstanceIds=live)
            for reservation in answer["Reservations"]:
                for instance in reservation["Instances"]:
                    if instance["State"]["Name"] in ("shutting-down", "terminated"):
                        await self._stop(self.hosts[instance["InstanceId"]])

    async def _stop(self, host: _LoopbackHost) -> None:
        if host.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                host.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(host.process.wait(), 15)
            except TimeoutError:
                host.process.kill()
                await asyncio.wait_for(host.process.wait(), 15)
        await asyncio.to_thread(kill_marked, f"TRACELOOM_HOST={host.name}")

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        for host in self.hosts.values():
            await self._stop(host)
