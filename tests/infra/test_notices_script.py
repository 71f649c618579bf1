"""runner-image/files/traceloom-notices.sh against a fake IMDSv2 on loopback.

On a runner the relay runs as root and polls the instance metadata service;
here it polls a small metadata server on 127.0.0.1 (there is no metadata
service on this machine) and writes to a temporary notice file.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from terraform_model import REPO_ROOT

RELAY = REPO_ROOT / "runner-image" / "files" / "traceloom-notices.sh"
TOKEN = "fake-imds-token"


@dataclass
class Metadata:
    """Metadata paths the fake serves (others are 404) and what it was asked."""

    paths: dict[str, bytes] = field(default_factory=dict)
    untokened: int = 0
    url: str = ""


def _handler(state: Metadata) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            if self.path == "/latest/api/token":
                self._answer(200, TOKEN.encode())
            else:
                self._answer(404, b"")

        def do_GET(self) -> None:
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                state.untokened += 1
                self._answer(401, b"")
            elif self.path in state.paths:
                self._answer(200, state.paths[self.path])
            else:
                self._answer(404, b"")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    return Handler


@pytest.fixture
def metadata() -> Iterator[Metadata]:
    state = Metadata()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def relay(metadata: Metadata, tmp_path: Path) -> Iterator[Path]:
    """The relay running against the fake; yields its notice file."""
    notice = tmp_path / "run" / "instance-notice"
    process = subprocess.Popen(
        ["bash", str(RELAY)],
        env={
            "PATH": "/usr/bin:/bin",
            "TRACELOOM_IMDS_URL": metadata.url,
            "TRACELOOM_NOTICE_FILE": str(notice),
            "TRACELOOM_NOTICE_INTERVAL_S": "0.2",
        },
        stderr=subprocess.PIPE,
    )
    try:
        yield notice
    finally:
        process.kill()
        process.wait(timeout=10)
        assert process.stderr is not None
        process.stderr.close()


def wait_for_text(path: Path, timeout_s: float = 30) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.1)
    raise AssertionError(f"{path} was not written within {timeout_s}s")


def test_no_notice_writes_nothing(metadata: Metadata, relay: Path) -> None:
    """While the metadata has no notice, no notice file appears."""
    metadata.paths["/latest/meta-data/instance-id"] = b"i-0123"
    time.sleep(1.5)

    assert not relay.exists()
    assert metadata.untokened == 0


def test_spot_interruption_is_relayed(metadata: Metadata, relay: Path) -> None:
    """An instance-action notice becomes one line naming the action and time."""
    time.sleep(0.5)
    metadata.paths["/latest/meta-data/spot/instance-action"] = json.dumps(
        {"action": "terminate", "time": "2026-12-04T05:00:00Z"}
    ).encode()

    text = wait_for_text(relay)

    assert text == "spot-interruption terminate at 2026-12-04T05:00:00Z\n"
    assert relay.stat().st_mode & 0o777 == 0o644
    assert metadata.untokened == 0


def test_rebalance_recommendation_is_relayed(metadata: Metadata, relay: Path) -> None:
    """A rebalance recommendation is relayed too, with its notice time."""
    metadata.paths["/latest/meta-data/events/recommendations/rebalance"] = json.dumps(
        {"noticeTime": "2026-12-04T04:58:00Z"}
    ).encode()

    text = wait_for_text(relay)

    assert text == "rebalance-recommendation at 2026-12-04T04:58:00Z\n"


def test_first_notice_stays(metadata: Metadata, relay: Path) -> None:
    """A later notice does not replace the one the harness may already have."""
    metadata.paths["/latest/meta-data/events/recommendations/rebalance"] = json.dumps(
        {"noticeTime": "2026-12-04T04:58:00Z"}
    ).encode()
    first = wait_for_text(relay)
    metadata.paths["/latest/meta-data/spot/instance-action"] = json.dumps(
        {"action": "stop", "time": "2026-12-04T05:00:00Z"}
    ).encode()
    time.sleep(1.0)

    assert relay.read_text() == first
