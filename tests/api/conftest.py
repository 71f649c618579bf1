"""Keys with a single scope, for the 403 side of each endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.api.appkeys import DB
from controlplane.storage.keys import create_key


async def _bearer(client: TestClient[Any, Any], scope: str) -> dict[str, str]:
    secret = await create_key(client.app[DB], name=scope, scopes=(scope,))
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
async def read_only(client: TestClient[Any, Any]) -> dict[str, str]:
    return await _bearer(client, "runs:read")


@pytest.fixture
async def trigger_only(client: TestClient[Any, Any]) -> dict[str, str]:
    return await _bearer(client, "runs:trigger")
