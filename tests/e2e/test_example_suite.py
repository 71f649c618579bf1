"""The whole path with real git, real SSH hosts, real Playwright and Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient
from yarl import URL

from controlplane.harness import HARNESS_DIR
from tests.conftest import (
    CHROMIUM,
    EXAMPLE_SUITE,
    WaitForRun,
    example_suite_files,
    make_repo,
    traceloom_processes,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM, reason="needs Chromium (.ci/run installs it)"),
]

FLAGS = {"EXAMPLE_FAIL": "1", "EXAMPLE_FLAKY": "1"}
TRACELOOM_YML = "env:\n" + "".join(f"  {k}: '{v}'\n" for k, v in FLAGS.items())


def _reference_run(tmp: Path) -> dict[str, Any]:
    """One plain ``npx playwright test`` of the example suite, on this machine."""
    suite = tmp / "suite"
    shutil.copytree(
        EXAMPLE_SUITE,
        suite,
        ignore=shutil.ignore_patterns("node_modules", "test-results", "*-report"),
    )
    env = {**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1"}
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund"],
        cwd=suite, env=env, check=True, capture_output=True, timeout=600,
    )  # fmt: skip
    subprocess.run(
        [
            "node",
            str(HARNESS_DIR / "browsers.cjs"),
            str(suite),
            str(tmp / "b"),
            CHROMIUM,
        ],
        check=True,
        timeout=60,
    )
    events = tmp / "events.jsonl"
    report = tmp / "report.json"
    run_env = {
        **env,
        **FLAGS,
        "CI": "1",
        "PLAYWRIGHT_BROWSERS_PATH": str(tmp / "b"),
        "PLAYWRIGHT_JSON_OUTPUT_NAME": str(report),
        "TRACELOOM_EVENTS": str(events),
        "TRACELOOM_SUITE_DIR": str(suite),
    }
    reporters = f"--reporter=json,{HARNESS_DIR / 'reporter.cjs'}"
    subprocess.run(
        ["npx", "playwright", "test", reporters],
        cwd=suite, env=run_env, capture_output=True, timeout=600, check=False,
    )  # fmt: skip
    stats = json.loads(report.read_text())["stats"]
    outcomes: dict[tuple[str, str, str], str] = {}
    names = {
        "expected": "passed",
        "unexpected": "failed",
        "flaky": "flaky",
        "skipped": "skipped",
    }
    listed = {}
    for line in events.read_text().splitlines():
        event = json.loads(line)
        if event["type"] == "begin":
            listed = {
                t["id"]: (t["file"], t["project"], t["title"]) for t in event["tests"]
            }
        elif event["type"] == "testEnd":
            outcomes[listed[event["id"]]] = names[event["outcome"]]
    return {"stats": stats, "outcomes": outcomes}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _reference_run(tmp_path_factory.mktemp("reference"))


async def test_three_hosts_report_what_a_single_playwright_run_reports(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
    reference: dict[str, Any],
) -> None:
    """A run over 3 local hosts gives the same tests, statuses and counts."""
    repo = make_repo(
        tmp_path / "repo",
        example_suite_files(extra={"traceloom.yml": TRACELOOM_YML}),
    )

    created = await client.post(
        "/api/runs",
        json={
            "testSource": {"type": "git", "gitRepo": str(repo), "gitBranch": "main"},
            "testPattern": "tests/**/*.spec.ts",
            "serverCount": 3,
            "name": "example on 3 hosts",
        },
        headers=auth,
    )
    run = await wait_for_run((await created.json())["id"])
    tests = (
        await (await client.get(f"/api/runs/{run['id']}/tests", headers=auth)).json()
    )["tests"]

    assert created.status == 201
    assert run["status"] == "failed", run["reason"]
    assert len(run["shards"]) == 3
    assert {s["status"] for s in run["shards"]} <= {"passed", "failed"}
    got = {(t["file"], t["project"], t["title"]): t["status"] for t in tests}
    assert got == reference["outcomes"]
    stats = reference["stats"]
    assert run["counts"] == {
        "total": len(reference["outcomes"]),
        "passed": stats["expected"],
        "failed": stats["unexpected"],
        "flaky": stats["flaky"],
        "skipped": stats["skipped"],
        "didNotRun": 0,
    }
    assert run["counts"]["failed"] == 1
    assert run["counts"]["flaky"] == 1
    assert not traceloom_processes(run["id"])


async def test_failed_test_keeps_its_trace_and_screenshot(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """The failing test's trace and screenshots are served from the store."""
    repo = make_repo(
        tmp_path / "repo",
        example_suite_files(extra={"traceloom.yml": "env:\n  EXAMPLE_FAIL: '1'\n"}),
    )

    created = await client.post(
        "/api/runs",
        json={
            "testSource": {"type": "git", "gitRepo": str(repo), "gitBranch": "main"},
            "testPattern": "tests/**/*.spec.ts",
        },
        headers=auth,
    )
    run = await wait_for_run((await created.json())["id"])
    tests = (
        await (await client.get(f"/api/runs/{run['id']}/tests", headers=auth)).json()
    )["tests"]
    failed = [t for t in tests if t["status"] == "failed"]
    trace = await client.get(URL(failed[0]["traceUrl"]).path, headers=auth)
    shot_path = URL(failed[0]["screenshotUrls"][0]).path
    shot = await client.get(shot_path, headers=auth)
    anonymous = await client.get(shot_path)

    assert run["status"] == "failed"
    assert len(failed) == 1
    assert failed[0]["attempts"][0]["error"]
    assert trace.status == 200
    assert (await trace.read())[:2] == b"PK"
    assert shot.status == 200
    assert (await shot.read())[:8] == b"\x89PNG\r\n\x1a\n"
    assert anonymous.status == 401
