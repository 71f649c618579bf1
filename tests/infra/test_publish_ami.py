"""runner-image/publish-ami.sh: the image ID of the last build goes to SSM."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from terraform_model import REPO_ROOT

PUBLISH = REPO_ROOT / "runner-image" / "publish-ami.sh"

# The fake aws CLI records its arguments, one per line.
FAKE_AWS = '#!/bin/sh\nprintf "%s\\n" "$@" > "$AWS_ARGS_FILE"\n'


def manifest(tmp_path: Path, builds: list[tuple[str, str]], last_run: str) -> Path:
    """A Packer manifest with (run uuid, artifact id) builds."""
    path = tmp_path / "manifest.json"
    path.write_text(
        json.dumps(
            {
                "builds": [
                    {"name": "runner", "packer_run_uuid": run, "artifact_id": artifact}
                    for run, artifact in builds
                ],
                "last_run_uuid": last_run,
            }
        ),
        encoding="utf-8",
    )
    return path


def publish(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run publish-ami.sh with a fake aws first on PATH."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "aws").write_text(FAKE_AWS, encoding="utf-8")
    (bin_dir / "aws").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "AWS_ARGS_FILE": str(tmp_path / "aws-args"),
    }
    return subprocess.run(
        ["bash", str(PUBLISH), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_last_runs_image_is_written_to_the_parameter(tmp_path: Path) -> None:
    """The latest run's AMI (not an older one) is put as an aws:ec2:image."""
    path = manifest(
        tmp_path,
        [
            ("run-1", "eu-west-1:ami-0aaaaaaaaaaaaaaaa"),
            ("run-2", "eu-west-1:ami-0bbbbbbbbbbbbbbbb"),
        ],
        last_run="run-2",
    )

    result = publish(tmp_path, str(path), "eu-west-1", "/traceloom/runner-ami")

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "aws-args").read_text(encoding="utf-8").split("\n")[:-1] == [
        "ssm",
        "put-parameter",
        "--region",
        "eu-west-1",
        "--name",
        "/traceloom/runner-ami",
        "--type",
        "String",
        "--data-type",
        "aws:ec2:image",
        "--value",
        "ami-0bbbbbbbbbbbbbbbb",
        "--overwrite",
    ]


def test_dry_run_prints_the_command_only(tmp_path: Path) -> None:
    """--dry-run shows the aws command and does not run it."""
    path = manifest(
        tmp_path, [("run-1", "eu-west-1:ami-0aaaaaaaaaaaaaaaa")], last_run="run-1"
    )

    result = publish(
        tmp_path, str(path), "eu-west-1", "/traceloom/runner-ami", "--dry-run"
    )

    assert result.returncode == 0, result.stderr
    assert "--value ami-0aaaaaaaaaaaaaaaa" in result.stdout
    assert not (tmp_path / "aws-args").exists()


@pytest.mark.parametrize(
    ("builds", "last_run"),
    [
        ([("run-1", "eu-west-1:ami-0aaaaaaaaaaaaaaaa")], "run-2"),
        ([("run-1", "eu-west-1:not-an-image")], "run-1"),
        ([], "run-1"),
    ],
    ids=["stale-manifest", "not-an-ami", "no-builds"],
)
def test_a_manifest_without_a_fresh_image_is_refused(
    tmp_path: Path, builds: list[tuple[str, str]], last_run: str
) -> None:
    """Nothing is published unless the latest run produced an image ID."""
    path = manifest(tmp_path, builds, last_run)

    result = publish(tmp_path, str(path), "eu-west-1", "/traceloom/runner-ami")

    assert result.returncode == 1
    assert "no image ID" in result.stderr
    assert not (tmp_path / "aws-args").exists()
