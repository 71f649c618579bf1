"""checkov over terraform/: no failed check beyond the skips in .checkov.yaml."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from terraform_model import TERRAFORM_ROOT

# Installing checkov on a fresh machine takes a minute or two.
pytestmark = pytest.mark.timeout(900)

INFRA_TESTS = Path(__file__).resolve().parent
CONFIG = TERRAFORM_ROOT / ".checkov.yaml"

# A launch template that lets instances use IMDSv1: checkov must flag it.
INSECURE_TEMPLATE = """\
resource "aws_launch_template" "this" {
  name_prefix = "insecure-"

  metadata_options {
    http_endpoint = "enabled"
    http_tokens   = "optional"
  }
}
"""


def checkov_version() -> str:
    """The checkov version pinned in requirements-checkov.txt."""
    text = (INFRA_TESTS / "requirements-checkov.txt").read_text(encoding="utf-8")
    match = re.search(r"^checkov==(\S+)$", text, re.M)
    assert match, "requirements-checkov.txt pins no checkov version"
    return match[1]


def find_checkov() -> str:
    """$CHECKOV, else checkov's own virtual environment, made here if missing.

    The environment is the one scripts/check-infra makes:
    ~/.cache/traceloom/checkov-VERSION. It is made on first use so that the
    test also runs inside the whole suite (scripts/test), which does not go
    through scripts/check-infra.
    """
    if os.environ.get("CHECKOV"):
        return os.environ["CHECKOV"]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    venv = cache / "traceloom" / f"checkov-{checkov_version()}"
    checkov = venv / "bin" / "checkov"
    if not checkov.is_file():
        _make_checkov_venv(venv)
    return str(checkov)


def _make_checkov_venv(venv: Path) -> None:
    shutil.rmtree(venv, ignore_errors=True)
    for command in (
        [sys.executable, "-m", "venv", str(venv)],
        [
            str(venv / "bin" / "pip"),
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "-r",
            str(INFRA_TESTS / "requirements-checkov.txt"),
        ],
    ):
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=600, check=False
        )
        if result.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            pytest.fail(f"could not install checkov into {venv}:\n{result.stderr}")


def run_checkov(directory: Path) -> dict[str, Any]:
    """Run checkov with the repository's config over ``directory``; its JSON report."""
    completed = subprocess.run(
        [
            find_checkov(),
            "--directory",
            str(directory),
            "--config-file",
            str(CONFIG),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "BC_SKIP_MAPPING": "TRUE", "LOG_LEVEL": "WARNING"},
    )
    assert completed.returncode in (0, 1), completed.stderr
    report = json.loads(completed.stdout)
    assert isinstance(report, dict), "checkov ran more than the terraform framework"
    return report


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    """checkov's report on terraform/, made once for this module."""
    return run_checkov(TERRAFORM_ROOT)


def test_checkov_finds_no_failed_check(report: dict[str, Any]) -> None:
    """Every check checkov runs on terraform/ passes."""
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']})"
        for c in report["results"]["failed_checks"]
    ]

    assert failed == []


def test_checkov_parsed_every_file_and_many_resources(report: dict[str, Any]) -> None:
    """The scan saw the whole package: no parsing errors, dozens of resources."""
    summary = report["summary"]

    assert summary["parsing_errors"] == 0
    assert summary["resource_count"] >= 50
    assert summary["passed"] >= 200


def test_every_skipped_check_says_why() -> None:
    """Each check skipped in .checkov.yaml follows a comment with its reason."""
    lines = CONFIG.read_text(encoding="utf-8").splitlines()
    skip_at = lines.index("skip-check:")

    unexplained = [
        line.strip()
        for previous, line in zip(lines[skip_at:], lines[skip_at + 1 :], strict=False)
        if line.strip().startswith("- ") and not previous.strip().startswith("#")
    ]

    assert any(line.strip().startswith("- CKV") for line in lines[skip_at:])
    assert unexplained == []


def test_checkov_reports_an_insecure_launch_template(tmp_path: Path) -> None:
    """The same checkov set-up does flag a real problem (IMDSv1 allowed)."""
    (tmp_path / "main.tf").write_text(INSECURE_TEMPLATE, encoding="utf-8")

    report = run_checkov(tmp_path)

    failed = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert "CKV_AWS_79" in failed
