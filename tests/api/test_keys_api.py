"""``/api/keys``: keys made, listed and revoked through the API."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.storage.keys import ALL_SCOPES


async def _create(
    client: TestClient[Any, Any], auth: dict[str, str], **body: Any
) -> dict[str, Any]:
    response = await client.post("/api/keys", json=body, headers=auth)
    assert response.status == 201, await response.text()
    created: dict[str, Any] = await response.json()
    return created


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


async def test_created_key_is_shown_once_and_works(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """The answer holds the secret; it authenticates with the scopes asked."""
    created = await _create(client, auth, name="ci", scopes=["runs:read"])

    reads = await client.get("/api/runs", headers=_bearer(created["key"]))
    triggers = await client.post("/api/runs", json={}, headers=_bearer(created["key"]))

    assert created["key"].startswith("tlk_")
    assert created["name"] == "ci"
    assert created["scopes"] == ["runs:read"]
    assert created["createdAt"]
    assert created["lastUsedAt"] is None
    assert reads.status == 200
    assert triggers.status == 403


async def test_a_key_gets_every_scope_when_none_are_named(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """Omitting scopes grants them all (the caller holds them all)."""
    created = await _create(client, auth, name="admin")

    assert sorted(created["scopes"]) == sorted(ALL_SCOPES)


async def test_listing_never_shows_a_secret(
    client: TestClient[Any, Any], auth: dict[str, str], api_key: str
) -> None:
    """Names, scopes, times and a prefix, but no secret, not even the caller's."""
    created = await _create(client, auth, name="ci")

    response = await client.get("/api/keys", headers=auth)
    text = await response.text()
    keys = (await response.json())["keys"]

    assert response.status == 200
    assert created["key"] not in text
    assert api_key not in text
    assert created["key"][len("tlk_") + 8 :] not in text
    assert {k["name"] for k in keys} == {"tests", "ci"}
    assert all("key" not in k for k in keys)
    assert set(keys[0]) == {
        "id", "name", "prefix", "scopes", "createdAt", "lastUsedAt", "revokedAt",
    }  # fmt: skip


async def test_last_used_time_is_shown_once_used(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """A key that authenticated a request shows when."""
    created = await _create(client, auth, name="ci")
    await client.get("/api/runs", headers=_bearer(created["key"]))

    keys = (await (await client.get("/api/keys", headers=auth)).json())["keys"]

    assert next(k for k in keys if k["id"] == created["id"])["lastUsedAt"]


async def test_revoked_key_is_refused_at_once(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """After revoking, the key gets 401; the record stays, with revokedAt."""
    created = await _create(client, auth, name="leaked")

    revoked = await client.post(f"/api/keys/{created['id']}/revoke", headers=auth)
    after = await client.get("/api/runs", headers=_bearer(created["key"]))
    again = await client.post(f"/api/keys/{created['id']}/revoke", headers=auth)

    assert revoked.status == 200
    assert (await revoked.json())["revokedAt"]
    assert after.status == 401
    assert again.status == 200
    assert (await again.json())["revokedAt"] == (await revoked.json())["revokedAt"]


async def test_revoking_an_unknown_key_is_404(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """No such key: 404 in JSON."""
    response = await client.post("/api/keys/key_nope/revoke", headers=auth)

    assert response.status == 404
    assert (await response.json())["error"] == "not_found"


async def test_a_key_cannot_grant_scopes_it_lacks(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """A key manager without runs:trigger cannot mint a key that has it."""
    manager = await _create(client, auth, name="mgr", scopes=["keys:manage"])

    response = await client.post(
        "/api/keys",
        json={"name": "escalate", "scopes": ["runs:trigger"]},
        headers=_bearer(manager["key"]),
    )

    assert response.status == 403
    assert "runs:trigger" in (await response.json())["message"]


@pytest.mark.parametrize(
    "request_",
    [
        ("POST", "/api/keys"),
        ("GET", "/api/keys"),
        ("POST", "/api/keys/key_x/revoke"),
    ],
)
async def test_key_management_needs_its_scope(
    client: TestClient[Any, Any], read_only: dict[str, str], request_: tuple[str, str]
) -> None:
    """Without keys:manage every key endpoint answers 403."""
    method, path = request_

    response = await client.request(method, path, json={"name": "x"}, headers=read_only)

    assert response.status == 403


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, {"name"}),
        ({"name": ""}, {"name"}),
        ({"name": "x" * 101}, {"name"}),
        ({"name": 5}, {"name"}),
        ({"name": "ci", "scopes": []}, {"scopes"}),
        ({"name": "ci", "scopes": ["runs:delete"]}, {"scopes"}),
        ({"name": "ci", "scopes": "runs:read"}, {"scopes"}),
        ({"name": "ci", "secret": "tlk_mine"}, {"secret"}),
        ({"name": "", "scopes": ["nope"], "x": 1}, {"name", "scopes", "x"}),
        ({"name": "a\ud800b", "scopes": ["runs:read"]}, {"name"}),
        ({"name": "a\u0000b"}, {"name"}),
    ],
)
async def test_bad_key_bodies_are_400_naming_every_field(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    body: dict[str, Any],
    fields: set[str],
) -> None:
    """Each flaw of a key request is named, all at once."""
    response = await client.post("/api/keys", json=body, headers=auth)

    assert response.status == 400
    assert set((await response.json())["fields"]) == fields
