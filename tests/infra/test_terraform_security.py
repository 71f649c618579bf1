"""Security properties of the Terraform package, read from its source.

These are the promises the deployment makes (see terraform/README.md):
what the control plane's role may do, what a runner is, who may reach
whom, and how the buckets are protected.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from terraform_model import Module, module_id, unwrap

MANAGED_TAG = "traceloom:managed"

# (actions in one statement, condition operator, condition key, values)
REQUIRED_CONDITIONS = [
    pytest.param(
        {"ec2:CreateFleet", "ec2:RunInstances"},
        "ArnLike",
        "ec2:LaunchTemplate",
        ["${var.launch_template_arn}"],
        id="launch-only-from-the-runner-template",
    ),
    pytest.param(
        {"ec2:CreateTags"},
        "StringEquals",
        "ec2:CreateAction",
        ["CreateFleet", "RunInstances"],
        id="tag-only-while-launching",
    ),
    pytest.param(
        {"ec2:CreateTags"},
        "StringEquals",
        f"aws:RequestTag/{MANAGED_TAG}",
        ["true"],
        id="tag-only-with-the-managed-tag",
    ),
    pytest.param(
        {"ec2:TerminateInstances"},
        "StringEquals",
        f"aws:ResourceTag/{MANAGED_TAG}",
        ["true"],
        id="terminate-only-managed-instances",
    ),
    pytest.param(
        {"iam:PassRole"},
        "StringEquals",
        "iam:PassedToService",
        ["ec2.amazonaws.com"],
        id="pass-role-only-to-ec2",
    ),
]


@pytest.fixture
def controlplane_statements(load_module: dict[str, Module]) -> list[dict[str, Any]]:
    """Statements of the control plane role's policy document."""
    policy = load_module["modules/controlplane"].data_sources[
        ("aws_iam_policy_document", "this")
    ]
    return list(policy["statement"])


def _statements_with(
    statements: list[dict[str, Any]], action: str
) -> list[dict[str, Any]]:
    return [s for s in statements if action in s.get("actions", [])]


def _conditions(statement: dict[str, Any]) -> dict[tuple[str, str], list[str]]:
    return {
        (c["test"], c["variable"]): c["values"] for c in statement.get("condition", [])
    }


