"""The runner image's Packer template: valid for Debian's packer 1.6.6, well built."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from terraform_model import REPO_ROOT, load_hcl

TEMPLATE = REPO_ROOT / "runner-image" / "runner.pkr.hcl"
CANONICAL_OWNER = "099720109477"


def packer() -> str:
    """Debian's packer; CI installs it, so a missing packer fails the test."""
    found = shutil.which("packer") or (
        "/usr/bin/packer" if Path("/usr/bin/packer").exists() else None
    )
    if found is None:
        pytest.fail("packer is not installed (apt-get install packer); CI installs it")
    return found


def validate(template: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``packer validate`` on ``template`` from ``cwd``, offline."""
    return subprocess.run(
        [packer(), "validate", str(template)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
    )


@pytest.mark.parametrize(
    "cwd", [REPO_ROOT, REPO_ROOT / "runner-image"], ids=["repo", "image"]
)
def test_packer_validates_the_template(cwd: Path) -> None:
    """`packer validate` accepts the template from the repository root or its folder."""
    result = validate(TEMPLATE, cwd)

    assert result.returncode == 0, result.stdout + result.stderr


def test_packer_validate_rejects_a_template_without_its_script(tmp_path: Path) -> None:
    """Validation really checks the files it provisions: a lone template copy fails."""
    lonely = tmp_path / "runner.pkr.hcl"
    shutil.copy(TEMPLATE, lonely)

    result = validate(lonely, tmp_path)

    assert result.returncode != 0
    assert "provision.sh" in result.stdout + result.stderr


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    """The Packer template parsed with python-hcl2."""
    return load_hcl(TEMPLATE)


@pytest.fixture(scope="module")
def source(template: dict[str, Any]) -> dict[str, Any]:
    """The amazon-ebs source block."""
    return template["source"][0]["amazon-ebs"]["runner"]


def test_base_image_is_the_latest_canonical_ubuntu_2404(source: dict[str, Any]) -> None:
    """The base AMI is Ubuntu 24.04 (noble) owned by Canonical, the most recent one."""
    ami_filter = source["source_ami_filter"][0]

    assert ami_filter["owners"] == [CANONICAL_OWNER]
    assert ami_filter["most_recent"] is True
    assert "ubuntu-noble-24.04" in ami_filter["filters"]["name"]


def test_root_volume_is_encrypted_gp3(source: dict[str, Any]) -> None:
    """The build instance's root volume (and so the snapshot) is gp3 and encrypted."""
    mappings = source["launch_block_device_mappings"]

    assert [(m["volume_type"], m["encrypted"]) for m in mappings] == [("gp3", True)]


def test_image_name_carries_the_build_time(source: dict[str, Any]) -> None:
    """Every build gets a distinct, sortable image name."""
    assert source["ami_name"] == "traceloom-runner-${local.build_time}"
    assert source["tags"]["Name"] == "traceloom-runner-${local.build_time}"


def test_one_provisioning_script_runs_in_image_mode(template: dict[str, Any]) -> None:
    """provision.sh is the only script, run with PROVISION_MODE=image."""
    provisioners = template["build"][0]["provisioner"]
    scripts = [
        body for p in provisioners for kind, body in p.items() if kind == "shell"
    ]

    script_runs = [s for s in scripts if "script" in s]

    assert [s["script"] for s in script_runs] == ["${path.root}/provision.sh"]
    assert "PROVISION_MODE=image" in script_runs[0]["environment_vars"]


def test_build_publishes_the_image_to_the_ssm_parameter(
    template: dict[str, Any],
) -> None:
    """After the build, publish-ami.sh writes the image ID to /traceloom/runner-ami."""
    post = template["build"][0]["post-processors"][0]["post-processor"]
    commands = [
        line for p in post for body in p.values() for line in body.get("inline", [])
    ]

    assert any("publish-ami.sh" in command for command in commands)
    assert {
        name: body["default"] for v in template["variable"] for name, body in v.items()
    }["ssm_parameter_name"] == "/traceloom/runner-ami"
