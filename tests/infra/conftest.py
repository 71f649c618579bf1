"""Shared fixtures of the infra checks: the repository and its tools.

These tests need no part of the control plane package: only
python-hcl2, pytest and, for the checkov test, checkov in its own
virtual environment (scripts/check-infra makes it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

INFRA_TESTS = Path(__file__).resolve().parent

# The helpers next to this file (terraform_model, hcl_format) are imported
# by name, whatever import mode pytest runs in.
if str(INFRA_TESTS) not in sys.path:
    sys.path.insert(0, str(INFRA_TESTS))

from terraform_model import REPO_ROOT, TERRAFORM_ROOT, Module  # noqa: E402


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The repository's top folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def terraform_root() -> Path:
    """The Terraform package's root module folder."""
    return TERRAFORM_ROOT


@pytest.fixture(scope="session")
def load_module() -> dict[str, Module]:
    """Parsed Terraform modules by folder, each folder read once per session."""
    return _ModuleCache()


class _ModuleCache(dict[str, Module]):
    """Reads a module folder on first access, e.g. cache["modules/runners"]."""

    def __missing__(self, key: str) -> Module:
        path = TERRAFORM_ROOT if key == "root" else TERRAFORM_ROOT / key
        module = Module.load(path)
        self[key] = module
        return module
