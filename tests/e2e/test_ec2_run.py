"""Whole runs through the EC2 Spot provider: moto's EC2, loopback instances.

The control plane is the real one (API, engine, dispatcher, harness, real
Playwright); only EC2 and the machines are stand-ins (see
``tests/fleet/ec2_fakes.py`` for what and why).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from controlplane.api import openapi
from controlplane.api.app import make_app
from controlplane.api.appkeys import DB
from controlplane.fleet.ec2 import Ec2Provider
from controlplane.fleet.ec2_api import TAG_RUN
from controlplane.settings import Settings
from controlplane.storage.keys import create_key
from tests.conftest import (
    FINISHED,
    REPO_ROOT,
    make_repo,
    run_body,
    spec,
    tiny_suite,
    traceloom_processes,
)
from tests.fleet.ec2_fakes import INSTANCE_TYPES, LoopbackInstances, MotoEc2, moto_ec2

pytestmark = pytest.mark.e2e

RELAY = REPO_ROOT / "runner-image" / "files" / "traceloom-notices.sh"
# moto's Spot price history has one price for every type and zone.
MOTO_SPOT_PRICE = 0.00001


@pytest.fixture
async def moto(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[MotoEc2]:
    async with moto_ec2(monkeypatch) as ec2:
        yield ec2


@pytest.fixture
async def loopback(
    moto: MotoEc2, tmp_path: Path, settings: Settings
) -> AsyncIterator[LoopbackInstances]:
    hosts = LoopbackInstances(
        moto,
        tmp_path / "instances",
        deps_dir=settings.host_deps_dir,
        chromium_path=settings.chromium_path,
    )
    yield hosts
    await hosts.close()


@pytest.fixture
async def ec2_client(
    settings: Settings, moto: MotoEc2, loopback: LoopbackInstances
) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str]]]:
    """The control plane on the EC2 provider, and a key's auth header."""
    provider = Ec2Provider(
        config=moto.config(max_instances=4),
        session=moto.session,
        resolve=loopback.resolve,
    )
    app = make_app(settings=settings, provider=provider)
    async with TestClient(TestServer(app)) as client:
        key = await create_key(client.app[DB], name="tests")
        yield client, {"Authorization": f"Bearer {key}"}


async def _get(client: TestClient[Any, Any], auth: dict[str, str], path: str) -> Any:
    response = await client.get(path, headers=auth)
    assert response.status == 200, await response.text()
    return await response.json()