class TestControlPlanePolicy:
    """The control plane's IAM role may launch, tag and terminate runners only."""

    @pytest.mark.parametrize(("actions", "test", "key", "values"), REQUIRED_CONDITIONS)
    def test_every_grant_of_the_action_carries_the_condition(
        self,
        controlplane_statements: list[dict[str, Any]],
        actions: set[str],
        test: str,
        key: str,
        values: list[str],
    ) -> None:
        """No statement grants these actions without the condition that limits them."""
        grants = [
            s
            for action in actions
            for s in _statements_with(controlplane_statements, action)
        ]

        unconditioned = [
            s.get("sid") for s in grants if _conditions(s).get((test, key)) != values
        ]

        assert grants, f"no statement grants {sorted(actions)}"
        assert unconditioned == []

    def test_pass_role_names_only_the_runner_role(
        self, controlplane_statements: list[dict[str, Any]]
    ) -> None:
        """iam:PassRole is granted on the runner role's ARN and nothing else."""
        grants = _statements_with(controlplane_statements, "iam:PassRole")

        resources = {r for s in grants for r in s["resources"]}

        assert resources == {"${var.runner_role_arn}"}

    def test_template_versions_only_of_the_runner_template(
        self, controlplane_statements: list[dict[str, Any]]
    ) -> None:
        """Launch template versions (the per-launch user data) only of the runners'."""
        actions = (
            "ec2:CreateLaunchTemplateVersion",
            "ec2:DeleteLaunchTemplateVersions",
        )
        grants = [
            s
            for action in actions
            for s in _statements_with(controlplane_statements, action)
        ]

        resources = {r for s in grants for r in s["resources"]}

        assert len(grants) == 2
        assert resources == {"${var.launch_template_arn}"}

    def test_terminate_is_limited_to_instances(
        self, controlplane_statements: list[dict[str, Any]]
    ) -> None:
        """TerminateInstances names instance ARNs, never "*"."""
        grants = _statements_with(controlplane_statements, "ec2:TerminateInstances")

        resources = [r for s in grants for r in s["resources"]]

        assert resources
        assert all(r.endswith(":instance/*") for r in resources)

    def test_only_describe_calls_use_a_wildcard_resource(
        self, controlplane_statements: list[dict[str, Any]]
    ) -> None:
        """Resource "*" appears only for read-only Describe* calls (AWS requires it)."""
        wildcard_actions = {
            action
            for s in controlplane_statements
            if "*" in s.get("resources", [])
            for action in s["actions"]
        }

        assert "ec2:DescribeSpotPriceHistory" in wildcard_actions
        assert all(a.startswith("ec2:Describe") for a in wildcard_actions)

    def test_no_action_is_a_wildcard(
        self, controlplane_statements: list[dict[str, Any]]
    ) -> None:
        """Every action is named; nothing like "ec2:*" or "s3:*"."""
        actions = [a for s in controlplane_statements for a in s["actions"]]

        assert not [a for a in actions if "*" in a]

    def test_object_access_is_limited_to_its_two_buckets(
        self, controlplane_statements: list[dict[str, Any]]
    ) -> None:
        """S3 permissions name only the artifacts and sources buckets."""
        s3_resources = {
            r
            for s in controlplane_statements
            if any(a.startswith("s3:") for a in s["actions"])
            for r in s["resources"]
        }

        buckets = {r.split(":::", 1)[1].split("/", 1)[0] for r in s3_resources}

        assert buckets == {"${var.artifacts_bucket_name}", "${var.sources_bucket_name}"}

    def test_ssm_access_is_the_runner_image_parameter(
        self, controlplane_statements: list[dict[str, Any]]
    ) -> None:
        """ssm:GetParameter is allowed on the runner image parameter only."""
        grants = _statements_with(controlplane_statements, "ssm:GetParameter")

        assert [s["resources"] for s in grants] == [["${var.ami_ssm_parameter_arn}"]]

    def test_root_module_wires_the_runner_template_and_role(
        self, load_module: dict[str, Module]
    ) -> None:
        """The conditions point at the runners module's own template and role."""
        call = load_module["root"].module_calls["controlplane"]

        assert call["launch_template_arn"] == "${module.runners.launch_template_arn}"
        assert call["runner_role_arn"] == "${module.runners.role_arn}"


