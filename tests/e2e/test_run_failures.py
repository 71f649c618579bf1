"""Runs that cannot pass end in a clear status with their reason."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import (
    WaitForRun,
    git,
    make_repo,
    run_body,
    spec,
    tiny_suite,
    traceloom_processes,
)

pytestmark = pytest.mark.e2e

QUICK = spec(("adds", "expect(1 + 1).toBe(2);"))


async def _run(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait: WaitForRun,
    body: dict[str, Any],
) -> dict[str, Any]:
    created = await client.post("/api/runs", json=body, headers=auth)
    assert created.status == 201, await created.text()
    result: dict[str, Any] = await wait((await created.json())["id"])
    return result


async def test_shard_past_its_timeout_is_stopped_and_run_timed_out(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """A hung test is killed at the timeout; unfinished tests are didNotRun."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/a.spec.ts": QUICK,
                "tests/b.spec.ts": spec(
                    ("hangs", "await new Promise((r) => setTimeout(r, 600_000));"),
                    ("never reached", "expect(true).toBe(true);"),
                ),
            }
        ),
    )

    run = await _run(client, auth, wait_for_run, run_body(repo, timeout=8))

    assert run["status"] == "timed_out"
    assert run["counts"]["passed"] == 1
    assert run["counts"]["didNotRun"] == 2
    assert run["counts"]["total"] == 3
    assert [s["status"] for s in run["shards"]] == ["timed_out"]
    assert not traceloom_processes(run["id"])


@pytest.mark.parametrize(
    ("change", "reason_part"),
    [
        ({"gitRepo": "/nonexistent/repo.git"}, "cannot clone"),
        ({"gitBranch": "no-such-branch"}, "no-such-branch"),
        ({"commitSha": "0123456789abcdef0123456789abcdef01234567"}, "does not exist"),
        ({"testPattern": "e2e/**/*.spec.ts"}, "matched no file"),
    ],
    ids=["bad-repo", "bad-branch", "bad-commit", "no-match"],
)
async def test_bad_source_ends_errored_with_reason(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
    change: dict[str, str],
    reason_part: str,
) -> None:
    """Unclonable repos, missing branches or commits and empty globs: errored."""
    repo = make_repo(tmp_path / "repo", tiny_suite({"tests/a.spec.ts": QUICK}))
    body = run_body(repo)
    for key, value in change.items():
        if key in ("gitRepo", "gitBranch"):
            body["testSource"][key] = value
        else:
            body[key] = value

    run = await _run(client, auth, wait_for_run, body)
    health = await client.get("/healthz")

    assert run["status"] == "errored"
    assert reason_part in run["reason"]
    assert health.status == 200


async def test_commit_sha_runs_that_commit(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """With commitSha the run tests that commit, not the branch head."""
    repo = make_repo(tmp_path / "repo", tiny_suite({"tests/a.spec.ts": QUICK}))
    first = git(repo, "rev-parse", "HEAD")
    (repo / "tests" / "b.spec.ts").write_text(QUICK)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "second")

    old = await _run(client, auth, wait_for_run, run_body(repo, commitSha=first))
    new = await _run(client, auth, wait_for_run, run_body(repo))

    assert old["resolvedSha"] == first
    assert old["counts"]["total"] == 1
    assert new["counts"]["total"] == 2
    assert new["status"] == "passed"


async def test_suffix_named_files_each_run_once(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """a.spec.ts and xa.spec.ts, odd characters too: every test exactly once."""
    names = ["a.spec.ts", "xa.spec.ts", "(paren) [b] c.spec.ts", "dé ñ.spec.ts"]
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {f"tests/{n}": spec((f"in {n}", "expect(1).toBe(1);")) for n in names}
        ),
    )

    run = await _run(client, auth, wait_for_run, run_body(repo, serverCount=2))
    tests = (
        await (await client.get(f"/api/runs/{run['id']}/tests", headers=auth)).json()
    )["tests"]

    assert run["status"] == "passed"
    assert sorted(t["file"] for t in tests) == sorted(f"tests/{n}" for n in names)
    assert sorted(f for s in run["shards"] for f in s["files"]) == sorted(
        f"tests/{n}" for n in names
    )


