"""Shared fixtures: real git repositories, a real control plane, API keys."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aioboto3
import pytest
from aiohttp.test_utils import TestClient, TestServer

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB
from controlplane.settings import Settings
from controlplane.storage.keys import create_key

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_SUITE = REPO_ROOT / "examples" / "suite"
CHROMIUM = os.environ.get("TRACELOOM_CHROMIUM_PATH") or shutil.which("chromium") or ""
FINISHED = {"passed", "failed", "errored", "cancelled", "timed_out"}


def git(cwd: Path, *args: str) -> str:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
        env={
            **os.environ,
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@example.invalid",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@example.invalid",
        },
    )
    return result.stdout.strip()


def make_repo(path: Path, files: dict[str, str], *, branch: str = "main") -> Path:
    """A git repository at ``path`` holding ``files``, committed on ``branch``."""
    path.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    git(path, "init", "-q", "-b", branch)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "suite")
    return path


def example_suite_files(*, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The example suite's tracked files (no node_modules), plus ``extra``."""
    files: dict[str, str] = {}
    for path in sorted(EXAMPLE_SUITE.rglob("*")):
        rel = path.relative_to(EXAMPLE_SUITE)
        if path.is_file() and not {"node_modules", "test-results"} & set(rel.parts):
            files[rel.as_posix()] = path.read_text(encoding="utf-8")
    files.update(extra or {})
    return files


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One dependency cache for the whole session, as one machine would have."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def settings(tmp_path: Path, shared_cache: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        cache_dir=shared_cache,
        chromium_path=CHROMIUM,
        poll_interval_s=0.2,
        local_max_hosts=4,
        max_server_count=4,
        # A test's app stops with its runs: nothing is left for a next process
        # (tests/e2e/test_restart.py checks the "suspend" default itself).
        shutdown="stop",
    )


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[TestClient[Any, Any]]:
    app = make_app(settings=settings)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


@pytest.fixture
async def api_key(client: TestClient[Any, Any]) -> str:
    return await create_key(client.app[DB], name="tests")


@pytest.fixture
def auth(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}"}


WaitForRun = Callable[..., Any]


@pytest.fixture
def wait_for_run(client: TestClient[Any, Any], auth: dict[str, str]) -> WaitForRun:
    async def wait(run_id: str, *, timeout_s: float = 240) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            response = await client.get(f"/api/runs/{run_id}", headers=auth)
            body: dict[str, Any] = await response.json()
            if body["status"] in FINISHED:
                return body
            await asyncio.sleep(0.3)
        raise AssertionError(f"run {run_id} did not finish in {timeout_s}s")

    return wait


def traceloom_processes(run_id: str) -> list[int]:
    """Pids of every process started by a host of ``run_id`` (or its shards).

    Only this run's hosts count: other runs on the machine are not ours.
    """
    marker = f"TRACELOOM_HOST={run_id}-".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(marker) for v in environ):
            found.append(int(entry.name))
    return found


TINY_CONFIG = """\
import { defineConfig } from '@playwright/test';
export default defineConfig({
  testDir: 'tests',
  workers: 1,
  use: { trace: 'off', screenshot: 'off' },
});
"""


def tiny_suite(specs: dict[str, str], **extra: str) -> dict[str, str]:
    """A minimal suite using the example's package files (so its cache entry)."""
    files = {
        "package.json": (EXAMPLE_SUITE / "package.json").read_text(),
        "package-lock.json": (EXAMPLE_SUITE / "package-lock.json").read_text(),
        "playwright.config.ts": TINY_CONFIG,
    }
    files.update(specs)
    files.update(extra)
    return files


def spec(*titles_and_bodies: tuple[str, str]) -> str:
    """A spec file of plain tests (no browser) with the given bodies."""
    lines = ["import { test, expect } from '@playwright/test';"]
    for title, body in titles_and_bodies:
        lines.append(f"test({title!r}, async () => {{ {body} }});")
    return "\n".join(lines) + "\n"


def run_body(
    repo: Path, pattern: str = "tests/**/*.spec.ts", **extra: Any
) -> dict[str, Any]:
    return {
        "testSource": {"type": "git", "gitRepo": str(repo), "gitBranch": "main"},
        "testPattern": pattern,
        **extra,
    }


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto's S3 server on a loopback port, for the whole session.

    Tests share it, so each uses buckets of its own (``new_bucket``).
    """
    from moto.server import ThreadedMotoServer

    # Its per-request access log is noise in pytest's captured output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


# What aws_env gives botocore; the policy-checking proxy verifies with it.
AWS_TEST_SECRET = "traceloom-moto-secret-key-not-real"


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials and region for moto: never a real account's."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATRACELOOMTESTING")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_TEST_SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


NewBucket = Callable[[], Any]


@pytest.fixture
def new_bucket(moto_endpoint: str, aws_env: None) -> NewBucket:
    """Make an empty bucket of a name no other test uses; return the name."""

    async def make() -> str:
        name = f"tl-{uuid.uuid4().hex[:20]}"
        async with aioboto3.Session().client(
            "s3", endpoint_url=moto_endpoint, region_name="eu-west-1"
        ) as s3:
            await s3.create_bucket(
                Bucket=name,
                CreateBucketConfiguration={"LocationConstraint": "eu-west-1"},
            )
        return name

    return make
