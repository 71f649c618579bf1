"""The run API's answers to good and bad requests, through a real client."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.api.appkeys import DB
from controlplane.storage.keys import create_key

GOOD = {
    "testSource": {"type": "git", "gitRepo": "/nonexistent", "gitBranch": "main"},
    "testPattern": "tests/**/*.spec.ts",
}


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"Authorization": "Bearer tlk_" + "x" * 43},
        {"Authorization": "Bearer not-a-key"},
    ],
    ids=["none", "empty", "basic", "unknown-key", "not-tlk"],
)
async def test_requests_without_a_valid_key_get_401(
    client: TestClient[Any, Any], headers: dict[str, str]
) -> None:
    """Every API path needs a valid Bearer key; the answer is JSON."""
    response = await client.post("/api/runs", json=GOOD, headers=headers)

    assert response.status == 401
    assert (await response.json())["error"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_key_without_trigger_scope_gets_403(client: TestClient[Any, Any]) -> None:
    """A read-only key can read but cannot start runs."""
    key = await create_key(client.app[DB], name="reader", scopes=("runs:read",))

    response = await client.post(
        "/api/runs", json=GOOD, headers={"Authorization": f"Bearer {key}"}
    )

    assert response.status == 403
    assert "runs:trigger" in (await response.json())["message"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"{not json", "body"),
        (b"[]", "body"),
        (b'{"testPattern": "x"}', "testSource"),
        (b'{"testSource": {"type": "ftp"}, "testPattern": "x"}', "testSource.type"),
        (
            b'{"testSource": {"type": "git", "gitRepo": "r", "gitBranch": "b"},'
            b' "testPattern": "x", "serverCount": 0}',
            "serverCount",
        ),
        (
            b'{"testSource": {"type": "git", "gitRepo": "r", "gitBranch": "b"},'
            b' "testPattern": "/abs/*.ts"}',
            "testPattern",
        ),
        (
            b'{"testSource": {"type": "git", "gitRepo": "r", "gitBranch": "b"},'
            b' "testPattern": "../**/*.ts"}',
            "testPattern",
        ),
        (
            b'{"testSource": {"type": "s3", "bucket": "Bad_Bucket!!", "key": "s.zip"},'
            b' "testPattern": "x"}',
            "testSource.bucket",
        ),
        (
            b'{"testSource": {"type": "s3", "bucket": "suites", "key": "a\\u0000.zip"},'
            b' "testPattern": "x"}',
            "testSource.key",
        ),
    ],
    ids=[
        "not-json", "not-object", "no-source", "bad-type", "zero-servers",
        "abs-glob", "parent-glob", "bad-bucket", "control-in-key",
    ],
)  # fmt: skip
async def test_bad_bodies_get_400_naming_the_field(
    client: TestClient[Any, Any], auth: dict[str, str], raw: bytes, field: str
) -> None:
    """A bad body is refused with the field at fault, and no run is made."""
    response = await client.post(
        "/api/runs", data=raw, headers={**auth, "Content-Type": "application/json"}
    )
    body = await response.json()

    assert response.status == 400
    assert field in body["fields"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/runs"),
        ("POST", "/api/keys"),
        ("PUT", "/api/secrets/TOKEN"),
        ("POST", "/api/schedules"),
    ],
)
async def test_a_body_its_content_encoding_cannot_decode_gets_400(
    client: TestClient[Any, Any], auth: dict[str, str], method: str, path: str
) -> None:
    """A body sent as gzip that is not gzip is a bad request, not a 500."""
    response = await client.request(
        method,
        path,
        data=b"{}",
        headers={
            **auth,
            "Content-Type": "application/json",
            "Content-Encoding": "gzip",
        },
    )

    assert response.status == 400
    assert "body" in (await response.json())["fields"]


async def test_created_run_answers_201_and_can_be_read(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """201 with id, status and url; the url reads the same run back."""
    response = await client.post("/api/runs", json=GOOD, headers=auth)
    created = await response.json()
    read = await client.get(f"/api/runs/{created['id']}", headers=auth)

    assert response.status == 201
    assert set(created) >= {"id", "status", "url"}
    assert created["status"] == "queued"
    assert created["url"].endswith(f"/api/runs/{created['id']}")
    assert read.status == 200
    assert (await read.json())["id"] == created["id"]


async def test_unknown_run_is_404(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """Reading a run that does not exist answers 404 in JSON."""
    for path in ("/api/runs/run_nope", "/api/runs/run_nope/tests"):
        response = await client.get(path, headers=auth)

        assert response.status == 404
        assert (await response.json())["error"] == "not_found"


async def test_artifact_paths_cannot_escape_the_run(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """An artifact key with '..' is a 404, never a file outside the store."""
    created = await (await client.post("/api/runs", json=GOOD, headers=auth)).json()

    response = await client.get(
        f"/api/runs/{created['id']}/artifacts/..%2F..%2Ftraceloom.sqlite3", headers=auth
    )

    assert response.status == 404


async def test_healthz_needs_no_key(client: TestClient[Any, Any]) -> None:
    """Liveness is public so that load balancers can probe it."""
    response = await client.get("/healthz")

    assert response.status == 200
