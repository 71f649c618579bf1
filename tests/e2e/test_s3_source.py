"""Runs of ``{"type": "s3"}`` sources: a zipped suite from moto's S3, end to end.

moto's server plays S3 (no AWS account is reachable from here); the
control plane reaches it over HTTP through aioboto3, as it would AWS.
"""

from __future__ import annotations

import asyncio
import io
import stat
import time
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aioboto3
import attrs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB
from controlplane.settings import Settings
from controlplane.storage.keys import create_key
from tests.conftest import FINISHED, NewBucket, spec, tiny_suite, traceloom_processes

pytestmark = pytest.mark.e2e

SUITE = tiny_suite(
    {
        "tests/a.spec.ts": spec(("adds", "expect(1 + 1).toBe(2);")),
        "tests/b.spec.ts": spec(
            ("subtracts", "expect(3 - 1).toBe(2);"),
            ("fails", "expect(1).toBe(2);"),
        ),
    }
)


def zipped(files: dict[str, str], *, windows: bool = False) -> bytes:
    """A zip of ``files``; with ``windows``, names use backslashes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in files.items():
            archive.writestr(name.replace("/", "\\") if windows else name, text)
    return buffer.getvalue()


async def put(endpoint: str, bucket: str, key: str, data: bytes) -> None:
    async with aioboto3.Session().client(
        "s3", endpoint_url=endpoint, region_name="eu-west-1"
    ) as s3:
        await s3.put_object(Bucket=bucket, Key=key, Body=data)


@attrs.frozen
class Plane:
    client: TestClient[Any, Any]
    auth: dict[str, str]
    bucket: str
    endpoint: str

    async def run(self, key: str, **extra: Any) -> dict[str, Any]:
        """Post a run of ``s3://bucket/key`` and wait for its end."""
        source = {"type": "s3", "bucket": self.bucket, "key": key}
        created = await self.client.post(
            "/api/runs",
            json={"testSource": source, "testPattern": "tests/**/*.spec.ts", **extra},
            headers=self.auth,
        )
        assert created.status == 201, await created.text()
        run_id = (await created.json())["id"]
        return await wait_for(self.client, self.auth, run_id)


async def wait_for(
    client: TestClient[Any, Any], auth: dict[str, str], run_id: str
) -> dict[str, Any]:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        body: dict[str, Any] = await (
            await client.get(f"/api/runs/{run_id}", headers=auth)
        ).json()
        if body["status"] in FINISHED:
            return body
        await asyncio.sleep(0.3)
    raise AssertionError(f"run {run_id} did not finish")


@pytest.fixture
async def plane(
    settings: Settings, moto_endpoint: str, new_bucket: NewBucket
) -> AsyncIterator[Plane]:
    bucket = await new_bucket()
    configured = attrs.evolve(
        settings,
        aws_endpoint_url=moto_endpoint,
        sources_bucket=bucket,
        source_unpacked_max_bytes=2_000_000,
    )
    async with TestClient(TestServer(make_app(settings=configured))) as client:
        key = await create_key(client.app[DB], name="tests")
        yield Plane(client, {"Authorization": f"Bearer {key}"}, bucket, moto_endpoint)


async def test_zipped_suite_runs_with_exact_results(plane: Plane) -> None:
    """A suite zipped on Windows runs from S3 like a clone of the same files."""
    await put(
        plane.endpoint, plane.bucket, "suites/app.zip", zipped(SUITE, windows=True)
    )

    run = await plane.run("suites/app.zip", serverCount=2)

    assert run["status"] == "failed", run["reason"]
    assert run["reason"] == "1 tests failed"
    assert run["counts"] == {
        "total": 3,
        "passed": 2,
        "failed": 1,
        "flaky": 0,
        "skipped": 0,
        "didNotRun": 0,
    }
    assert run["testSource"] == {
        "type": "s3",
        "bucket": plane.bucket,
        "key": "suites/app.zip",
    }
    assert run["specFiles"] == 2
    assert not traceloom_processes(run["id"])


def _link(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name)
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    return info


async def test_unsafe_zip_ends_errored_naming_the_entry(plane: Plane) -> None:
    """A zip with a symbolic link is refused whole; the run says which entry."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in SUITE.items():
            archive.writestr(name, text)
        archive.writestr(_link("tests/secrets"), "/etc")
    await put(plane.endpoint, plane.bucket, "suites/linked.zip", buffer.getvalue())

    run = await plane.run("suites/linked.zip")

    assert run["status"] == "errored"
    assert "'tests/secrets' is a symbolic link" in run["reason"]
    assert f"s3://{plane.bucket}/suites/linked.zip" in run["reason"]
    assert run["shards"] == []


@pytest.mark.parametrize(
    ("key", "body", "reason"),
    [
        ("suites/missing.zip", None, "NoSuchKey"),
        ("suites/not-a-zip.zip", b"PK? no, plain text", "not a valid zip file"),
        ("suites/big.zip", zipped({"big.txt": "x" * 3_000_000}), "more than the"),
    ],
    ids=["missing", "not-a-zip", "too-large"],
)
async def test_unusable_objects_end_errored_with_the_reason(
    plane: Plane, key: str, body: bytes | None, reason: str
) -> None:
    """A missing key, a non-zip or an oversized zip: errored, with why."""
    if body is not None:
        await put(plane.endpoint, plane.bucket, key, body)

    run = await plane.run(key)

    assert run["status"] == "errored"
    assert reason in run["reason"]


async def test_other_buckets_are_refused_at_the_door(plane: Plane) -> None:
    """With a sources bucket set, a run naming another bucket is a 400."""
    created = await plane.client.post(
        "/api/runs",
        json={
            "testSource": {"type": "s3", "bucket": "someone-elses", "key": "x.zip"},
            "testPattern": "tests/**/*.spec.ts",
        },
        headers=plane.auth,
    )

    assert created.status == 400
    assert (await created.json())["fields"] == {
        "testSource.bucket": f"must be {plane.bucket!r} on this control plane"
    }
