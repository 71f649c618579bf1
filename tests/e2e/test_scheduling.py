"""Scheduling rules with real hosts: exactly once, retries, hangs, cancel."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.api.appkeys import ENGINE
from tests.conftest import (
    WaitForRun,
    git,
    make_repo,
    run_body,
    spec,
    tiny_suite,
    traceloom_processes,
)
from tests.e2e.test_suites import BROWSER_SPEC, TWO_BROWSERS

pytestmark = pytest.mark.e2e

QUICK = spec(("adds", "expect(1 + 1).toBe(2);"))
RETRY_CONFIG = """\
import { defineConfig } from '@playwright/test';
export default defineConfig({ testDir: 'tests', workers: 1, retries: 2 });
"""
HANGING_TEARDOWN_CONFIG = """\
import { defineConfig } from '@playwright/test';
export default defineConfig({ testDir: 'tests', workers: 1,
  globalTeardown: './teardown.ts' });
"""


async def _post(
    client: TestClient[Any, Any], auth: dict[str, str], body: dict[str, Any]
) -> str:
    response = await client.post("/api/runs", json=body, headers=auth)
    assert response.status == 201, await response.text()
    run_id: str = (await response.json())["id"]
    return run_id


async def _tests(
    client: TestClient[Any, Any], auth: dict[str, str], run_id: str
) -> list[dict[str, Any]]:
    response = await client.get(f"/api/runs/{run_id}/tests", headers=auth)
    tests: list[dict[str, Any]] = (await response.json())["tests"]
    return tests


async def test_more_hosts_than_files_gives_empty_successful_shards(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """serverCount 3 with one file: one host runs it, two shards pass empty."""
    repo = make_repo(tmp_path / "repo", tiny_suite({"tests/a.spec.ts": QUICK}))

    run = await wait_for_run(await _post(client, auth, run_body(repo, serverCount=3)))

    assert run["status"] == "passed"
    assert [s["status"] for s in run["shards"]] == ["passed"] * 3
    assert [s["counts"]["total"] for s in run["shards"]] == [1, 0, 0]
    assert [s["host"] is None for s in run["shards"]] == [False, True, True]


# The test fails on purpose: its error is how it tells where it ran from.
WHERE = spec(("where", "expect(__dirname).toBe('');"))


async def test_local_hosts_keep_the_suite_at_one_path_from_run_to_run(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """Playwright's transform cache is keyed by absolute path: runs share one.

    Each run still gets a fresh copy: a file deleted between two runs is not
    run by the second. Two runs at once never share the path, since
    Playwright keeps one cache entry per path and would delete the other
    run's compiled file under it.
    """
    provider = client.app[ENGINE].provider
    if getattr(provider, "shared_work_root", None) is None:
        pytest.skip("this machine allows no private mounts for local hosts")
    files = {"tests/a.spec.ts": WHERE, "tests/b.spec.ts": WHERE}
    repo = make_repo(tmp_path / "repo", tiny_suite(files))

    async def where(run_ids: list[str]) -> list[tuple[str, list[str]]]:
        """Each run's one folder (the same on all its hosts), and its files."""
        found = []
        for run_id in run_ids:
            run = await wait_for_run(run_id)
            assert run["status"] == "failed", run.get("reason")
            tests = await _tests(client, auth, run_id)
            errors = {t["file"]: t["attempts"][0]["error"] for t in tests}
            # Received: "<work root>/suite-<lane>/tests", on every host.
            dirs = {
                re.findall(r'Received: \S*"(/[^"]+)"', e)[0] for e in errors.values()
            }
            assert len(dirs) == 1, dirs
            found.append((dirs.pop(), sorted(errors)))
            assert run_id not in found[-1][0]
        return found

    body = run_body(repo, serverCount=2)
    [(first, first_files)] = await where([await _post(client, auth, body)])
    git(repo, "rm", "-q", "tests/b.spec.ts")
    git(repo, "commit", "-q", "-m", "drop b")
    [(second, second_files)] = await where([await _post(client, auth, body)])
    assert first == second
    assert first.endswith("/suite-0/tests")
    assert first_files == ["tests/a.spec.ts", "tests/b.spec.ts"]
    assert second_files == ["tests/a.spec.ts"]

    together = [await _post(client, auth, body) for _ in range(2)]
    [(one, _), (other, _)] = await where(together)
    assert one != other
    assert {one, other} == {first, first.replace("/suite-0/", "/suite-1/")}