class TestRunnerLaunchTemplate:
    """The launch template is the whole definition of a runner."""

    @pytest.fixture
    def template(self, load_module: dict[str, Module]) -> dict[str, Any]:
        """The runners module's launch template."""
        return load_module["modules/runners"].resources[("aws_launch_template", "this")]

    @pytest.mark.parametrize(
        ("setting", "expected"),
        [
            ("http_endpoint", "enabled"),
            ("http_tokens", "required"),
            ("http_put_response_hop_limit", 1),
        ],
    )
    def test_metadata_service_is_imdsv2_with_hop_limit_1(
        self, template: dict[str, Any], setting: str, expected: object
    ) -> None:
        """IMDSv2 only, unreachable from containers or forwarded hops."""
        assert template["metadata_options"][0][setting] == expected

    def test_root_volume_is_encrypted_gp3(self, template: dict[str, Any]) -> None:
        """Every EBS mapping is gp3 and encrypted."""
        volumes = [
            ebs
            for mapping in template["block_device_mappings"]
            for ebs in mapping["ebs"]
        ]

        assert volumes
        assert all(
            v["encrypted"] is True and v["volume_type"] == "gp3" for v in volumes
        )

    def test_image_comes_from_the_ssm_parameter(self, template: dict[str, Any]) -> None:
        """The image ID is resolved from SSM at launch, so new images need no apply."""
        assert template["image_id"] == "resolve:ssm:${var.ami_ssm_parameter_name}"

    def test_shutdown_terminates_and_there_is_no_key_pair(
        self, template: dict[str, Any]
    ) -> None:
        """A runner that shuts down is gone; its SSH keys come from user data."""
        assert template["instance_initiated_shutdown_behavior"] == "terminate"
        assert "key_name" not in template

    def test_runners_get_no_public_address(self, template: dict[str, Any]) -> None:
        """The network interface asks for no public IPv4 address."""
        assert [
            ni["associate_public_ip_address"] for ni in template["network_interfaces"]
        ] == [False]

    def test_instances_and_volumes_carry_the_managed_tag(
        self, template: dict[str, Any], load_module: dict[str, Module]
    ) -> None:
        """Both tag specifications merge in {traceloom:managed = true}."""
        locals_ = load_module["modules/runners"].locals

        tagged = {
            spec["resource_type"]
            for spec in template["tag_specifications"]
            if "local.managed_tags" in spec["tags"]
        }

        assert locals_["managed_tags"] == {MANAGED_TAG: "true"}
        assert tagged == {"instance", "volume"}

    def test_runner_role_has_no_policy_beyond_ssm_core(
        self, load_module: dict[str, Module]
    ) -> None:
        """The runner role has no own policy, at most AmazonSSMManagedInstanceCore."""
        module = load_module["modules/runners"]

        attachments = module.resources_of("aws_iam_role_policy_attachment")

        assert module.resources_of("aws_iam_role_policy") == {}
        assert module.resources_of("aws_iam_policy") == {}
        assert [a["policy_arn"].rsplit("/", 1)[1] for a in attachments.values()] == [
            "AmazonSSMManagedInstanceCore"
        ]


