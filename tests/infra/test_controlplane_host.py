"""The control plane host's user data: the settings it gets and the script it runs."""

from __future__ import annotations

import re
import subprocess

import pytest
from terraform_model import TERRAFORM_ROOT, Module

TEMPLATE = (
    TERRAFORM_ROOT / "modules" / "controlplane" / "templates" / "user-data.sh.tftpl"
)

FLEET_SETTINGS = [
    ("TRACELOOM_FLEET", '"ec2"'),
    ("TRACELOOM_LAUNCH_TEMPLATE_ID", "var.launch_template_id"),
    ("TRACELOOM_SUBNET_IDS", 'join(",", var.runner_subnet_ids)'),
    ("TRACELOOM_INSTANCE_TYPES", 'join(",", var.runner_instance_types)'),
    ("TRACELOOM_MAX_INSTANCES", "tostring(var.max_instances)"),
    ("TRACELOOM_MAX_SERVER_COUNT", "tostring(var.max_instances)"),
    ("TRACELOOM_ON_DEMAND_FILL", "tostring(var.allow_on_demand_fill)"),
    ("TRACELOOM_DEPLOYMENT_NAME", "var.name"),
    ("TRACELOOM_ARTIFACTS_BUCKET", "var.artifacts_bucket_name"),
    ("TRACELOOM_SOURCES_BUCKET", "var.sources_bucket_name"),
    ("TRACELOOM_HOST", '"0.0.0.0"'),
    ("TRACELOOM_DATA_DIR", '"/var/lib/traceloom"'),
]

SAMPLE_ENVIRONMENT = {
    "TRACELOOM_FLEET": "ec2",
    "TRACELOOM_SUBNET_IDS": "subnet-0123456789abcdef0,subnet-0fedcba9876543210",
}


@pytest.mark.parametrize(("name", "expression"), FLEET_SETTINGS)
def test_service_environment_carries_the_fleet_settings(
    load_module: dict[str, Module], name: str, expression: str
) -> None:
    """`traceloom serve` is told the fleet, template, subnets, types and buckets."""
    environment = load_module["modules/controlplane"].locals["environment"]

    assert f"{name} = {expression}," in environment


def render(s3_uri: str) -> str:
    """Render the user data template as Terraform would, for sample values.

    Handles exactly the template syntax the file uses: ``${name}``,
    ``${replace(name, "-", "")}``, ``$${`` escapes and the ``%{ if }`` and
    ``%{ for key, value in environment }`` directives with ``~`` strip markers.
    """
    text = TEMPLATE.read_text(encoding="utf-8")
    values = {
        "data_volume_id": "vol-0123456789abcdef0",
        "package_spec": "traceloom==0.1.0",
        "package_s3_uri": s3_uri,
    }

    def loop(match: re.Match[str]) -> str:
        body = match[1]
        return "".join(
            body.replace("${key}", key).replace("${value}", value)
            for key, value in SAMPLE_ENVIRONMENT.items()
        )

    text = re.sub(
        r"%\{ for key, value in environment ~\}\n(.*?)%\{ endfor ~\}\n",
        loop,
        text,
        flags=re.S,
    )
    branch = 1 if s3_uri else 2
    text = re.sub(
        r'%\{ if package_s3_uri != "" ~\}\n(.*?)%\{ else ~\}\n(.*?)%\{ endif ~\}\n',
        lambda m: m[branch],
        text,
        flags=re.S,
    )
    text = text.replace('${replace(data_volume_id, "-", "")}', "vol0123456789abcdef0")
    for name, value in values.items():
        text = text.replace("${" + name + "}", value)
    assert not re.search(r"(?<!\$)\$\{|%\{", text), "template syntax left unrendered"
    return text.replace("$${", "${")


@pytest.mark.parametrize("s3_uri", ["", "s3://bucket/releases/traceloom.whl"])
def test_user_data_renders_to_valid_bash(s3_uri: str) -> None:
    """Both install paths (pip spec or wheel from S3) render to a bash script."""
    script = render(s3_uri)

    result = subprocess.run(
        ["bash", "-n"], input=script, capture_output=True, text=True, check=False
    )

    assert script.startswith("#!/bin/bash\n")
    assert result.returncode == 0, result.stderr
    assert (
        "TRACELOOM_SUBNET_IDS=subnet-0123456789abcdef0,subnet-0fedcba9876543210\n"
        in script
    )
    assert ("s3://bucket/releases/traceloom.whl" in script) == bool(s3_uri)


def test_service_runs_traceloom_serve_unprivileged() -> None:
    """The unit runs `traceloom serve` as the traceloom user with the env file."""
    script = render("")

    unit = script.split("<<'UNIT'\n", 1)[1].split("\nUNIT\n", 1)[0]

    assert "User=traceloom" in unit
    assert "EnvironmentFile=/etc/traceloom/traceloom.env" in unit
    assert re.search(
        r"^ExecStart=\S+/traceloom serve --host \$\{TRACELOOM_HOST\} "
        r"--port \$\{TRACELOOM_PORT\}$",
        unit,
        re.M,
    )
    assert "NoNewPrivileges=true" in unit
