"""Idempotency-Key on run creation: one run per key and body, held by the DB."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.api.appkeys import DB
from controlplane.domain import GitSource, Run, RunRequest, RunStatus, new_id
from controlplane.storage.db import Database
from controlplane.storage.keys import create_key

BODY = {
    "testSource": {"type": "git", "gitRepo": "/nonexistent", "gitBranch": "main"},
    "testPattern": "tests/**/*.spec.ts",
}


async def _run_ids(client: TestClient[Any, Any], auth: dict[str, str]) -> list[str]:
    listing = await (await client.get("/api/runs?limit=100", headers=auth)).json()
    return [run["id"] for run in listing["runs"]]


async def test_same_key_and_body_answers_the_same_run(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """A retried request gets the first run back, marked as replayed."""
    headers = {**auth, "Idempotency-Key": "deploy-1234"}

    first = await client.post("/api/runs", json=BODY, headers=headers)
    second = await client.post("/api/runs", json=BODY, headers=headers)

    assert first.status == second.status == 201
    assert (await first.json())["id"] == (await second.json())["id"]
    assert "Idempotent-Replayed" not in first.headers
    assert second.headers["Idempotent-Replayed"] == "true"
    assert await _run_ids(client, auth) == [(await first.json())["id"]]


async def test_a_key_sent_twice_is_refused(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """Two Idempotency-Key headers are ambiguous: 400 naming the header, no run."""
    headers = [
        *auth.items(),
        ("Idempotency-Key", "deploy-1"),
        ("Idempotency-Key", "deploy-2"),
    ]

    response = await client.post("/api/runs", json=BODY, headers=headers)

    assert response.status == 400
    assert set((await response.json())["fields"]) == {"Idempotency-Key"}
    assert await _run_ids(client, auth) == []


async def test_same_key_with_another_body_is_refused(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """Reusing a key for a different request is a 422, and makes no run."""
    headers = {**auth, "Idempotency-Key": "deploy-1234"}
    first = await client.post("/api/runs", json=BODY, headers=headers)

    other = await client.post(
        "/api/runs", json={**BODY, "serverCount": 2}, headers=headers
    )

    assert first.status == 201
    assert other.status == 422
    assert (await other.json())["error"] == "idempotency_key_reused"
    assert len(await _run_ids(client, auth)) == 1


async def test_body_formatting_does_not_matter(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """The same JSON with other spacing and key order is the same body."""
    headers = {**auth, "Idempotency-Key": "k", "Content-Type": "application/json"}
    compact = (
        b'{"testPattern":"tests/**/*.spec.ts","testSource":{"gitBranch":"main",'
        b'"gitRepo":"/nonexistent","type":"git"}}'
    )
    spaced = (
        b'{ "testSource": {"type": "git", "gitRepo": "/nonexistent",\n'
        b' "gitBranch": "main"}, "testPattern": "tests/**/*.spec.ts" }'
    )

    first = await client.post("/api/runs", data=compact, headers=headers)
    second = await client.post("/api/runs", data=spaced, headers=headers)

    assert (await first.json())["id"] == (await second.json())["id"]


async def test_fifty_concurrent_requests_with_one_key_make_one_run(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """50 requests at the same moment with one key: one run, 50 same answers."""
    headers = {**auth, "Idempotency-Key": "burst"}

    responses = await asyncio.gather(
        *(client.post("/api/runs", json=BODY, headers=headers) for _ in range(50))
    )
    bodies = [await r.json() for r in responses]

    assert {r.status for r in responses} == {201}
    assert len({b["id"] for b in bodies}) == 1
    assert await _run_ids(client, auth) == [bodies[0]["id"]]
    assert sum("Idempotent-Replayed" not in r.headers for r in responses) == 1


async def test_keys_are_scoped_to_the_api_key(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """Two API keys may use the same idempotency key for their own runs."""
    other = await create_key(client.app[DB], name="other pipeline")

    mine = await client.post(
        "/api/runs", json=BODY, headers={**auth, "Idempotency-Key": "nightly"}
    )
    theirs = await client.post(
        "/api/runs",
        json=BODY,
        headers={"Authorization": f"Bearer {other}", "Idempotency-Key": "nightly"},
    )

    assert mine.status == theirs.status == 201
    assert (await mine.json())["id"] != (await theirs.json())["id"]


async def test_requests_without_the_header_each_make_a_run(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """Without Idempotency-Key, two identical requests are two runs."""
    await client.post("/api/runs", json=BODY, headers=auth)
    await client.post("/api/runs", json=BODY, headers=auth)

    assert len(await _run_ids(client, auth)) == 2


@pytest.mark.parametrize("value", ["", "a" * 256, "tab\there", "naïve"])
async def test_malformed_key_is_a_400_naming_the_header(
    client: TestClient[Any, Any], auth: dict[str, str], value: str
) -> None:
    """An empty, overlong or non-ASCII key is refused before any run is made."""
    response = await client.post(
        "/api/runs",
        json=BODY,
        headers={**auth, "Idempotency-Key": value.encode().decode("latin-1")},
    )

    assert response.status == 400
    assert "Idempotency-Key" in (await response.json())["fields"]
    assert await _run_ids(client, auth) == []


async def test_a_body_that_is_invalid_is_refused_before_the_key_is_used(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """A bad body is a 400 and does not claim the key for a later good body."""
    headers = {**auth, "Idempotency-Key": "k1"}

    bad = await client.post("/api/runs", json={"testPattern": "x"}, headers=headers)
    good = await client.post("/api/runs", json=BODY, headers=headers)

    assert bad.status == 400
    assert good.status == 201


def _run() -> Run:
    return Run(
        id=new_id("run_"),
        request=RunRequest(
            test_source=GitSource(git_repo="/r", git_branch="main"),
            test_pattern="*.ts",
        ),
        status=RunStatus.QUEUED,
        created_at=time.time(),
    )


async def test_two_processes_sharing_the_database_insert_once(tmp_path: Path) -> None:
    """Two connections (as two replicas would have) racing on one key: one run."""
    path = tmp_path / "shared.sqlite3"
    async with Database.open(path) as one, Database.open(path) as two:
        results = await asyncio.gather(
            *(
                db.insert_run_once(
                    _run(), key_id="key_1", idempotency_key="k", body_hash="h"
                )
                for db in (one, two) * 10
            )
        )
        stored = await one.runs_with_status([RunStatus.QUEUED])

    assert sum(r.created for r in results) == 1
    assert {r.run_id for r in results} == {stored[0].id}
    assert len(stored) == 1