class TestNetworkAccess:
    """Who may reach whom."""

    def test_ssh_reaches_runners_only_from_controlplane(
        self, load_module: dict[str, Module]
    ) -> None:
        """The runners' only ingress is port 22 from the control plane's group."""
        rules = load_module["modules/runners"].resources_of(
            "aws_vpc_security_group_ingress_rule"
        )

        assert [
            (
                r["from_port"],
                r["to_port"],
                r["referenced_security_group_id"],
                "cidr_ipv4" in r,
            )
            for r in rules.values()
        ] == [(22, 22, "${var.controlplane_security_group_id}", False)]

    @pytest.mark.parametrize(
        "name", ["modules/network", "modules/runners", "modules/controlplane", "root"]
    )
    def test_no_ingress_rule_opens_ssh_to_a_cidr(
        self, name: str, load_module: dict[str, Module]
    ) -> None:
        """No ingress rule or inline ingress block admits port 22 from a CIDR."""
        module = load_module[name]
        rules = module.resources_of("aws_vpc_security_group_ingress_rule")
        groups = module.resources_of("aws_security_group")

        open_ssh = [
            rule_name
            for rule_name, rule in rules.items()
            if "referenced_security_group_id" not in rule
            and _port_range_covers(rule, 22, module)
        ]

        assert open_ssh == []
        assert [
            g for g, body in groups.items() if "ingress" in body or "egress" in body
        ] == []

    def test_default_security_group_has_no_rules(
        self, load_module: dict[str, Module]
    ) -> None:
        """The adopted default security group declares no ingress and no egress."""
        group = load_module["modules/network"].resources[
            ("aws_default_security_group", "this")
        ]

        assert "ingress" not in group
        assert "egress" not in group

    def test_subnets_assign_no_public_addresses(
        self, load_module: dict[str, Module]
    ) -> None:
        """Neither private nor public subnets map public IPs on launch."""
        subnets = load_module["modules/network"].resources_of("aws_subnet")

        assert {name: s["map_public_ip_on_launch"] for name, s in subnets.items()} == {
            "private": False,
            "public": False,
        }

    def test_s3_gateway_endpoint_serves_the_private_route_tables(
        self, load_module: dict[str, Module]
    ) -> None:
        """S3 traffic from private subnets takes the gateway endpoint."""
        endpoint = load_module["modules/network"].resources[("aws_vpc_endpoint", "s3")]

        assert endpoint["vpc_endpoint_type"] == "Gateway"
        assert "aws_route_table.private[*].id" in endpoint["route_table_ids"]

    def test_flow_logs_go_to_a_kms_encrypted_log_group(
        self, load_module: dict[str, Module]
    ) -> None:
        """All VPC traffic is logged to a log group encrypted with the KMS key."""
        module = load_module["modules/network"]
        flow_log = module.resources[("aws_flow_log", "this")]
        group = module.resources[("aws_cloudwatch_log_group", "flow_logs")]

        assert flow_log["traffic_type"] == "ALL"
        assert (
            unwrap(flow_log["log_destination"])
            == "aws_cloudwatch_log_group.flow_logs.arn"
        )
        assert unwrap(group["kms_key_id"]) == "var.kms_key_arn"

    def test_controlplane_host_has_imdsv2_and_no_public_address(
        self, load_module: dict[str, Module]
    ) -> None:
        """The host is private, IMDSv2-only and on encrypted volumes."""
        module = load_module["modules/controlplane"]
        host = module.resources[("aws_instance", "this")]
        data = module.resources[("aws_ebs_volume", "data")]

        assert host["associate_public_ip_address"] is False
        assert host["metadata_options"][0]["http_tokens"] == "required"
        assert host["metadata_options"][0]["http_put_response_hop_limit"] == 1
        assert host["root_block_device"][0]["encrypted"] is True
        assert data["encrypted"] is True
        assert "key_name" not in host

    def test_load_balancer_drops_invalid_headers_and_redirects_http(
        self, load_module: dict[str, Module]
    ) -> None:
        """The ALB drops invalid header fields; port 80 only redirects to HTTPS."""
        module = load_module["modules/controlplane"]
        alb = module.resources[("aws_lb", "this")]
        listeners = module.resources_of("aws_lb_listener")

        redirect = listeners["http_redirect"]["default_action"][0]

        assert alb["drop_invalid_header_fields"] is True
        assert listeners["https"]["protocol"] == "HTTPS"
        assert unwrap(listeners["https"]["certificate_arn"]) == "var.certificate_arn"
        assert redirect["type"] == "redirect"
        assert redirect["redirect"][0]["protocol"] == "HTTPS"


def _port_range_covers(rule: dict[str, Any], port: int, module: Module) -> bool:
    """Whether an ingress rule's port range can include ``port``."""
    return any(low <= port <= high for low, high in _port_ranges(rule, module))


def _port_ranges(rule: dict[str, Any], module: Module) -> list[tuple[int, int]]:
    low, high = rule.get("from_port"), rule.get("to_port")
    if isinstance(low, int) and isinstance(high, int):
        return [(low, high)]
    if low == high == "${var.service_port}":
        # The variable's validation keeps the service port at 1024 or above.
        conditions = [
            v["condition"] for v in module.variables["service_port"]["validation"]
        ]
        assert any("var.service_port >= 1024" in c for c in conditions)
        return [(1024, 65535)]
    if low == high == "${each.value[0]}":
        ports = re.search(r"setproduct\(\[([\d, ]+)\]", rule["for_each"])
        assert ports, f"cannot tell the ports of {rule['for_each']}"
        return [(int(p), int(p)) for p in ports[1].split(",")]
    raise AssertionError(f"cannot tell the port range {low}..{high}")


STORAGE_BUCKETS = ["artifacts", "sources", "logs"]
DATA_BUCKETS = ["artifacts", "sources"]
DATA_BUCKET_MODULE = "modules/storage/modules/data-bucket"


