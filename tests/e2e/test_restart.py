"""A control plane killed mid-run (kill -9) takes its runs up again."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.conftest import (
    CHROMIUM,
    FINISHED,
    make_repo,
    run_body,
    spec,
    tiny_suite,
    traceloom_processes,
)

pytestmark = pytest.mark.e2e


class Server:
    """``traceloom serve`` as its own process, so it can really be killed."""

    def __init__(self, data_dir: Path, cache_dir: Path) -> None:
        self.data_dir = data_dir
        self.cache_dir = cache_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.key = ""
        self.log: IO[bytes] | None = None

    def _close_log(self) -> None:
        if self.log is not None:
            self.log.close()
            self.log = None

    def start(self, *, shutdown: str = "stop") -> None:
        """Start serving; ``shutdown`` is what a SIGTERM does to runs in flight."""
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        env = {
            **os.environ,
            "TRACELOOM_CACHE_DIR": str(self.cache_dir),
            "TRACELOOM_CHROMIUM_PATH": CHROMIUM,
            "TRACELOOM_POLL_INTERVAL_S": "0.2",
            "TRACELOOM_LOCAL_IDLE_TIMEOUT_S": "60",
            "TRACELOOM_SHUTDOWN": shutdown,
        }
        self._close_log()
        self.log = (self.data_dir.parent / "server.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir)],
            env=env, stdout=self.log, stderr=self.log,
        )  # fmt: skip
        for _ in range(100):
            try:
                self.call("GET", "/healthz")
                return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("server did not start")

    def create_key(self) -> None:
        out = subprocess.run(
            [sys.executable, "-m", "controlplane", "keys", "create", "--name", "t",
             "--data-dir", str(self.data_dir)],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        self.key = out.stdout.split()[-1]

    def call(self, method: str, path: str, body: Any = None) -> Any:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={"Authorization": f"Bearer {self.key}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())

    def wait(
        self, run_id: str, condition: Callable[[Any], bool], timeout_s: float
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            run = self.call("GET", f"/api/runs/{run_id}")
            if condition(run):
                return run
            time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not reach the state in time")

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self._close_log()


@pytest.fixture
def server(tmp_path: Path, shared_cache: Path) -> Iterator[Server]:
    running = Server(tmp_path / "data", shared_cache)
    running.start()
    running.create_key()
    yield running
    running.stop()


def _suite(tmp_path: Path) -> Path:
    wait = "await new Promise((r) => setTimeout(r, 2_500));"
    return make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                f"tests/f{n}.spec.ts": spec((f"f{n} t1", wait), (f"f{n} t2", wait))
                for n in range(4)
            }
        ),
    )


def _kill_hosts(run_id: str) -> None:
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"controlplane.fleet.localhost_server" in argv and any(
            a.startswith(run_id.encode()) for a in argv
        ):
            os.kill(int(entry.name), signal.SIGKILL)


def test_run_resumes_on_its_hosts_after_kill_9(server: Server, tmp_path: Path) -> None:
    """Killed mid-run and started again: the run ends with every test once."""
    repo = _suite(tmp_path)
    run_id = server.call("POST", "/api/runs", run_body(repo, serverCount=2))["id"]
    server.wait(run_id, lambda r: r["counts"]["passed"] >= 1, 120)

    server.kill()
    server.start()
    run = server.wait(run_id, lambda r: r["status"] in FINISHED, 180)
    tests = server.call("GET", f"/api/runs/{run_id}/tests")["tests"]

    assert run["status"] == "passed", run["reason"]
    assert sorted(t["title"] for t in tests) == sorted(
        f"f{n} t{m}" for n in range(4) for m in (1, 2)
    )
    assert run["counts"]["passed"] == 8
    assert not traceloom_processes(run_id)


def test_a_graceful_restart_loses_no_run(server: Server, tmp_path: Path) -> None:
    """SIGTERM (a redeploy) leaves the run going on its hosts; it resumes there."""
    repo = _suite(tmp_path)
    server.stop()
    server.start(shutdown="suspend")
    run_id = server.call("POST", "/api/runs", run_body(repo, serverCount=2))["id"]
    before = server.wait(run_id, lambda r: r["counts"]["passed"] >= 1, 120)

    server.stop()
    between = traceloom_processes(run_id)
    server.start()
    run = server.wait(run_id, lambda r: r["status"] in FINISHED, 180)
    tests = server.call("GET", f"/api/runs/{run_id}/tests")["tests"]

    assert between, "the run's hosts and shards went on while it was down"
    assert run["status"] == "passed", run["reason"]
    assert sorted(t["title"] for t in tests) == sorted(
        f"f{n} t{m}" for n in range(4) for m in (1, 2)
    )
    assert run["counts"] == {**before["counts"], "total": 8, "passed": 8}
    assert {s["host"] for s in run["shards"]} == {s["host"] for s in before["shards"]}
    assert all(s["status"] == "passed" for s in run["shards"])
    assert not traceloom_processes(run_id)


def test_run_whose_hosts_are_gone_ends_errored_keeping_results(
    server: Server, tmp_path: Path
) -> None:
    """No host answers after the restart: errored, with the results so far."""
    repo = _suite(tmp_path)
    run_id = server.call("POST", "/api/runs", run_body(repo, serverCount=2))["id"]
    before = server.wait(run_id, lambda r: r["counts"]["passed"] >= 1, 120)

    server.kill()
    _kill_hosts(run_id)
    server.start()
    run = server.wait(run_id, lambda r: r["status"] in FINISHED, 120)

    tests = server.call("GET", f"/api/runs/{run_id}/tests")["tests"]

    assert run["status"] == "errored"
    assert "no host of the run answers" in run["reason"]
    assert run["counts"]["passed"] >= before["counts"]["passed"]
    # Every listed test is in the record: those that never ran as didNotRun.
    assert run["counts"]["total"] == len(tests) == 8
    assert run["counts"]["didNotRun"] == 8 - run["counts"]["passed"] > 0
    assert not traceloom_processes(run_id)

    rerun = server.call("POST", f"/api/runs/{run_id}/rerun", {})
    again = server.wait(rerun["id"], lambda r: r["status"] in FINISHED, 180)

    assert again["status"] == "passed", again["reason"]
    assert again["counts"]["total"] == run["counts"]["didNotRun"]


def test_killed_while_listing_with_an_early_batch_running(
    server: Server, tmp_path: Path
) -> None:
    """kill -9 before the listing ended: listed again, the early batch kept.

    The second host's batch began before the listing (a guess); after the
    restart the listing runs again, confirms the guess, and the batch,
    still running on its host, is followed to its end: every test once.
    """
    listing_ms = 15_000
    config = (
        "import { defineConfig } from '@playwright/test';\n"
        "if (process.argv.includes('--list')) {\n"
        "  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0,"
        f" {listing_ms});\n"
        "}\n"
        "export default defineConfig({ testDir: 'tests', workers: 1 });\n"
    )
    wait = "await new Promise((r) => setTimeout(r, 3_000));"
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {f"tests/f{n}.spec.ts": spec((f"f{n}", wait)) for n in range(3)},
            **{"playwright.config.ts": config},
        ),
    )
    run_id = server.call("POST", "/api/runs", run_body(repo, serverCount=2))["id"]
    server.wait(run_id, lambda r: r["firstTestAt"] is not None, 120)
    listed = server.call("GET", f"/api/runs/{run_id}")["projects"]

    server.kill()
    server.start()
    run = server.wait(run_id, lambda r: r["status"] in FINISHED, 240)
    tests = server.call("GET", f"/api/runs/{run_id}/tests")["tests"]

    assert not listed, "the listing had not ended when the server was killed"
    assert run["status"] == "passed", run["reason"]
    assert sorted((t["title"], len(t["attempts"])) for t in tests) == [
        ("f0", 1),
        ("f1", 1),
        ("f2", 1),
    ]
    assert not traceloom_processes(run_id)
