"""``GET /api/runs``: filters, and cursor pages that hold still as runs arrive."""

from __future__ import annotations

import time
from typing import Any

import attrs
import pytest
from aiohttp.test_utils import TestClient

from controlplane.api.appkeys import DB
from controlplane.domain import (
    GitSource,
    Run,
    RunRequest,
    RunStatus,
    TriggerSource,
    new_id,
)

DAY_S = 86_400
NOW = time.time()


def _run(
    *,
    status: RunStatus = RunStatus.PASSED,
    name: str | None = None,
    commit_sha: str | None = None,
    resolved_sha: str | None = None,
    trigger: TriggerSource = TriggerSource.API,
    age_days: float = 0,
) -> Run:
    return Run(
        id=new_id("run_"),
        request=RunRequest(
            test_source=GitSource(git_repo="/r", git_branch="main"),
            test_pattern="tests/*.ts",
            name=name,
            commit_sha=commit_sha,
            trigger_source=trigger,
        ),
        status=status,
        resolved_sha=resolved_sha,
        created_at=NOW - age_days * DAY_S,
    )


RUNS = {
    "nightly-old": _run(
        status=RunStatus.FAILED,
        name="Nightly smoke",
        trigger=TriggerSource.SCHEDULE,
        age_days=3,
    ),
    "deploy": _run(
        name="post-deploy",
        commit_sha="abcdef1",
        resolved_sha="abcdef1" + "0" * 33,
        age_days=1,
    ),
    "manual": _run(
        status=RunStatus.ERRORED,
        trigger=TriggerSource.MANUAL,
        resolved_sha="1234567" + "f" * 33,
    ),
    "running": _run(status=RunStatus.RUNNING, name="post-deploy canary"),
}


@pytest.fixture
async def stored(client: TestClient[Any, Any]) -> dict[str, str]:
    """The runs above in the database; label -> run id."""
    db = client.app[DB]
    for run in RUNS.values():
        # Stored queued, then moved on as the engine would move it.
        await db.insert_run(attrs.evolve(run, status=RunStatus.QUEUED))
        await db.update_run(run.id, status=run.status, resolved_sha=run.resolved_sha)
    return {label: run.id for label, run in RUNS.items()}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


@pytest.mark.parametrize(
    ("query", "labels"),
    [
        ({}, {"nightly-old", "deploy", "manual", "running"}),
        ({"status": "failed"}, {"nightly-old"}),
        ({"status": "failed,errored"}, {"nightly-old", "manual"}),
        ({"name": "POST-DEPLOY"}, {"deploy", "running"}),
        ({"name": "canary"}, {"running"}),
        ({"commitSha": "abcdef1"}, {"deploy"}),
        ({"commitSha": "ABCDEF10000"}, {"deploy"}),
        ({"commitSha": "1234567fff"}, {"manual"}),
        ({"triggerSource": "schedule"}, {"nightly-old"}),
        ({"triggerSource": "manual"}, {"manual"}),
        ({"createdAfter": _iso(NOW - 2 * DAY_S)}, {"deploy", "manual", "running"}),
        ({"createdBefore": _iso(NOW - 2 * DAY_S)}, {"nightly-old"}),
        (
            {
                "createdAfter": _iso(NOW - 2 * DAY_S),
                "createdBefore": _iso(NOW - DAY_S / 2),
            },
            {"deploy"},
        ),
        ({"name": "post-deploy", "status": "running"}, {"running"}),
        ({"name": "nothing like it"}, set()),
    ],
)
async def test_filters_select_the_matching_runs(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    stored: dict[str, str],
    query: dict[str, str],
    labels: set[str],
) -> None:
    """Each filter, alone or combined, keeps exactly the runs that match it."""
    response = await client.get("/api/runs", params=query, headers=auth)
    body = await response.json()

    assert response.status == 200
    assert {run["id"] for run in body["runs"]} == {stored[k] for k in labels}


