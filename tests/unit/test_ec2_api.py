"""What the EC2 provider sends and how it reads EC2's answers, without a server."""

from __future__ import annotations

import pytest

from controlplane.fleet.ec2_api import (
    LaunchSpec,
    client_token,
    error_kind,
    expiry_tag,
    fleet_request,
    parse_expiry,
    read_fleet_answer,
)
from controlplane.fleet.usage import usage_json


def _spec(**overrides: object) -> LaunchSpec:
    values: dict[str, object] = {
        "launch_template_id": "lt-0123",
        "version": "7",
        "instance_types": ("c7i.large", "m7i.large"),
        "subnet_ids": ("subnet-a", "subnet-b"),
        "count": 3,
        "lifecycle": "spot",
        "tags": {"traceloom:managed": "true", "traceloom:run-id": "run_1"},
        "client_token": "traceloom-abc",
    }
    values.update(overrides)
    return LaunchSpec(**values)  # type: ignore[arg-type]


def test_spot_request_is_instant_price_capacity_optimized_without_max_price() -> None:
    """Spot: instant, price-capacity-optimized, no MaxPrice anywhere."""
    request = fleet_request(_spec())

    assert request["Type"] == "instant"
    assert request["SpotOptions"] == {"AllocationStrategy": "price-capacity-optimized"}
    assert "MaxPrice" not in repr(request)
    assert request["TargetCapacitySpecification"] == {
        "TotalTargetCapacity": 3,
        "DefaultTargetCapacityType": "spot",
    }
    assert request["ClientToken"] == "traceloom-abc"


def test_overrides_cover_every_type_in_every_subnet() -> None:
    """One override per (instance type, subnet) pair, on the given version."""
    [config] = fleet_request(_spec())["LaunchTemplateConfigs"]

    assert config["LaunchTemplateSpecification"] == {
        "LaunchTemplateId": "lt-0123",
        "Version": "7",
    }
    assert [(o["InstanceType"], o["SubnetId"]) for o in config["Overrides"]] == [
        ("c7i.large", "subnet-a"),
        ("c7i.large", "subnet-b"),
        ("m7i.large", "subnet-a"),
        ("m7i.large", "subnet-b"),
    ]


def test_fleet_and_instances_are_tagged() -> None:
    """The fleet and its instances get the run's tags (the IAM policy needs them)."""
    specs = fleet_request(_spec())["TagSpecifications"]

    assert {s["ResourceType"] for s in specs} == {"fleet", "instance"}
    for spec in specs:
        assert {"Key": "traceloom:managed", "Value": "true"} in spec["Tags"]


def test_on_demand_request_has_no_spot_options() -> None:
    """The on-demand fill asks for on-demand capacity only."""
    request = fleet_request(_spec(lifecycle="on-demand", count=1))

    assert "SpotOptions" not in request
    assert request["TargetCapacitySpecification"]["DefaultTargetCapacityType"] == (
        "on-demand"
    )


def test_answer_gives_instances_with_lifecycle_and_the_errors() -> None:
    """Launched instances keep type, lifecycle and subnet; errors keep their code."""
    answer = read_fleet_answer(
        {
            "FleetId": "fleet-1",
            "Instances": [
                {
                    "InstanceIds": ["i-1", "i-2"],
                    "InstanceType": "c7i.large",
                    "Lifecycle": "spot",
                    "LaunchTemplateAndOverrides": {
                        "Overrides": {"InstanceType": "c7i.large", "SubnetId": "s-a"}
                    },
                },
                {"InstanceIds": ["i-3"], "InstanceType": "m7i.large",
                 "Lifecycle": "on-demand"},
            ],
            "Errors": [
                {
                    "ErrorCode": "InsufficientInstanceCapacity",
                    "ErrorMessage": "no capacity",
                    "Lifecycle": "spot",
                }
            ],
        }
    )  # fmt: skip

    assert [(i.instance_id, i.lifecycle, i.subnet_id) for i in answer.launched] == [
        ("i-1", "spot", "s-a"),
        ("i-2", "spot", "s-a"),
        ("i-3", "on-demand", None),
    ]
    assert [(e.code, e.kind) for e in answer.errors] == [
        ("InsufficientInstanceCapacity", "capacity")
    ]


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("InsufficientInstanceCapacity", "capacity"),
        ("UnfulfillableCapacity", "capacity"),
        ("MaxSpotInstanceCountExceeded", "quota"),
        ("VcpuLimitExceeded", "quota"),
        ("InstanceLimitExceeded", "quota"),
        ("InvalidLaunchTemplateId.NotFound", "other"),
        ("UnauthorizedOperation", "other"),
    ],
)
def test_error_codes_are_sorted_into_capacity_quota_and_other(
    code: str, kind: str
) -> None:
    assert error_kind(code) == kind


def test_client_token_is_stable_and_within_ec2s_limit() -> None:
    """Same parts, same token (a retried call is idempotent); at most 64 chars."""
    token = client_token("launch-1", "0", "spot")

    assert token == client_token("launch-1", "0", "spot")
    assert token != client_token("launch-1", "1", "spot")
    assert len(token) <= 64
    assert token.isascii()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-12-04T05:00:00Z", 1796360400.0),
        ("2026-12-04T05:00:00+00:00", 1796360400.0),
        ("2026-12-04T05:00:00", None),
        ("tomorrow", None),
        ("", None),
    ],
)
def test_expiry_tags_parse_only_with_a_zone(value: str, expected: float | None) -> None:
    assert parse_expiry(value) == expected


def test_expiry_tag_round_trips() -> None:
    assert parse_expiry(expiry_tag(1796360400.4)) == 1796360400.0


def test_usage_sums_hours_and_prices_spot_only() -> None:
    """Cost is hours times the Spot price; on-demand hours are counted apart."""
    records = [
        {
            "instanceId": "i-1",
            "instanceType": "c7i.large",
            "lifecycle": "spot",
            "zone": "eu-west-1a",
            "launchedAt": 0.0,
            "terminatedAt": 1800.0,
            "priceUsdPerHour": 0.04,
        },
        {
            "instanceId": "i-2",
            "instanceType": "m7i.large",
            "lifecycle": "on-demand",
            "launchedAt": 0.0,
            "terminatedAt": None,
            "priceUsdPerHour": None,
        },
    ]

    usage = usage_json(records, now=3600.0)

    assert usage["hostHours"] == 1.5
    assert usage["unpricedHostHours"] == 1.0
    assert usage["estimatedCostUsd"] == 0.02
    assert usage["instanceTypes"] == ["c7i.large", "m7i.large"]
    assert [i["hostHours"] for i in usage["instances"]] == [0.5, 1.0]
    assert usage["instances"][0]["terminatedAt"] == "1970-01-01T00:30:00Z"
