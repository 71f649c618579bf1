"""The demo behind ``scripts/demo``: one run of the example suite, end to end.

It talks to the control plane only through its public surface: the
``traceloom`` command and the HTTP API, as a CI pipeline would.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SUITE = ROOT / "examples" / "suite"
TRACELOOM = [sys.executable, "-m", "controlplane"]
FINISHED = {"passed", "failed", "errored", "cancelled", "timed_out"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def call(url: str, key: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    data = None if body is None else json.dumps(body).encode()
    # The URL is always the demo's own http://127.0.0.1 server.
    request = urllib.request.Request(  # noqa: S310
        url, data=data, method="POST" if data else "GET"
    )
    request.add_header("Authorization", f"Bearer {key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        result: dict[str, Any] = json.loads(response.read())
        return result


def suite_repository(target: Path) -> Path:
    """A git repository holding the example suite, as a team's would."""
    shutil.copytree(
        SUITE, target, ignore=shutil.ignore_patterns("node_modules", "test-results")
    )
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "demo",
        "GIT_AUTHOR_EMAIL": "demo@example.invalid",
        "GIT_COMMITTER_NAME": "demo",
        "GIT_COMMITTER_EMAIL": "demo@example.invalid",
    }
    for args in (
        ["init", "-q", "-b", "main"],
        ["add", "-A"],
        ["commit", "-qm", "suite"],
    ):
        subprocess.run(["git", *args], cwd=target, env=env, check=True)
    return target


def server_env(**extra: str) -> dict[str, str]:
    """The environment for ``traceloom serve``: hosts get Debian's Chromium.

    As scripts/test and scripts/demo set it: local hosts have no Playwright
    browsers of their own, and a run whose browser no host has errors.
    """
    env = {**os.environ, **extra}
    if not env.get("TRACELOOM_CHROMIUM_PATH"):
        env["TRACELOOM_CHROMIUM_PATH"] = shutil.which("chromium") or ""
    return env


def wait_healthy(base: str, server: subprocess.Popen[bytes]) -> None:
    for _ in range(100):
        if server.poll() is not None:
            sys.exit("demo: the control plane exited; see its log above")
        try:
            with urllib.request.urlopen(f"{base}/healthz", timeout=2):  # noqa: S310
                return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.2)
    sys.exit("demo: the control plane did not become healthy")


def follow(base: str, key: str, run_id: str) -> dict[str, Any]:
    last = ""
    while True:
        run = call(f"{base}/api/runs/{run_id}", key)
        c = run["counts"]
        done = c["passed"] + c["failed"] + c["flaky"] + c["skipped"]
        line = f"  {run['status']:<12} {done} tests done ({c['failed']} failed)"
        if line != last:
            print(line, flush=True)
            last = line
        if run["status"] in FINISHED:
            return run
        time.sleep(1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hosts", type=int, default=3, help="serverCount of the run")
    parser.add_argument(
        "--data-dir", type=Path, default=ROOT / ".traceloom-demo", help="state folder"
    )
    args = parser.parse_args()

    data_dir = args.data_dir.resolve()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log_path = data_dir / "server.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log, tempfile.TemporaryDirectory() as tmp:
        server = subprocess.Popen(
            [*TRACELOOM, "serve", "--port", str(port), "--data-dir", str(data_dir)],
            stdout=log,
            stderr=log,
            env=server_env(),
        )
        try:
            wait_healthy(base, server)
            print(f"demo: control plane at {base} (log: {log_path})")
            created = subprocess.run(
                [
                    *TRACELOOM,
                    "keys",
                    "create",
                    "--name",
                    "demo",
                    "--data-dir",
                    str(data_dir),
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            key = created.stdout.strip().splitlines()[-1]
            repo = suite_repository(Path(tmp) / "suite")
            started = time.monotonic()
            run = call(
                f"{base}/api/runs",
                key,
                {
                    "testSource": {
                        "type": "git",
                        "gitRepo": str(repo),
                        "gitBranch": "main",
                    },
                    "testPattern": "tests/**/*.spec.ts",
                    "serverCount": args.hosts,
                    "name": "demo: example suite",
                    "triggerSource": "manual",
                },
            )
            print(f"demo: run {run['id']} created on {args.hosts} local hosts")
            run = follow(base, key, run["id"])
            wall_s = time.monotonic() - started
            report(base, key, run, wall_s, data_dir)
        finally:
            server.terminate()
            server.wait(30)
    return 0 if run["status"] == "passed" else 1


def report(
    base: str, key: str, run: dict[str, Any], wall_s: float, data_dir: Path
) -> None:
    tests = call(f"{base}/api/runs/{run['id']}/tests", key)["tests"]
    print()
    print(f"status: {run['status']}" + (f" ({run['reason']})" if run["reason"] else ""))
    print("counts: " + ", ".join(f"{k} {v}" for k, v in run["counts"].items()))
    print(f"wall time from POST to verdict: {wall_s:.1f}s")
    for shard in run["shards"]:
        print(
            f"  shard {shard['index']} on {shard['host']}: {shard['status']},"
            f" {len(shard['files'])} files, {shard['counts']['total']} tests"
        )
    for test in tests:
        if test["status"] not in ("passed",):
            print(f"  {test['status']:<9} {test['file']}: {test['title']}")
    print(f"artifacts: {data_dir / 'artifacts' / run['id']}")
    print(f"server log: {data_dir / 'server.log'}")


if __name__ == "__main__":
    sys.exit(main())
