"""The API over an S3 artifact store that cannot be reached: 503s, no 500."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB
from controlplane.settings import Settings
from controlplane.storage.keys import create_key


@pytest.fixture
async def unreachable(
    settings: Settings, aws_env: None
) -> AsyncIterator[tuple[TestClient[Any, Any], dict[str, str]]]:
    # Port 1 on loopback: nothing listens, every S3 call fails to connect.
    configured = attrs.evolve(
        settings,
        aws_endpoint_url="http://127.0.0.1:1",
        artifacts_bucket="tl-unreachable",
    )
    async with TestClient(TestServer(make_app(settings=configured))) as client:
        secret = await create_key(client.app[DB], name="tests")
        yield client, {"Authorization": f"Bearer {secret}"}


async def test_artifacts_and_readiness_say_the_store_is_unavailable(
    unreachable: tuple[TestClient[Any, Any], dict[str, str]],
) -> None:
    """An artifact link answers 503 with the reason; /readyz is not ready."""
    client, auth = unreachable
    created = await client.post(
        "/api/runs",
        json={
            "testSource": {"type": "s3", "bucket": "suites", "key": "app.zip"},
            "testPattern": "tests/**/*.spec.ts",
        },
        headers=auth,
    )
    run_id = (await created.json())["id"]

    artifact = await client.get(
        f"/api/runs/{run_id}/artifacts/shard-0/batch-0/trace.zip",
        headers=auth,
        allow_redirects=False,
    )
    ready = await client.get("/readyz")

    assert artifact.status == 503
    assert (await artifact.json())["error"] == "store_unavailable"
    assert ready.status == 503
    assert "tl-unreachable" in (await ready.json())["checks"]["artifactStore"]