async def test_repeated_status_parameters_add_up(
    client: TestClient[Any, Any], auth: dict[str, str], stored: dict[str, str]
) -> None:
    """``?status=a&status=b`` is the same as ``?status=a,b``."""
    response = await client.get("/api/runs?status=failed&status=errored", headers=auth)

    assert {r["id"] for r in (await response.json())["runs"]} == {
        stored["nightly-old"],
        stored["manual"],
    }


async def test_runs_come_newest_first_without_shards(
    client: TestClient[Any, Any], auth: dict[str, str], stored: dict[str, str]
) -> None:
    """A listing is ordered by creation, newest first, and shows summaries."""
    body = await (await client.get("/api/runs", headers=auth)).json()

    ids = [run["id"] for run in body["runs"]]
    assert ids == sorted(stored.values(), reverse=True)
    assert all("shards" not in run and "counts" in run for run in body["runs"])
    assert body["nextCursor"] is None


async def _all_pages(
    client: TestClient[Any, Any], auth: dict[str, str], *, limit: int
) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor: str | None = None
    while True:
        params = {"limit": str(limit), **({"cursor": cursor} if cursor else {})}
        body = await (await client.get("/api/runs", params=params, headers=auth)).json()
        pages.append([run["id"] for run in body["runs"]])
        cursor = body["nextCursor"]
        if cursor is None:
            return pages


async def test_pages_cover_every_run_once(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """7 runs by 3: pages of 3, 3 and 1, together every run exactly once."""
    ids = []
    for _ in range(7):
        run = _run()
        ids.append(run.id)
        await client.app[DB].insert_run(run)

    pages = await _all_pages(client, auth, limit=3)

    assert [len(page) for page in pages] == [3, 3, 1]
    assert [i for page in pages for i in page] == sorted(ids, reverse=True)


async def test_pages_are_stable_while_runs_are_created(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """Runs created between two pages never shift or repeat what follows."""
    old = [_run() for _ in range(4)]
    for run in old:
        await client.app[DB].insert_run(run)
    first = await (await client.get("/api/runs?limit=2", headers=auth)).json()

    for _ in range(3):
        await client.app[DB].insert_run(_run())
    second = await (
        await client.get(
            "/api/runs",
            params={"limit": "2", "cursor": first["nextCursor"]},
            headers=auth,
        )
    ).json()

    newest_first = sorted((r.id for r in old), reverse=True)
    assert [r["id"] for r in first["runs"]] == newest_first[:2]
    assert [r["id"] for r in second["runs"]] == newest_first[2:]


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        ("limit=0", {"limit"}),
        ("limit=101", {"limit"}),
        ("limit=ten", {"limit"}),
        ("status=done", {"status"}),
        ("triggerSource=cron", {"triggerSource"}),
        ("commitSha=xyz", {"commitSha"}),
        ("createdAfter=yesterday", {"createdAfter"}),
        ("createdBefore=2024-06-01T12:00:00", {"createdBefore"}),
        ("cursor=bm90LWEtY3Vyc29y", {"cursor"}),
        ("sort=name", {"sort"}),
        ("limit=0&status=done&sort=x", {"limit", "status", "sort"}),
    ],
)
async def test_bad_query_is_a_400_naming_every_parameter(
    client: TestClient[Any, Any], auth: dict[str, str], query: str, fields: set[str]
) -> None:
    """Each bad parameter is named, all at once."""
    response = await client.get(f"/api/runs?{query}", headers=auth)

    assert response.status == 400
    assert set((await response.json())["fields"]) == fields


async def test_listing_needs_the_read_scope(
    client: TestClient[Any, Any],
    read_only: dict[str, str],
    trigger_only: dict[str, str],
) -> None:
    """runs:read lists; a trigger-only key is refused with 403."""
    allowed = await client.get("/api/runs", headers=read_only)
    refused = await client.get("/api/runs", headers=trigger_only)

    assert allowed.status == 200
    assert refused.status == 403
