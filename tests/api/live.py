"""A real control plane on a loopback port, in a thread with its own loop.

For clients that block (the CLI under click's runner, schemathesis): they
cannot share the test's event loop, so the server gets one of its own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import attrs
from aiohttp import web

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB
from controlplane.errors import HostError
from controlplane.fleet.base import FleetProvider, Host
from controlplane.settings import Settings
from controlplane.storage.keys import ALL_SCOPES, create_key

T = TypeVar("T")


@attrs.frozen
class LiveServer:
    url: str
    app: web.Application
    loop: asyncio.AbstractEventLoop

    def call(self, coro: Coroutine[Any, Any, T], timeout_s: float = 60) -> T:
        """Run ``coro`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    def key(self, *, name: str = "tests", scopes: tuple[str, ...] = ALL_SCOPES) -> str:
        return self.call(create_key(self.app[DB], name=name, scopes=scopes))


@contextmanager
def live_server(
    settings: Settings, *, provider: FleetProvider | None = None
) -> Iterator[LiveServer]:
    """Serve the control plane on 127.0.0.1 until the block ends."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="live-server")
    thread.start()
    app = make_app(settings=settings, provider=provider)
    runner = web.AppRunner(app, access_log=None)
    server = LiveServer(url="", app=app, loop=loop)
    try:
        server.call(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        server.call(site.start())
        host, port = runner.addresses[0][:2]
        yield attrs.evolve(server, url=f"http://{host}:{port}")
    finally:
        server.call(runner.cleanup(), timeout_s=120)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=30)
        loop.close()


class RefusingProvider:
    """A fleet that has no hosts: every run that gets this far ends errored."""

    async def acquire(self, run_id: str, count: int) -> list[Host]:
        raise HostError("this test fleet has no hosts")

    async def release(self, run_id: str) -> None:
        return None

    def adopt(self, run_id: str, hosts: list[Host]) -> None:
        return None

    def forget(self, run_id: str) -> None:
        return None

    async def close(self) -> None:
        return None
