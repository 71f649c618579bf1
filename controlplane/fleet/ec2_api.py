"""The EC2 calls of the Spot fleet provider, made through aioboto3.

Requests are built and answers read by plain functions (``fleet_request``,
``read_fleet_answer``), so the shape of what is sent to EC2 is tested apart
from any server. ``Ec2Api`` holds one aiobotocore EC2 client and turns
botocore's errors into ``Ec2Error`` with the error code kept.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import attrs
from botocore.exceptions import BotoCoreError, ClientError

from controlplane.errors import HostError

if TYPE_CHECKING:
    from types_aiobotocore_ec2 import EC2Client

# The launch template tags everything it makes with TAG_MANAGED (the control
# plane's IAM role may tag and terminate only what carries it); the provider
# adds the others at launch.
TAG_MANAGED = "traceloom:managed"
TAG_DEPLOYMENT = "traceloom:deployment"
TAG_RUN = "traceloom:run-id"
TAG_EXPIRES = "traceloom:expires-at"
TAG_LAUNCH = "traceloom:launch"

LIVE_STATES = ("pending", "running", "stopping", "stopped")

# Error codes of a fleet answer: capacity that may come back with time,
# quotas that will not, and everything else, which is a mistake to report.
CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientFreeAddressesInSubnet",
        "UnfulfillableCapacity",
        "SpotMaxPriceTooLow",
        "capacity-not-available",
    }
)
QUOTA_CODES = frozenset(
    {
        "MaxSpotInstanceCountExceeded",
        "VcpuLimitExceeded",
        "InstanceLimitExceeded",
        "MaxFleetCountExceeded",
        "MaxSpotFleetRequestCountExceeded",
    }
)

Lifecycle = Literal["spot", "on-demand"]
ErrorKind = Literal["capacity", "quota", "other"]


class Ec2Error(HostError):
    """An EC2 call failed; ``code`` is EC2's error code (or the botocore error)."""

    def __init__(self, operation: str, code: str, message: str) -> None:
        self.operation = operation
        self.code = code
        super().__init__(f"EC2 {operation} failed: {code}: {message}")


def error_kind(code: str) -> ErrorKind:
    """Whether an EC2 error code is about capacity, a quota, or something else."""
    if code in CAPACITY_CODES:
        return "capacity"
    if code in QUOTA_CODES:
        return "quota"
    return "other"


@attrs.frozen(kw_only=True)
class LaunchSpec:
    """One CreateFleet call: how many instances, of which lifecycle, tagged how."""

    launch_template_id: str
    version: str
    instance_types: Sequence[str]
    subnet_ids: Sequence[str]
    count: int
    lifecycle: Lifecycle
    tags: dict[str, str]
    client_token: str


@attrs.frozen(kw_only=True)
class Launched:
    instance_id: str
    instance_type: str
    lifecycle: Lifecycle
    subnet_id: str | None


@attrs.frozen(kw_only=True)
class LaunchError:
    code: str
    message: str
    lifecycle: str

    @property
    def kind(self) -> ErrorKind:
        return error_kind(self.code)

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


@attrs.frozen(kw_only=True)
class FleetAnswer:
    launched: list[Launched]
    errors: list[LaunchError]


@attrs.frozen(kw_only=True)
class Instance:
    """What DescribeInstances says of one instance."""

    instance_id: str
    state: str
    instance_type: str
    private_ip: str | None
    zone: str | None
    tags: dict[str, str]


def client_token(*parts: str) -> str:
    """A CreateFleet ClientToken (at most 64 ASCII characters) for ``parts``.

    The same parts give the same token, so a call that botocore retries after
    a dropped connection is not launched twice.
    """
    digest = hashlib.sha256("\0".join(parts).encode()).hexdigest()
    return f"traceloom-{digest[:48]}"


def _tag_list(tags: dict[str, str]) -> list[dict[str, str]]:
    return [{"Key": k, "Value": v} for k, v in sorted(tags.items())]