async def test_flaky_test_keeps_every_attempt(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """The suite's own retries: fail, fail, pass is flaky with 3 attempts."""
    flaky = spec(("flaky", "expect(test.info().retry).toBe(2);"))
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite({"tests/a.spec.ts": flaky, "playwright.config.ts": RETRY_CONFIG}),
    )

    run = await wait_for_run(await _post(client, auth, run_body(repo)))
    [test] = await _tests(client, auth, run["id"])

    assert run["status"] == "passed"
    assert run["counts"]["flaky"] == 1
    assert test["status"] == "flaky"
    assert [(a["retry"], a["status"]) for a in test["attempts"]] == [
        (0, "failed"),
        (1, "failed"),
        (2, "passed"),
    ]


async def test_tests_lost_with_a_crashed_runner_are_did_not_run(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """Playwright killed mid-shard: unreported tests are didNotRun, not passed."""
    crash = "process.kill(process.ppid, 'SIGKILL'); await new Promise(() => {});"
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/a.spec.ts": spec(
                    ("first", "expect(1).toBe(1);"),
                    ("crashes the runner", crash),
                    ("never reported", "expect(1).toBe(1);"),
                )
            }
        ),
    )

    run = await wait_for_run(await _post(client, auth, run_body(repo)))
    statuses = {t["title"]: t["status"] for t in await _tests(client, auth, run["id"])}

    assert run["status"] == "errored"
    assert "never reported" in run["reason"]
    assert statuses == {
        "first": "passed",
        "crashes the runner": "didNotRun",
        "never reported": "didNotRun",
    }
    assert not traceloom_processes(run["id"])


