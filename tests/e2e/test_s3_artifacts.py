"""Artifacts in S3: the runner uploads with a presigned POST, the API links.

An on-prem host (real OpenSSH, an unprivileged user) runs a suite whose
failing test leaves a trace and a screenshot. moto's server plays S3,
behind the proxy of ``tests/s3policy.py`` that enforces upload policies as
S3 does (moto does not). The control plane never pulls the files itself.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import aiohttp
import attrs
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB, STORE
from controlplane.settings import Settings
from controlplane.storage.keys import create_key
from controlplane.storage.s3 import S3ArtifactStore
from tests.api.test_dashboard_auth import sign_in
from tests.conftest import (
    AWS_TEST_SECRET,
    CHROMIUM,
    EXAMPLE_SUITE,
    FINISHED,
    NewBucket,
    make_repo,
    run_body,
)
from tests.openssh import client_key, openssh_host, wait_until_gone
from tests.s3policy import policy_checking_proxy

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="starts sshd and creates users: needs root (CI is)"
    ),
    pytest.mark.skipif(not CHROMIUM, reason="needs Chromium (.ci/run installs it)"),
]

CONFIG = """\
import { defineConfig } from '@playwright/test';
export default defineConfig({
  testDir: 'tests',
  workers: 1,
  use: { trace: 'on', screenshot: 'on' },
});
"""

PAGES = """\
import { test, expect } from '@playwright/test';
test('shows the title', async ({ page }) => {
  await page.setContent('<h1>shop</h1>');
  await expect(page.locator('h1')).toHaveText('shop');
});
test('shows the price', async ({ page }) => {
  await page.setContent('<p>price: 3</p>');
  await expect(page.locator('p')).toHaveText('price: 4', { timeout: 1000 });
});
"""


@pytest.fixture
async def endpoint(moto_endpoint: str, aws_env: None) -> AsyncIterator[str]:
    async with policy_checking_proxy(moto_endpoint, AWS_TEST_SECRET) as url:
        yield url


async def test_runner_uploads_to_s3_and_the_api_hands_out_links(
    settings: Settings, tmp_path: Path, endpoint: str, new_bucket: NewBucket
) -> None:
    """Trace and screenshot reach S3 from the host; links are short-lived."""
    repo = make_repo(
        tmp_path / "repo",
        {
            "package.json": (EXAMPLE_SUITE / "package.json").read_text(),
            "package-lock.json": (EXAMPLE_SUITE / "package-lock.json").read_text(),
            "playwright.config.ts": CONFIG,
            "tests/pages.spec.ts": PAGES,
        },
    )
    bucket = await new_bucket()
    key_path, public_key = client_key(tmp_path)
    with openssh_host("rack-01", public_key) as host:
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(
            yaml.safe_dump({"hosts": [host.inventory_entry(key_path)]})
        )
        configured = attrs.evolve(
            settings,
            fleet="static",
            inventory=str(inventory),
            aws_endpoint_url=endpoint,
            artifacts_bucket=bucket,
        )
        async with TestClient(TestServer(make_app(settings=configured))) as client:
            api_key = await create_key(client.app[DB], name="t")
            auth = {"Authorization": f"Bearer {api_key}"}
            created = await client.post("/api/runs", json=run_body(repo), headers=auth)
            run_id = (await created.json())["id"]
            run = await _wait(client, auth, run_id)
            report = await _report(client, auth, run_id)
            tests = (
                await (
                    await client.get(f"/api/runs/{run_id}/tests", headers=auth)
                ).json()
            )["tests"]
            failed = next(t for t in tests if t["status"] == "failed")
            signed_in = await sign_in(client, key=api_key)
            report_page = await client.get(f"/runs/{run_id}/report/")
            report_html = await report_page.text()
            trace_below_run = failed["trace"].split("/", 1)[1]
            on_dashboard = await client.get(
                f"/runs/{run_id}/artifacts/{trace_below_run}"
            )
            dashboard_bytes = await on_dashboard.read()
            trace = await client.get(
                URL(failed["traceUrl"]).path, headers=auth, allow_redirects=False
            )
            shot = await client.get(
                URL(failed["screenshotUrls"][0]).path,
                headers=auth,
                allow_redirects=False,
            )
            anonymous = await client.get(
                URL(failed["traceUrl"]).path, allow_redirects=False
            )
            missing = await client.get(
                f"/api/runs/{run_id}/artifacts/shard-0/nothing.zip", headers=auth
            )
            store = client.app[STORE]
            assert isinstance(store, S3ArtifactStore)
            stored = await store.keys(run_id)
        leftovers = await asyncio.to_thread(
            subprocess.run,
            ["grep", "-rl", AWS_TEST_SECRET, str(host.prefix), f"/home/{host.user}"],
            capture_output=True,
            check=False,
        )
        gone = await asyncio.to_thread(wait_until_gone, host.uid)

    async with aiohttp.ClientSession() as session:
        async with session.get(trace.headers["Location"]) as answer:
            trace_bytes = await answer.read()
        async with session.get(shot.headers["Location"]) as answer:
            shot_bytes = await answer.read()

    assert run["status"] == "failed", run["reason"]
    assert run["counts"]["passed"] == 1
    assert run["counts"]["failed"] == 1
    # The batch that ran the tests (the listing before it has its own number).
    prefix = "/".join(failed["trace"].split("/")[:3]) + "/"
    batch = prefix.rstrip("/").rsplit("-", 1)[1]
    assert prefix.startswith(f"{run_id}/shard-0/batch-")
    assert failed["trace"] in stored
    assert failed["screenshots"][0] in stored
    report_prefix = f"{run_id}/report/"
    assert [k for k in stored if not k.startswith((prefix, report_prefix))] == []
    assert any(k.endswith(".png") for k in stored)
    assert f"{prefix}blob/report-{batch}.zip" in stored
    assert trace.status == 307
    assert trace.headers["Cache-Control"] == "no-store"
    link = parse_qs(urlsplit(trace.headers["Location"]).query)
    assert link["X-Amz-Expires"] == ["300"]
    assert "X-Amz-Signature" in link
    assert trace_bytes[:2] == b"PK"
    assert shot.status == 307
    assert shot_bytes[:8] == b"\x89PNG\r\n\x1a\n"
    assert anonymous.status == 401
    assert missing.status == 404
    # The merge read the blob from S3, and the report lives there too; the
    # dashboard streams both report and attachments through its own origin.
    assert report["status"] == "ready", report["reason"]
    assert f"{run_id}/report/index.html" in stored
    assert signed_in.status == 303
    assert report_page.status == 200
    assert "<html" in report_html.lower()
    assert on_dashboard.status == 200
    assert on_dashboard.headers["Content-Security-Policy"] == "sandbox"
    assert dashboard_bytes == trace_bytes
    # Uploaded from the host directly: nothing went through the data folder.
    assert not (settings.data_dir / "artifacts").exists()
    # The runner never had the secret key, not even in a file it was sent.
    assert leftovers.returncode == 1, leftovers.stdout
    assert gone == []


async def _report(
    client: TestClient[Any, Any], auth: dict[str, str], run_id: str
) -> dict[str, Any]:
    """The run's report once its merge is over (it starts as the run ends)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run = await (await client.get(f"/api/runs/{run_id}", headers=auth)).json()
        report: dict[str, Any] | None = run.get("report")
        if report is not None and report["status"] != "building":
            return report
        await asyncio.sleep(0.3)
    raise AssertionError(f"the report of {run_id} was not built")


async def _wait(
    client: TestClient[Any, Any], auth: dict[str, str], run_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run: dict[str, Any] = await (
            await client.get(f"/api/runs/{run_id}", headers=auth)
        ).json()
        if run["status"] in FINISHED:
            return run
        await asyncio.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish")