async def _wait(
    client: TestClient[Any, Any], auth: dict[str, str], run_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        body: dict[str, Any] = await _get(client, auth, f"/api/runs/{run_id}")
        if body["status"] in FINISHED:
            return body
        await asyncio.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish")


async def _nothing_left(
    moto: MotoEc2, loopback: LoopbackInstances, run_id: str
) -> None:
    """No instance of the run runs, and no process of its hosts is left."""
    assert await moto.running(**{TAG_RUN: run_id}) == []
    deadline = time.monotonic() + 30
    while loopback.alive() or traceloom_processes(run_id):
        assert time.monotonic() < deadline, (loopback.alive(), run_id)
        await asyncio.sleep(0.2)


async def test_run_on_spot_instances_gives_exact_results_and_leaves_nothing(
    ec2_client: tuple[TestClient[Any, Any], dict[str, str]],
    moto: MotoEc2,
    loopback: LoopbackInstances,
    tmp_path: Path,
) -> None:
    """Two Spot instances run 8 tests; every outcome, the cost, nothing left."""
    client, auth = ec2_client
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/a.spec.ts": spec(("a1", ""), ("a2", "expect(2).toBe(2);")),
                "tests/b.spec.ts": spec(("b1", ""), ("b2", "expect(1).toBe(2);")),
                "tests/c.spec.ts": spec(("c1", ""), ("c2", "")),
                "tests/d.spec.ts": spec(("d1", ""), ("d2", "test.skip(true, 'no');")),
            }
        ),
    )

    created = await client.post("/api/runs", json=run_body(repo, serverCount=2),
                                headers=auth)  # fmt: skip
    run_id = (await created.json())["id"]
    run = await _wait(client, auth, run_id)
    tests = await _get(client, auth, f"/api/runs/{run_id}/tests")

    statuses = {t["title"]: t["status"] for t in tests["tests"]}
    fleet = run["fleet"]
    assert run["status"] == "failed", run["reason"]
    assert run["counts"] == {
        "total": 8, "passed": 6, "failed": 1, "flaky": 0, "skipped": 1, "didNotRun": 0
    }  # fmt: skip
    assert statuses == {
        "a1": "passed", "a2": "passed", "b1": "passed", "b2": "failed",
        "c1": "passed", "c2": "passed", "d1": "passed", "d2": "skipped",
    }  # fmt: skip
    assert sorted(s["host"] for s in run["shards"]) == sorted(loopback.hosts)
    assert len(fleet["instances"]) == 2
    assert {i["lifecycle"] for i in fleet["instances"]} == {"spot"}
    assert set(fleet["instanceTypes"]) <= set(INSTANCE_TYPES)
    assert all(i["terminatedAt"] for i in fleet["instances"])
    assert fleet["hostHours"] > 0
    assert fleet["estimatedCostUsd"] == pytest.approx(
        sum(i["hostHours"] for i in fleet["instances"]) * MOTO_SPOT_PRICE, rel=1e-2
    )
    _matches_the_openapi_run_schema(run)
    await _nothing_left(moto, loopback, run_id)


def _matches_the_openapi_run_schema(run: dict[str, Any]) -> None:
    """The answer, ``fleet`` included, is what the OpenAPI document says."""
    document = openapi.document()
    schema = {"$ref": "#/components/schemas/Run", "components": document["components"]}
    jsonschema.Draft202012Validator(
        schema, format_checker=jsonschema.FormatChecker()
    ).validate(run)


class _FakeImds:
    """A metadata service on loopback with a Spot interruption notice.

    There is no EC2 instance metadata service here; the runner image's real
    relay script polls this one instead, with the same IMDSv2 token dance.
    """

    def __init__(self) -> None:
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_put("/latest/api/token", self._token)
        app.router.add_get("/latest/meta-data/spot/instance-action", self._action)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"

    async def _token(self, request: web.Request) -> web.Response:
        return web.Response(text="token")

    async def _action(self, request: web.Request) -> web.Response:
        if request.headers.get("X-aws-ec2-metadata-token") != "token":
            return web.Response(status=401)
        return web.json_response(
            {"action": "terminate", "time": "2026-12-04T05:00:00Z"}
        )

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