async def test_hung_playwright_is_stopped_at_the_timeout_keeping_results(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """Every test reported, then a teardown that never ends: stopped as hung."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/a.spec.ts": QUICK,
                "playwright.config.ts": HANGING_TEARDOWN_CONFIG,
                "teardown.ts": "export default async () => {\n"
                "  await new Promise(() => setInterval(() => {}, 1_000));\n"
                "};\n",
            }
        ),
    )

    run = await wait_for_run(await _post(client, auth, run_body(repo, timeout=10)))

    assert run["status"] == "timed_out"
    assert "hung" in run["shards"][0]["reason"]
    assert run["counts"]["passed"] == 1
    assert run["counts"]["didNotRun"] == 0
    assert not traceloom_processes(run["id"])


async def test_cancel_stops_every_host_within_seconds(
    client: TestClient[Any, Any], auth: dict[str, str], tmp_path: Path
) -> None:
    """A cancelled run ends cancelled, with no host process left, quickly."""
    wait = "await new Promise((r) => setTimeout(r, 120_000));"
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite({f"tests/{n}.spec.ts": spec((n, wait)) for n in ("a", "b")}),
    )
    run_id = await _post(client, auth, run_body(repo, serverCount=2))
    for _ in range(300):
        run = await (await client.get(f"/api/runs/{run_id}", headers=auth)).json()
        if run["firstTestAt"]:
            break
        await asyncio.sleep(0.1)

    started = time.monotonic()
    cancelled = await client.app[ENGINE].cancel(run_id)
    took_s = time.monotonic() - started
    run = await (await client.get(f"/api/runs/{run_id}", headers=auth)).json()

    assert cancelled
    assert took_s < 15
    assert run["status"] == "cancelled"
    assert {s["status"] for s in run["shards"]} == {"cancelled"}
    assert not traceloom_processes(run_id)


# Listing (and only listing) takes LISTING_S: the config sleeps under --list.
LISTING_S = 30
SLOW_LISTING_CONFIG = f"""\
import {{ defineConfig }} from '@playwright/test';
if (process.argv.includes('--list')) {{
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, {LISTING_S * 1000});
}}
export default defineConfig({{ testDir: 'tests', workers: 1 }});
"""


def _seconds(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


async def test_other_hosts_run_tests_while_the_first_one_lists(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """The listing is off the critical path: tests start before it ends.

    The guess (every project runs) holds, so what the early batch reported
    is kept: every test once, the run passed.
    """
    files = {f"tests/{n}.spec.ts": QUICK for n in ("a", "b", "c")}
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(files, **{"playwright.config.ts": SLOW_LISTING_CONFIG}),
    )

    run = await wait_for_run(await _post(client, auth, run_body(repo, serverCount=2)))
    tests = await _tests(client, auth, run["id"])
    batches = await client.app[ENGINE].db.batches(run["id"])

    assert run["status"] == "passed", run.get("reason")
    # Shard 0 is the host that lists; its listing began at its start.
    listing_began = _seconds(run["shards"][0]["startedAt"])
    assert _seconds(run["firstTestAt"]) - listing_began < LISTING_S
    assert sorted(t["file"] for t in tests) == sorted(files)
    assert all(len(t["attempts"]) == 1 for t in tests)
    assert {b["status"] for b in batches} == {"done"}


async def test_a_wrong_guess_is_dropped_and_run_again_with_the_listed_projects(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """Firefox is missing: the early batch ran it, so its results are dropped.

    Its files run again with the chromium project only; the run ends as it
    would have on one host, each chromium test reported once.
    """
    files = {f"tests/{n}.spec.ts": BROWSER_SPEC for n in ("a", "b")}
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(files, **{"playwright.config.ts": TWO_BROWSERS}),
    )

    run = await wait_for_run(await _post(client, auth, run_body(repo, serverCount=2)))
    tests = await _tests(client, auth, run["id"])
    batches = await client.app[ENGINE].db.batches(run["id"])

    assert run["status"] == "errored"
    assert "project 'firefox' did not run (4 tests)" in run["reason"]
    assert sorted((t["project"], t["status"], len(t["attempts"])) for t in tests) == [
        ("chromium", "passed", 1),
        ("chromium", "passed", 1),
        ("chromium", "passed", 1),
        ("chromium", "passed", 1),
        ("firefox", "didNotRun", 0),
        ("firefox", "didNotRun", 0),
        ("firefox", "didNotRun", 0),
        ("firefox", "didNotRun", 0),
    ]
    assert "dropped" in {b["status"] for b in batches}
    assert not traceloom_processes(run["id"])


async def test_a_guess_stopped_in_its_setup_steps_is_no_setup_failure(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """Stopping a wrong guess mid-setup leaves the steps to run again, not failed.

    The second host's setup step is slow, so the listing (firefox missing)
    ends while that host is still in it.
    """
    slow_elsewhere = 'case "$TRACELOOM_HOST" in *-h0) ;; *) sleep 15 ;; esac'
    files = {f"tests/{n}.spec.ts": BROWSER_SPEC for n in ("a", "b")}
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            files,
            **{
                "playwright.config.ts": TWO_BROWSERS,
                "traceloom.yml": f"setup:\n  - '{slow_elsewhere}'\n",
            },
        ),
    )

    run = await wait_for_run(await _post(client, auth, run_body(repo, serverCount=2)))
    tests = await _tests(client, auth, run["id"])

    assert run["status"] == "errored"
    assert "setup" not in run["reason"]
    assert "project 'firefox' did not run (4 tests)" in run["reason"]
    assert sorted((t["project"], t["status"]) for t in tests) == [
        ("chromium", "passed"),
        ("chromium", "passed"),
        ("chromium", "passed"),
        ("chromium", "passed"),
        ("firefox", "didNotRun"),
        ("firefox", "didNotRun"),
        ("firefox", "didNotRun"),
        ("firefox", "didNotRun"),
    ]
    assert not traceloom_processes(run["id"])