def _kill_host_server(name: str) -> int:
    """SIGKILL the local host server named ``name``, as a machine would die."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"controlplane.fleet.localhost_server" in argv and name.encode() in argv:
            os.kill(int(entry.name), signal.SIGKILL)
            return int(entry.name)
    raise AssertionError(f"no host server {name}")


async def _wait_until(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    run_id: str,
    condition: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    for _ in range(600):
        run: dict[str, Any] = await (
            await client.get(f"/api/runs/{run_id}", headers=auth)
        ).json()
        if condition(run):
            return run
        await asyncio.sleep(0.1)
    raise AssertionError("the run never reached the awaited state")


async def test_lost_host_work_completes_elsewhere_every_test_once(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """A host killed mid-file: its finished test is kept, the rest re-run."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/a.spec.ts": spec(
                    ("a1 quick", "expect(1).toBe(1);"),
                    ("a2 slow", "await new Promise((r) => setTimeout(r, 8_000));"),
                    ("a3 quick", "expect(3).toBe(3);"),
                ),
                "tests/b.spec.ts": spec(
                    ("b1", "await new Promise((r) => setTimeout(r, 1_000));")
                ),
            }
        ),
    )
    created = await (
        await client.post("/api/runs", json=run_body(repo, serverCount=2), headers=auth)
    ).json()
    # Until a1 itself is stored (b1 on the other host may pass first on a
    # busy machine, and then a1 would not be the victim's to keep).
    run = await _wait_until(
        client,
        auth,
        created["id"],
        lambda r: any(
            "tests/a.spec.ts" in s["files"] and s["testsDone"] >= 1 for s in r["shards"]
        ),
    )
    [victim] = [s for s in run["shards"] if "tests/a.spec.ts" in s["files"]]

    killed = await asyncio.to_thread(_kill_host_server, victim["host"])
    run = await wait_for_run(created["id"], timeout_s=120)
    tests = (
        await (await client.get(f"/api/runs/{run['id']}/tests", headers=auth)).json()
    )["tests"]
    shards = {s["index"]: s for s in run["shards"]}

    assert killed
    assert run["status"] == "passed", run["reason"]
    assert sorted(t["title"] for t in tests) == [
        "a1 quick",
        "a2 slow",
        "a3 quick",
        "b1",
    ]
    assert all(t["status"] == "passed" for t in tests)
    assert shards[victim["index"]]["status"] == "lost"
    by_title = {t["title"]: t["shard"] for t in tests}
    assert by_title["a1 quick"] == victim["index"]
    assert by_title["a2 slow"] != victim["index"]
    assert not traceloom_processes(run["id"])


async def test_only_host_lost_gets_a_replacement(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """When the last host is lost, a new one runs the unfinished work."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/slow.spec.ts": spec(
                    ("waits", "await new Promise((r) => setTimeout(r, 3_000));")
                )
            }
        ),
    )
    created = await (
        await client.post("/api/runs", json=run_body(repo), headers=auth)
    ).json()
    await _wait_until(client, auth, created["id"], lambda r: bool(r["firstTestAt"]))

    killed = await asyncio.to_thread(_kill_host_server, f"{created['id']}-h0")
    run = await wait_for_run(created["id"], timeout_s=90)

    assert killed
    assert run["status"] == "passed", run["reason"]
    assert [s["status"] for s in run["shards"]] == ["lost", "passed"]
    assert run["counts"] == {
        "total": 1,
        "passed": 1,
        "failed": 0,
        "flaky": 0,
        "skipped": 0,
        "didNotRun": 0,
    }
    assert not traceloom_processes(run["id"])
