"""Runs on an on-prem inventory: real OpenSSH servers, unprivileged users.

Each host is an sshd on a loopback port for a user of its own, prepared
with the runner provisioning script (see ``tests/openssh.py``). The control
plane reads the inventory file like an operator's and leases the hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml
from aiohttp.test_utils import TestClient, TestServer

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB
from controlplane.settings import Settings
from controlplane.storage.keys import create_key
from tests.conftest import CHROMIUM, FINISHED, make_repo, run_body, spec, tiny_suite
from tests.openssh import OpenSshHost, client_key, openssh_host, wait_until_gone

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        os.geteuid() != 0, reason="starts sshd and creates users: needs root (CI is)"
    ),
    pytest.mark.skipif(not CHROMIUM, reason="needs Chromium (.ci/run installs it)"),
]

BROWSER_SPEC = """\
import { test, expect } from '@playwright/test';
test('renders a heading', async ({ page }) => {
  await page.setContent('<h1>on prem</h1>');
  await expect(page.locator('h1')).toHaveText('on prem');
});
"""


def gate_spec(gate: Path) -> str:
    """A test that waits until the file ``gate`` exists."""
    return (
        "import { test } from '@playwright/test';\n"
        "import * as fs from 'fs';\n"
        "test('waits for the gate', async () => {\n"
        "  test.setTimeout(180_000);\n"
        f"  while (!fs.existsSync({str(gate)!r}))"
        " await new Promise((r) => setTimeout(r, 100));\n"
        "});\n"
    )


@attrs.frozen
class Plane:
    client: TestClient[Any, Any]
    auth: dict[str, str]
    data_dir: Path

    async def post(self, body: dict[str, Any]) -> str:
        created = await self.client.post("/api/runs", json=body, headers=self.auth)
        assert created.status == 201, await created.text()
        return str((await created.json())["id"])

    async def get(self, run_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/api/runs/{run_id}", headers=self.auth)
        body: dict[str, Any] = await response.json()
        return body

    async def wait(self, run_id: str, *, timeout_s: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = await self.get(run_id)
            if run["status"] in FINISHED:
                return run
            await asyncio.sleep(0.3)
        raise AssertionError(f"run {run_id} did not finish in {timeout_s}s")


@pytest.fixture
def key(tmp_path: Path) -> tuple[Path, str]:
    return client_key(tmp_path)


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder the hosts' users can read (pytest's tmp_path is root's only)."""
    folder = Path(tempfile.mkdtemp(prefix="traceloom-static-e2e-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        for child in folder.iterdir():
            child.unlink()
        folder.rmdir()


@contextlib.asynccontextmanager
async def _plane(
    settings: Settings, tmp_path: Path, entries: list[dict[str, Any]]
) -> AsyncIterator[Plane]:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(yaml.safe_dump({"hosts": entries}))
    configured = attrs.evolve(settings, fleet="static", inventory=str(inventory))
    async with TestClient(TestServer(make_app(settings=configured))) as client:
        secret = await create_key(client.app[DB], name="tests")
        yield Plane(client, {"Authorization": f"Bearer {secret}"}, settings.data_dir)


async def test_run_over_two_hosts_and_three_slots_has_exact_results(
    settings: Settings, tmp_path: Path, key: tuple[Path, str]
) -> None:
    """Three shards on two OpenSSH hosts: every test once, nothing left behind."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/a.spec.ts": spec(("a1", "expect(1).toBe(1);")),
                "tests/b.spec.ts": spec(("b1", "expect(2).toBe(2);"), ("b2", "")),
                "tests/c.spec.ts": spec(("c1", "expect(1).toBe(2);")),
                "tests/d.spec.ts": BROWSER_SPEC,
            }
        ),
    )
    with (
        openssh_host("rack-01", key[1]) as first,
        openssh_host("rack-02", key[1]) as second,
    ):
        entries = [
            first.inventory_entry(key[0], slots=2),
            second.inventory_entry(key[0]),
        ]
        async with _plane(settings, tmp_path, entries) as plane:
            run = await plane.wait(await plane.post(run_body(repo, serverCount=3)))
            tests = await (
                await plane.client.get(
                    f"/api/runs/{run['id']}/tests", headers=plane.auth
                )
            ).json()

        hosts: list[OpenSshHost] = [first, second]
        assert run["status"] == "failed", run["reason"]
        assert run["counts"] == {
            "total": 5,
            "passed": 4,
            "failed": 1,
            "flaky": 0,
            "skipped": 0,
            "didNotRun": 0,
        }
        assert {t["title"]: t["status"] for t in tests["tests"]} == {
            "a1": "passed",
            "b1": "passed",
            "b2": "passed",
            "c1": "failed",
            "renders a heading": "passed",
        }
        assert len(run["shards"]) == 3
        assert {s["host"].split("#")[0] for s in run["shards"]} == {
            "rack-01",
            "rack-02",
        }
        for host in hosts:
            assert await asyncio.to_thread(wait_until_gone, host.uid) == []
            assert list((host.work_root / "runs").iterdir()) == []
        # The operator's key stays where the operator keeps it: never copied.
        keys = settings.data_dir / "keys"
        assert not keys.exists() or list(keys.iterdir()) == []


async def test_a_run_waits_queued_while_every_slot_is_busy(
    settings: Settings, tmp_path: Path, key: tuple[Path, str], shared_dir: Path
) -> None:
    """With the only slot leased, the next run stays queued, then runs."""
    gate = shared_dir / "open"
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite({"tests/gate.spec.ts": gate_spec(gate)}),
    )
    quick = make_repo(
        tmp_path / "quick",
        tiny_suite({"tests/q.spec.ts": spec(("quick", "expect(1).toBe(1);"))}),
    )
    with openssh_host("rack-01", key[1]) as only:
        async with _plane(settings, tmp_path, [only.inventory_entry(key[0])]) as plane:
            first = await plane.post(run_body(repo))
            deadline = time.monotonic() + 180
            while (await plane.get(first))["shards"][:1] == [] or (
                await plane.get(first)
            )["shards"][0]["status"] != "running":
                assert time.monotonic() < deadline, "the first run never started"
                await asyncio.sleep(0.3)
            second = await plane.post(run_body(quick))
            seen = set()
            for _ in range(20):
                seen.add((await plane.get(second))["status"])
                await asyncio.sleep(0.3)
            assert (await plane.get(first))["status"] == "running"
            gate.write_text("go\n")
            first_run = await plane.wait(first)
            second_run = await plane.wait(second)

        assert seen == {"queued"}
        assert first_run["status"] == "passed", first_run["reason"]
        assert second_run["status"] == "passed", second_run["reason"]
        assert await asyncio.to_thread(wait_until_gone, only.uid) == []
