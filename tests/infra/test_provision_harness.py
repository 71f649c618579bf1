"""provision.sh's harness step, run for real by an unprivileged user.

The step is the part of the runner provisioning that also runs without
root (an on-prem host where the harness lives in the runner's own
prefix). A temporary user is created for each test and removed after it.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from terraform_model import REPO_ROOT

PROVISION = REPO_ROOT / "runner-image" / "provision.sh"

# Paths the harness step must never touch, whoever runs it.
ROOT_OWNED_PATHS = [
    Path("/opt/traceloom"),
    Path("/etc/environment"),
    Path("/etc/passwd"),
    Path("/etc/ssh/sshd_config"),
    Path("/etc/ssh/sshd_config.d"),
    Path("/usr/local/bin/node"),
]

# The fake harness: a shell entry point, .cjs modules, a nested folder,
# an executable without .sh, and a __pycache__ that must not be copied.
HARNESS_FILES = {
    "traceloom-harness.sh": ("#!/bin/sh\necho harness\n", 0o755),
    "reporter.cjs": ("module.exports = {};\n", 0o644),
    "browsers.cjs": ("module.exports = {};\n", 0o644),
    "lib/util.cjs": ("module.exports = 1;\n", 0o644),
    "lib/helper.sh": ("echo helper\n", 0o644),
    "bin/collect": ("#!/bin/sh\n", 0o755),
    "__pycache__/x.cpython-311.pyc": ("", 0o644),
}


@dataclass
class Sandbox:
    """A temporary user, a harness source and a prefix the user owns."""

    user: str
    uid: int
    root: Path
    source: Path
    prefix: Path
    script: Path
    sentinel: Path


def _snapshot(paths: list[Path]) -> dict[Path, tuple[int, int, float] | None]:
    """Mode, owner and modification time of each path (None if absent)."""
    found: dict[Path, tuple[int, int, float] | None] = {}
    for path in paths:
        try:
            info = path.lstat()
        except FileNotFoundError:
            found[path] = None
        else:
            found[path] = (info.st_mode, info.st_uid, info.st_mtime)
    return found


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    """Create a throwaway user and a world-readable work area; remove both after."""
    if os.geteuid() != 0:
        pytest.fail(
            "this test creates a user with useradd and needs root (CI runs as root)"
        )

    user = f"tlinfra{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", user],
        check=True,
        capture_output=True,
    )
    root = Path(tempfile.mkdtemp(prefix="traceloom-harness-test-"))
    try:
        root.chmod(0o755)
        uid = pwd.getpwnam(user).pw_uid
        source = root / "src"
        for name, (content, mode) in HARNESS_FILES.items():
            path = source / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content, encoding="utf-8")
            path.chmod(mode)
        for directory in [source, *(p for p in source.rglob("*") if p.is_dir())]:
            directory.chmod(0o755)
        prefix = root / "prefix"
        prefix.mkdir()
        os.chown(prefix, uid, uid)
        script = root / "provision.sh"
        shutil.copy(PROVISION, script)
        script.chmod(0o755)
        sentinel = root / "root-owned"
        sentinel.mkdir()
        (sentinel / "keep").write_text("root's\n", encoding="utf-8")

        yield Sandbox(user, uid, root, source, prefix, script, sentinel)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        subprocess.run(["userdel", user], check=False, capture_output=True)


def run_as(
    user: str, script: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run ``script args`` as ``user`` (runuser), with ``env`` added."""
    return subprocess.run(
        [
            "runuser",
            "-u",
            user,
            "--",
            "env",
            *(f"{k}={v}" for k, v in env.items()),
            "bash",
            str(script),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd="/",
    )


def install(sandbox: Sandbox, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the harness step as the sandbox user into its prefix."""
    settings = {
        "HARNESS_SRC": str(sandbox.source),
        "TRACELOOM_PREFIX": str(sandbox.prefix),
        "TRACELOOM_USER": sandbox.user,
        **env,
    }
    return run_as(sandbox.user, sandbox.script, "harness", **settings)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestHarnessStep:
    """`provision.sh harness` installs the harness and nothing else."""

    def test_files_land_with_their_modes_and_owner(self, sandbox: Sandbox) -> None:
        """Files 0644, scripts and executables 0755, folders 0755, all the user's."""
        result = install(sandbox)

        harness = sandbox.prefix / "harness"
        assert result.returncode == 0, result.stderr
        assert {
            p.relative_to(harness).as_posix(): _mode(p)
            for p in sorted(harness.rglob("*"))
        } == {
            "bin": 0o755,
            "bin/collect": 0o755,
            "browsers.cjs": 0o644,
            "lib": 0o755,
            "lib/helper.sh": 0o755,
            "lib/util.cjs": 0o644,
            "reporter.cjs": 0o644,
            "traceloom-harness.sh": 0o755,
        }
        assert _mode(harness) == 0o755
        assert {p.stat().st_uid for p in [harness, *harness.rglob("*")]} == {
            sandbox.uid
        }
        assert (harness / "reporter.cjs").read_text(
            encoding="utf-8"
        ) == "module.exports = {};\n"

    def test_work_folder_belongs_to_the_user_alone(self, sandbox: Sandbox) -> None:
        """The shard work folder is the user's, closed to others."""
        result = install(sandbox)

        work = sandbox.prefix / "work"
        assert result.returncode == 0, result.stderr
        assert work.stat().st_uid == sandbox.uid
        assert _mode(work) == 0o750

    def test_root_owned_paths_are_not_touched(self, sandbox: Sandbox) -> None:
        """System paths and a root-owned folder beside the prefix stay as they were."""
        watched = [*ROOT_OWNED_PATHS, sandbox.sentinel, sandbox.sentinel / "keep"]
        before = _snapshot(watched)

        result = install(sandbox)

        assert result.returncode == 0, result.stderr
        assert _snapshot(watched) == before
        assert sorted(p.name for p in sandbox.root.iterdir()) == [
            "prefix",
            "provision.sh",
            "root-owned",
            "src",
        ]

    def test_running_twice_replaces_the_harness_cleanly(self, sandbox: Sandbox) -> None:
        """A second run installs the new source and leaves no staging folders."""
        first = install(sandbox)
        (sandbox.source / "lib" / "util.cjs").unlink()
        (sandbox.source / "new.cjs").write_text(
            "module.exports = 2;\n", encoding="utf-8"
        )
        (sandbox.source / "new.cjs").chmod(0o644)

        second = install(sandbox)

        harness = sandbox.prefix / "harness"
        assert first.returncode == 0, first.stderr
        assert second.returncode == 0, second.stderr
        assert (harness / "new.cjs").is_file()
        assert not (harness / "lib" / "util.cjs").exists()
        assert sorted(p.name for p in sandbox.prefix.iterdir()) == ["harness", "work"]

    def test_a_root_owned_prefix_is_refused(self, sandbox: Sandbox) -> None:
        """Without write access to the prefix the step fails and writes nothing."""
        result = install(sandbox, TRACELOOM_PREFIX=str(sandbox.sentinel))

        assert result.returncode == 1
        assert "not writable" in result.stderr
        assert sorted(p.name for p in sandbox.sentinel.iterdir()) == ["keep"]

    def test_another_users_install_needs_root(self, sandbox: Sandbox) -> None:
        """An unprivileged user cannot install the harness for someone else."""
        result = install(sandbox, TRACELOOM_USER="root")

        assert result.returncode == 1
        assert "only be installed for yourself" in result.stderr
        assert list(sandbox.prefix.iterdir()) == []

    def test_a_missing_source_is_reported(self, sandbox: Sandbox) -> None:
        """A HARNESS_SRC that is not a folder fails with its name."""
        missing = sandbox.root / "nowhere"

        result = install(sandbox, HARNESS_SRC=str(missing))

        assert result.returncode == 1
        assert str(missing) in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["bogus"], {}, "unknown step bogus"),
        (
            ["harness"],
            {"PROVISION_MODE": "cloud"},
            "PROVISION_MODE must be image or onprem",
        ),
    ],
)
def test_usage_errors_exit_2(
    sandbox: Sandbox, args: list[str], env: dict[str, str], message: str
) -> None:
    """An unknown step or mode is a usage error, before anything is done."""
    result = run_as(sandbox.user, sandbox.script, *args, **env)

    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    "step", ["base", "user", "node", "playwright", "ssh", "boot", "seal"]
)
def test_system_steps_refuse_to_run_without_root(sandbox: Sandbox, step: str) -> None:
    """Every step but harness needs root and says so instead of half-working."""
    result = run_as(sandbox.user, sandbox.script, step, PROVISION_MODE="image")

    assert result.returncode == 1
    assert f"step '{step}' needs root" in result.stderr
