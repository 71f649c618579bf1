"""A burst of runs is prepared a few at a time; the rest wait queued."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient, TestServer

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB
from controlplane.settings import Settings
from controlplane.storage.keys import create_key


class SilentGitServer:
    """A TCP server that accepts git's connections and never answers."""

    def __init__(self) -> None:
        self.connections = 0
        self._writers: list[asyncio.StreamWriter] = []

    async def _accept(
        self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        self._writers.append(writer)

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/suite.git"

    async def close(self) -> None:
        for writer in self._writers:
            writer.close()
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def silent() -> AsyncIterator[SilentGitServer]:
    server = SilentGitServer()
    yield server
    await server.close()


async def _until(condition: Any, timeout_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "never happened"
        await asyncio.sleep(0.05)


async def test_runs_beyond_the_preparing_limit_wait_queued(
    settings: Settings, silent: SilentGitServer
) -> None:
    """With room for one, a second run clones only once the first is done."""
    url = await silent.start()
    app = make_app(settings=attrs.evolve(settings, max_preparing_runs=1))
    async with TestClient(TestServer(app)) as client:
        auth = {"Authorization": f"Bearer {await create_key(app[DB], name='t')}"}
        body = {
            "testSource": {"type": "git", "gitRepo": url, "gitBranch": "main"},
            "testPattern": "tests/*.spec.ts",
        }
        first = await (await client.post("/api/runs", json=body, headers=auth)).json()
        second = await (await client.post("/api/runs", json=body, headers=auth)).json()
        await _until(lambda: silent.connections >= 1)
        await asyncio.sleep(1.0)
        waiting = silent.connections
        queued = await (
            await client.get(f"/api/runs/{second['id']}", headers=auth)
        ).json()

        await client.post(f"/api/runs/{first['id']}/cancel", headers=auth)
        await _until(lambda: silent.connections >= 2)
        await client.post(f"/api/runs/{second['id']}/cancel", headers=auth)

    assert waiting == 1
    assert queued["status"] == "queued"