def fleet_request(spec: LaunchSpec) -> dict[str, Any]:
    """The CreateFleet parameters for ``spec``: instant, from the template.

    One override per instance type and subnet lets EC2 pick the pools with
    capacity; Spot goes price-capacity-optimized with no maximum price (the
    on-demand price caps it).
    """
    overrides = [
        {"InstanceType": kind, "SubnetId": subnet}
        for kind in spec.instance_types
        for subnet in spec.subnet_ids
    ]
    request: dict[str, Any] = {
        "Type": "instant",
        "ClientToken": spec.client_token,
        "LaunchTemplateConfigs": [
            {
                "LaunchTemplateSpecification": {
                    "LaunchTemplateId": spec.launch_template_id,
                    "Version": spec.version,
                },
                "Overrides": overrides,
            }
        ],
        "TargetCapacitySpecification": {
            "TotalTargetCapacity": spec.count,
            "DefaultTargetCapacityType": spec.lifecycle,
        },
        "TagSpecifications": [
            {"ResourceType": "fleet", "Tags": _tag_list(spec.tags)},
            {"ResourceType": "instance", "Tags": _tag_list(spec.tags)},
        ],
    }
    if spec.lifecycle == "spot":
        request["SpotOptions"] = {"AllocationStrategy": "price-capacity-optimized"}
    else:
        request["OnDemandOptions"] = {"AllocationStrategy": "lowest-price"}
    return request


def read_fleet_answer(answer: dict[str, Any]) -> FleetAnswer:
    """The instances an instant fleet launched and the errors it reported."""
    launched = []
    for group in answer.get("Instances", []):
        overrides = group.get("LaunchTemplateAndOverrides", {}).get("Overrides", {})
        lifecycle: Lifecycle = (
            "on-demand" if group.get("Lifecycle") == "on-demand" else "spot"
        )
        for instance_id in group.get("InstanceIds", []):
            launched.append(
                Launched(
                    instance_id=instance_id,
                    instance_type=group.get("InstanceType")
                    or overrides.get("InstanceType", ""),
                    lifecycle=lifecycle,
                    subnet_id=overrides.get("SubnetId"),
                )
            )
    errors = [
        LaunchError(
            code=e.get("ErrorCode", "Unknown"),
            message=e.get("ErrorMessage", ""),
            lifecycle=e.get("Lifecycle", ""),
        )
        for e in answer.get("Errors", [])
    ]
    return FleetAnswer(launched=launched, errors=errors)


def read_instance(data: dict[str, Any]) -> Instance:
    return Instance(
        instance_id=data["InstanceId"],
        state=data.get("State", {}).get("Name", "unknown"),
        instance_type=data.get("InstanceType", ""),
        private_ip=data.get("PrivateIpAddress"),
        zone=data.get("Placement", {}).get("AvailabilityZone"),
        tags={t["Key"]: t["Value"] for t in data.get("Tags", [])},
    )


def expiry_tag(at: float) -> str:
    """An expiry time as its tag value: ISO 8601 in UTC, to the second."""
    moment = dt.datetime.fromtimestamp(at, dt.UTC).replace(microsecond=0)
    return moment.isoformat().replace("+00:00", "Z")


def parse_expiry(value: str) -> float | None:
    """The epoch seconds of an expiry tag, or None when it does not parse."""
    try:
        moment = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.timestamp()


