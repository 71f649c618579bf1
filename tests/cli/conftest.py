"""A real control plane on a loopback port for the CLI to talk to."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from controlplane.settings import Settings
from tests.api.live import LiveServer, live_server


@pytest.fixture
def server(settings: Settings, tmp_path: Path) -> Iterator[LiveServer]:
    """The server logs to a file of its own, so the CLI's output stays its own.

    (Click's runner captures this process's stdout and stderr while a command
    runs, and the server shares the process.)
    """
    with (tmp_path / "server.log").open("w") as log:
        structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=log))
        try:
            with live_server(settings) as running:
                yield running
        finally:
            structlog.reset_defaults()


@pytest.fixture
def cli_env(server: LiveServer) -> dict[str, str]:
    """What a CI job sets: the server's URL and an API key with every scope."""
    return {"TRACELOOM_URL": server.url, "TRACELOOM_API_KEY": server.key()}
