"""``/api/secrets``: set, list, delete; values never come back out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from controlplane.api.appkeys import DB, SECRETS
from controlplane.settings import Settings
from controlplane.storage.keys import create_key

VALUE = "hunter2-correct-horse-battery"


async def _manager(client: TestClient[Any, Any]) -> dict[str, str]:
    secret = await create_key(client.app[DB], name="m", scopes=("secrets:manage",))
    return {"Authorization": f"Bearer {secret}"}


async def test_set_then_replace_answers_201_then_200_without_the_value(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """A new name is created (201), the same name and scope replaced (200)."""
    first = await client.put(
        "/api/secrets/shop-token", json={"value": VALUE}, headers=auth
    )
    again = await client.put(
        "/api/secrets/shop-token", json={"value": VALUE + "-2"}, headers=auth
    )
    body = await again.json()

    assert first.status == 201
    assert again.status == 200
    assert set(body) == {"name", "scope", "createdAt", "updatedAt"}
    assert body["name"] == "shop-token"
    assert body["scope"] == "*"
    assert VALUE not in await first.text()
    assert VALUE not in await again.text()


async def test_listing_shows_names_and_scopes_never_values(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """Scopes are normalised repository URLs; the listing holds no value."""
    await client.put("/api/secrets/a", json={"value": VALUE}, headers=auth)
    await client.put(
        "/api/secrets/a",
        json={"value": VALUE, "scope": "https://Git.Example.com/shop.git/"},
        headers=auth,
    )

    listing = await client.get("/api/secrets", headers=auth)
    text = await listing.text()

    assert listing.status == 200
    assert [(s["name"], s["scope"]) for s in (await listing.json())["secrets"]] == [
        ("a", "*"),
        ("a", "https://git.example.com/shop"),
    ]
    assert VALUE not in text


async def test_delete_removes_one_scope_and_then_answers_404(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """Deleting names the scope (default '*'); a second delete is a 404."""
    await client.put("/api/secrets/gone", json={"value": VALUE}, headers=auth)

    deleted = await client.delete("/api/secrets/gone", headers=auth)
    again = await client.delete("/api/secrets/gone", headers=auth)
    listing = await (await client.get("/api/secrets", headers=auth)).json()

    assert deleted.status == 204
    assert again.status == 404
    assert listing["secrets"] == []


@pytest.mark.parametrize(
    ("name", "body", "field"),
    [
        ("ok", {"value": "abc"}, "value"),
        ("ok", {"value": 1234}, "value"),
        ("ok", {}, "value"),
        ("ok", {"value": VALUE, "scope": ""}, "scope"),
        ("ok", {"value": VALUE, "scope": "not a url"}, "scope"),
        ("ok", {"value": VALUE, "extra": 1}, "extra"),
        ("ok", {"value": "nul\0inside"}, "value"),
        ("-starts-with-dash", {"value": VALUE}, "name"),
        ("a b", {"value": VALUE}, "name"),
    ],
    ids=[
        "short",
        "number",
        "missing",
        "empty-scope",
        "not-a-repo",
        "extra",
        "nul",
        "dash",
        "space",
    ],
)
async def test_bad_secret_is_refused_naming_the_field(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    name: str,
    body: dict[str, Any],
    field: str,
) -> None:
    """Every flaw is a 400 naming the field; nothing is stored."""
    answer = await client.put(f"/api/secrets/{name}", json=body, headers=auth)
    listing = await (await client.get("/api/secrets", headers=auth)).json()

    assert answer.status == 400
    assert field in (await answer.json())["fields"]
    assert listing["secrets"] == []


async def test_secrets_need_the_secrets_manage_scope(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """A key without secrets:manage can neither set, list nor delete."""
    reader = await create_key(client.app[DB], name="r", scopes=("runs:read",))
    headers = {"Authorization": f"Bearer {reader}"}
    manager = await _manager(client)

    put = await client.put("/api/secrets/x1", json={"value": VALUE}, headers=headers)
    listing = await client.get("/api/secrets", headers=headers)
    delete = await client.delete("/api/secrets/x1", headers=headers)
    allowed = await client.put(
        "/api/secrets/x1", json={"value": VALUE}, headers=manager
    )

    assert [put.status, listing.status, delete.status] == [403, 403, 403]
    assert allowed.status == 201


async def test_the_database_file_alone_does_not_hold_the_value(
    client: TestClient[Any, Any], auth: dict[str, str], settings: Settings
) -> None:
    """Values are encrypted with a key kept in its own file (mode 0600)."""
    await client.put("/api/secrets/stored", json={"value": VALUE}, headers=auth)
    await client.app[DB].ping()

    files = list(settings.data_dir.glob("traceloom.sqlite3*"))
    key_file = settings.secrets_key_path

    assert files
    assert all(VALUE.encode() not in f.read_bytes() for f in files)
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert await client.app[SECRETS].resolve("any/repo", ["stored"]) == {
        "stored": VALUE
    }


async def test_repository_scope_wins_over_the_global_one(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """A run of the repository gets its own value; other runs the '*' one."""
    repo = "https://git.example.com/shop.git"
    await client.put("/api/secrets/t", json={"value": "global-1"}, headers=auth)
    await client.put(
        "/api/secrets/t", json={"value": "shop-only", "scope": repo}, headers=auth
    )
    store = client.app[SECRETS]

    shop = await store.resolve("https://git.example.com/shop", ["t"])
    other = await store.resolve("https://git.example.com/other.git", ["t"])
    missing = await store.resolve(repo, ["nope"])

    assert shop == {"t": "shop-only"}
    assert other == {"t": "global-1"}
    assert missing == {}


async def test_a_replaced_key_file_is_a_clear_error_not_a_leak(
    client: TestClient[Any, Any], auth: dict[str, str], tmp_path: Path
) -> None:
    """Values sealed under one key do not open under another."""
    from controlplane.errors import SourceError
    from controlplane.storage.secrets import SecretStore, load_or_create_key

    await client.put("/api/secrets/k", json={"value": VALUE}, headers=auth)
    other = SecretStore(client.app[DB], load_or_create_key(tmp_path / "other.key"))

    with pytest.raises(SourceError, match="cannot be decrypted"):
        await other.resolve("r", ["k"])
