"""An operator can forbid runs of repositories on the control plane's disk."""

from __future__ import annotations

import attrs
from aiohttp.test_utils import TestClient, TestServer

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB
from controlplane.settings import Settings
from controlplane.storage.keys import create_key


async def test_local_paths_are_refused_when_not_allowed(settings: Settings) -> None:
    """With allow_local_repos off, a path as gitRepo is a 400 naming the field."""
    app = make_app(settings=attrs.evolve(settings, allow_local_repos=False))
    async with TestClient(TestServer(app)) as client:
        key = await create_key(client.app[DB], name="t")
        response = await client.post(
            "/api/runs",
            json={
                "testSource": {"type": "git", "gitRepo": "/etc", "gitBranch": "main"},
                "testPattern": "*.ts",
            },
            headers={"Authorization": f"Bearer {key}"},
        )
        body = await response.json()

    assert response.status == 400
    assert "testSource.gitRepo" in body["fields"]