def _declaration(load_module: dict[str, Module], bucket: str) -> tuple[Module, str]:
    """The module that declares a bucket's resources, and their name in it.

    The logs bucket is declared in the storage module itself; each data
    bucket is a call of modules/data-bucket, whose resources are all "this".
    """
    storage = load_module["modules/storage"]
    if bucket not in storage.module_calls:
        return storage, bucket
    source = storage.local_module_source(bucket)
    assert source is not None, f"{bucket}: modules here are local"
    return load_module[module_id(source)], "this"


def _in_storage(load_module: dict[str, Module], bucket: str, expression: Any) -> Any:
    """An expression of the bucket's resources as the storage module sets it.

    Inside modules/data-bucket, ``var.X`` is what the storage module's call
    of that bucket passes as X; anything else stays as it is.
    """
    expression = unwrap(expression)
    calls = load_module["modules/storage"].module_calls
    if (
        bucket in calls
        and isinstance(expression, str)
        and expression.startswith("var.")
    ):
        return unwrap(calls[bucket][expression.removeprefix("var.")])
    return expression


def _expiration_days(rule: dict[str, Any]) -> Any:
    """The days after which a lifecycle rule expires current objects, if it does.

    A plain ``expiration`` block gives them directly; modules/data-bucket
    writes the block only when var.expiration_days is set.
    """
    if "expiration" in rule:
        return rule["expiration"][0]["days"]
    for dynamic in rule.get("dynamic", []):
        if "expiration" in dynamic:
            block = dynamic["expiration"]
            assert block["for_each"] == (
                "${var.expiration_days == null ? [] : [var.expiration_days]}"
            )
            assert block["content"][0]["days"] == "${expiration.value}"
            return "var.expiration_days"
    return None