async def test_interruption_notice_mid_shard_moves_the_rest_to_another_host(
    ec2_client: tuple[TestClient[Any, Any], dict[str, str]],
    moto: MotoEc2,
    loopback: LoopbackInstances,
    tmp_path: Path,
) -> None:
    """A Spot notice during a slow test: the host is lost, its rest runs elsewhere.

    The notice goes the real way: metadata, the image's relay, the harness,
    the control plane. Every test then runs to a pass exactly once.
    """
    client, auth = ec2_client
    slow = "await new Promise((r) => setTimeout(r, 15000));"
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/slow.spec.ts": spec(("s1", ""), ("s2", slow), ("s3", "")),
                "tests/quick.spec.ts": spec(("q1", ""), ("q2", "")),
            }
        ),
    )
    imds = _FakeImds()
    await imds.start()
    relay: asyncio.subprocess.Process | None = None
    try:
        created = await client.post("/api/runs", json=run_body(repo, serverCount=2),
                                    headers=auth)  # fmt: skip
        run_id = (await created.json())["id"]
        shard = await _shard_past_first_test(client, auth, run_id, "tests/slow.spec.ts")
        instance_id = shard["host"]
        relay = await asyncio.create_subprocess_exec(
            "bash",
            str(RELAY),
            env={
                "PATH": "/usr/bin:/bin",
                "TRACELOOM_IMDS_URL": imds.url,
                "TRACELOOM_NOTICE_FILE": str(loopback.notice_file(instance_id)),
                "TRACELOOM_NOTICE_INTERVAL_S": "0.2",
            },
            stderr=asyncio.subprocess.DEVNULL,
        )
        run = await _wait(client, auth, run_id)
    finally:
        if relay is not None:
            relay.kill()
            await relay.wait()
        await imds.stop()
    tests = await _get(client, auth, f"/api/runs/{run_id}/tests")

    lost = next(s for s in run["shards"] if s["host"] == instance_id)
    by_title = {t["title"]: t for t in tests["tests"]}
    assert run["status"] == "passed", run["reason"]
    assert run["counts"]["total"] == run["counts"]["passed"] == 5
    assert lost["status"] == "lost"
    assert "spot-interruption terminate" in lost["reason"]
    assert by_title["s1"]["shard"] == lost["index"]
    assert by_title["s2"]["shard"] != lost["index"]
    assert by_title["s3"]["shard"] != lost["index"]
    assert len(by_title["s2"]["attempts"]) == 1
    await _nothing_left(moto, loopback, run_id)


async def _shard_past_first_test(
    client: TestClient[Any, Any], auth: dict[str, str], run_id: str, file: str
) -> dict[str, Any]:
    """The shard running ``file``, once it reported its first test."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run = await _get(client, auth, f"/api/runs/{run_id}")
        for shard in run["shards"]:
            if file in shard["files"] and shard["testsDone"] >= 1:
                return dict(shard)
        assert run["status"] not in FINISHED, run
        await asyncio.sleep(0.2)
    raise AssertionError(f"no shard of {run_id} reported a test of {file}")


async def test_quota_with_no_host_at_all_ends_the_run_errored_with_the_reason(
    ec2_client: tuple[TestClient[Any, Any], dict[str, str]],
    moto: MotoEc2,
    loopback: LoopbackInstances,
    tmp_path: Path,
) -> None:
    """Spot and on-demand quotas both reached: errored, the quota named."""
    client, auth = ec2_client
    moto.capacity.spot = 0
    moto.capacity.spot_error = "MaxSpotInstanceCountExceeded"
    repo = make_repo(
        tmp_path / "repo", tiny_suite({"tests/a.spec.ts": spec(("a", ""))})
    )

    created = await client.post("/api/runs", json=run_body(repo), headers=auth)
    run = await _wait(client, auth, (await created.json())["id"])

    assert run["status"] == "errored"
    assert "account quota" in run["reason"]
    assert "MaxSpotInstanceCountExceeded" in run["reason"]
    assert await moto.running() == []


async def test_cancelled_run_terminates_its_instances(
    ec2_client: tuple[TestClient[Any, Any], dict[str, str]],
    moto: MotoEc2,
    loopback: LoopbackInstances,
    tmp_path: Path,
) -> None:
    """A run cancelled mid-test ends cancelled with no instance or process left."""
    client, auth = ec2_client
    slow = "await new Promise((r) => setTimeout(r, 60000));"
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite({"tests/slow.spec.ts": spec(("s1", ""), ("s2", slow))}),
    )
    created = await client.post("/api/runs", json=run_body(repo), headers=auth)
    run_id = (await created.json())["id"]
    await _shard_past_first_test(client, auth, run_id, "tests/slow.spec.ts")

    cancelled = await client.post(f"/api/runs/{run_id}/cancel", headers=auth)
    run = await _wait(client, auth, run_id)

    assert cancelled.status == 200
    assert run["status"] == "cancelled"
    assert all(i["terminatedAt"] for i in run["fleet"]["instances"])
    await _nothing_left(moto, loopback, run_id)