def _chunks(items: Sequence[str], size: int) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Ec2Api:
    """The EC2 calls the provider and the reaper make, on one client."""

    def __init__(self, client: EC2Client) -> None:
        self.client = client

    async def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            method = getattr(self.client, operation)
            answer: dict[str, Any] = await method(**params)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise Ec2Error(
                operation, error.get("Code", "Unknown"), error.get("Message", "")
            ) from exc
        except BotoCoreError as exc:
            raise Ec2Error(operation, type(exc).__name__, str(exc)) from exc
        return answer

    async def template_tags(self, template_id: str) -> dict[str, dict[str, str]]:
        """The default version's tags, by resource type (instance, volume)."""
        answer = await self._call(
            "describe_launch_template_versions",
            LaunchTemplateId=template_id,
            Versions=["$Default"],
        )
        versions = answer.get("LaunchTemplateVersions", [])
        if not versions:
            return {}
        specs = versions[0].get("LaunchTemplateData", {}).get("TagSpecifications", [])
        return {
            s["ResourceType"]: {t["Key"]: t["Value"] for t in s.get("Tags", [])}
            for s in specs
        }

    async def create_version(
        self,
        template_id: str,
        *,
        user_data: bytes,
        tags: dict[str, dict[str, str]],
        description: str,
    ) -> str:
        """A version of the template with this user data and tags; its number.

        Everything else comes from the template's default version.
        """
        answer = await self._call(
            "create_launch_template_version",
            LaunchTemplateId=template_id,
            SourceVersion="$Default",
            VersionDescription=description[:255],
            LaunchTemplateData={
                "UserData": base64.b64encode(user_data).decode(),
                "TagSpecifications": [
                    {"ResourceType": kind, "Tags": _tag_list(values)}
                    for kind, values in sorted(tags.items())
                ],
            },
        )
        return str(answer["LaunchTemplateVersion"]["VersionNumber"])

    async def delete_version(self, template_id: str, version: str) -> None:
        await self._call(
            "delete_launch_template_versions",
            LaunchTemplateId=template_id,
            Versions=[version],
        )

    async def create_fleet(self, spec: LaunchSpec) -> FleetAnswer:
        return read_fleet_answer(
            await self._call("create_fleet", **fleet_request(spec))
        )

    async def describe(
        self,
        *,
        instance_ids: Sequence[str] = (),
        tags: dict[str, str] | None = None,
        states: Sequence[str] = (),
    ) -> list[Instance]:
        """Instances by id, or by tags and states; every page is read."""
        filters = [
            {"Name": f"tag:{key}", "Values": [value]}
            for key, value in (tags or {}).items()
        ]
        if states:
            filters.append({"Name": "instance-state-name", "Values": list(states)})
        found: list[Instance] = []
        ids = list(instance_ids)
        batches: Iterable[Sequence[str]] = _chunks(ids, 200) if ids else [()]
        for batch in batches:
            params: dict[str, Any] = {"Filters": filters} if filters else {}
            if batch:
                params["InstanceIds"] = list(batch)
            while True:
                answer = await self._call("describe_instances", **params)
                for reservation in answer.get("Reservations", []):
                    found.extend(read_instance(i) for i in reservation["Instances"])
                token = answer.get("NextToken")
                if not token:
                    break
                params["NextToken"] = token
        return found

    async def terminate(self, instance_ids: Sequence[str]) -> None:
        for batch in _chunks(list(instance_ids), 500):
            await self._call("terminate_instances", InstanceIds=list(batch))

    async def spot_price(self, instance_type: str, zone: str) -> float | None:
        """The latest Spot price in USD per hour of a type in a zone, if known."""
        answer = await self._call(
            "describe_spot_price_history",
            InstanceTypes=[instance_type],
            AvailabilityZone=zone,
            ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
            StartTime=dt.datetime.now(dt.UTC),
            MaxResults=10,
        )
        prices = [
            (p.get("Timestamp"), float(p["SpotPrice"]))
            for p in answer.get("SpotPriceHistory", [])
            if p.get("AvailabilityZone") == zone and p.get("SpotPrice")
        ]
        if not prices:
            return None
        epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
        return max(prices, key=lambda p: p[0] or epoch)[1]


async def sleep_backoff(attempt: int, *, base_s: float, cap_s: float) -> None:
    """Wait ``base_s * 2**attempt`` seconds, at most ``cap_s``."""
    await asyncio.sleep(min(cap_s, base_s * (2**attempt)))