class TestBuckets:
    """Every bucket is private, TLS-only, owner-enforced and cleaned up."""

    @pytest.fixture
    def storage(self, load_module: dict[str, Module]) -> Module:
        """The storage module."""
        return load_module["modules/storage"]

    def test_module_declares_exactly_these_buckets(
        self, storage: Module, load_module: dict[str, Module]
    ) -> None:
        """The bucket list the other tests walk is the module's whole list."""
        data_bucket = load_module[DATA_BUCKET_MODULE]

        called = {
            call: _declaration(load_module, call)[0] for call in storage.module_calls
        }

        assert sorted([*storage.resources_of("aws_s3_bucket"), *called]) == sorted(
            STORAGE_BUCKETS
        )
        assert sorted(called) == DATA_BUCKETS
        assert all(module is data_bucket for module in called.values())
        assert list(data_bucket.resources_of("aws_s3_bucket")) == ["this"]
        assert data_bucket.module_calls == {}

    @pytest.mark.parametrize("bucket", STORAGE_BUCKETS)
    def test_public_access_is_blocked(
        self, load_module: dict[str, Module], bucket: str
    ) -> None:
        """All four public access block settings are on."""
        module, name = _declaration(load_module, bucket)
        block = module.resources[("aws_s3_bucket_public_access_block", name)]

        assert unwrap(block["bucket"]) == f"aws_s3_bucket.{name}.id"
        assert all(
            block[key] is True
            for key in (
                "block_public_acls",
                "block_public_policy",
                "ignore_public_acls",
                "restrict_public_buckets",
            )
        )

    @pytest.mark.parametrize("bucket", STORAGE_BUCKETS)
    def test_policy_denies_requests_without_tls(
        self, load_module: dict[str, Module], bucket: str
    ) -> None:
        """The bucket policy denies every request with aws:SecureTransport = false."""
        module, name = _declaration(load_module, bucket)
        policy = module.resources[("aws_s3_bucket_policy", name)]
        document = module.data_sources[
            ("aws_iam_policy_document", unwrap(policy["policy"]).split(".")[2])
        ]

        tls_denials = [
            s
            for s in document["statement"]
            if s.get("effect") == "Deny"
            and s["actions"] == ["s3:*"]
            and _conditions(s).get(("Bool", "aws:SecureTransport")) == ["false"]
            and s["principals"][0]["identifiers"] == ["*"]
        ]

        assert unwrap(policy["bucket"]) == f"aws_s3_bucket.{name}.id"
        assert len(tls_denials) == 1
        assert len(tls_denials[0]["resources"]) == 2  # the bucket and its objects

    @pytest.mark.parametrize("bucket", STORAGE_BUCKETS)
    def test_ownership_is_enforced(
        self, load_module: dict[str, Module], bucket: str
    ) -> None:
        """ACLs are disabled: the bucket owner owns every object."""
        module, name = _declaration(load_module, bucket)
        controls = module.resources[("aws_s3_bucket_ownership_controls", name)]

        assert controls["rule"][0]["object_ownership"] == "BucketOwnerEnforced"

    @pytest.mark.parametrize("bucket", STORAGE_BUCKETS)
    def test_incomplete_multipart_uploads_are_aborted(
        self, load_module: dict[str, Module], bucket: str
    ) -> None:
        """Every lifecycle rule cleans up abandoned multipart uploads."""
        module, name = _declaration(load_module, bucket)
        lifecycle = module.resources[("aws_s3_bucket_lifecycle_configuration", name)]

        assert all(
            "abort_incomplete_multipart_upload" in rule for rule in lifecycle["rule"]
        )

    @pytest.mark.parametrize("bucket", STORAGE_BUCKETS)
    def test_versioning_is_enabled(
        self, load_module: dict[str, Module], bucket: str
    ) -> None:
        """Overwritten and deleted objects stay recoverable until versions expire."""
        module, name = _declaration(load_module, bucket)
        versioning = module.resources[("aws_s3_bucket_versioning", name)]

        assert versioning["versioning_configuration"][0]["status"] == "Enabled"

    @pytest.mark.parametrize("bucket", DATA_BUCKETS)
    def test_data_buckets_are_encrypted_with_the_kms_key(
        self, load_module: dict[str, Module], bucket: str
    ) -> None:
        """Artifacts and suites are encrypted with the deployment's KMS key."""
        module, name = _declaration(load_module, bucket)
        sse = module.resources[
            ("aws_s3_bucket_server_side_encryption_configuration", name)
        ]

        default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]

        assert default["sse_algorithm"] == "aws:kms"
        assert (
            _in_storage(load_module, bucket, default["kms_master_key_id"])
            == "var.kms_key_arn"
        )

    @pytest.mark.parametrize("bucket", DATA_BUCKETS)
    def test_data_buckets_log_access_to_the_logs_bucket(
        self, load_module: dict[str, Module], bucket: str
    ) -> None:
        """S3 server access logs of the data buckets land in the logs bucket."""
        module, name = _declaration(load_module, bucket)
        logging = module.resources[("aws_s3_bucket_logging", name)]

        assert (
            _in_storage(load_module, bucket, logging["target_bucket"])
            == "aws_s3_bucket.logs.id"
        )

    def test_artifacts_expire_after_the_configured_days(
        self, storage: Module, load_module: dict[str, Module]
    ) -> None:
        """Artifacts expire after var.artifact_expiration_days, validated > 0."""
        module, name = _declaration(load_module, "artifacts")
        lifecycle = module.resources[("aws_s3_bucket_lifecycle_configuration", name)]
        validations = storage.variables["artifact_expiration_days"]["validation"]

        days = _expiration_days(lifecycle["rule"][0])

        assert (
            _in_storage(load_module, "artifacts", days)
            == "var.artifact_expiration_days"
        )
        assert any(
            "var.artifact_expiration_days > 0" in v["condition"] for v in validations
        )

    def test_current_suites_never_expire(self, load_module: dict[str, Module]) -> None:
        """Old versions of a suite expire; the current one waits for the next run."""
        module, name = _declaration(load_module, "sources")
        lifecycle = module.resources[("aws_s3_bucket_lifecycle_configuration", name)]

        rules = lifecycle["rule"]

        assert [
            _in_storage(load_module, "sources", _expiration_days(r)) for r in rules
        ] == [None]
        assert all("noncurrent_version_expiration" in rule for rule in rules)
