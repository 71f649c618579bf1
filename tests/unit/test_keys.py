"""API keys in a real SQLite file: shown once, stored hashed, checked exactly."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from controlplane.storage.db import Database
from controlplane.storage.keys import ALL_SCOPES, authenticate, create_key

KEY_SHAPE = re.compile(r"^tlk_[A-Za-z0-9_-]{32,}$")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "db.sqlite3"


@pytest.fixture
async def db(db_path: Path) -> AsyncIterator[Database]:
    async with Database.open(db_path) as database:
        yield database


def _last_used_at(db_path: Path) -> dict[str, float | None]:
    """Read the column straight from the file, as another process would."""
    with sqlite3.connect(db_path) as conn:
        rows = conn.execute("SELECT name, last_used_at FROM api_keys").fetchall()
    return dict(rows)


def _stored_bytes(db_path: Path) -> bytes:
    """Every byte SQLite left on disk: the database and any journal files."""
    return b"".join(p.read_bytes() for p in sorted(db_path.parent.iterdir()))


def _tampered(secret: str) -> str:
    last = secret[-1]
    return secret[:-1] + ("A" if last != "A" else "B")


async def test_created_key_has_the_tlk_shape(db: Database) -> None:
    """A key is tlk_ followed by at least 32 URL-safe characters."""
    secret = await create_key(db, name="ci")

    assert KEY_SHAPE.match(secret)


async def test_created_keys_are_all_different(db: Database) -> None:
    """Each call makes a fresh random key."""
    secrets = {await create_key(db, name=f"ci-{i}") for i in range(20)}

    assert len(secrets) == 20


async def test_database_file_never_holds_the_secret(db_path: Path) -> None:
    """Only a hash is stored: the secret's text is nowhere in the database files."""
    async with Database.open(db_path) as db:
        secret = await create_key(db, name="ci")
        await authenticate(db, secret)

    stored = _stored_bytes(db_path)
    assert stored
    assert secret.encode() not in stored
    assert secret[len("tlk_") + 8 :].encode() not in stored


async def test_authenticate_accepts_the_key_and_returns_its_scopes(
    db: Database,
) -> None:
    """The right secret answers the key's id, name and scopes."""
    secret = await create_key(db, name="reader", scopes=("runs:read",))

    key = await authenticate(db, secret)

    assert key is not None
    assert key.name == "reader"
    assert key.id.startswith("key_")
    assert key.scopes == frozenset({"runs:read"})


async def test_a_key_gets_every_scope_by_default(db: Database) -> None:
    """Without scopes given, a key may do everything."""
    secret = await create_key(db, name="admin")

    key = await authenticate(db, secret)

    assert key is not None
    assert key.scopes == frozenset(ALL_SCOPES)


async def test_each_key_authenticates_as_itself(db: Database) -> None:
    """Two keys are told apart: each secret answers its own record."""
    first = await create_key(db, name="first")
    second = await create_key(db, name="second")

    one = await authenticate(db, first)
    two = await authenticate(db, second)

    assert one is not None
    assert two is not None
    assert (one.name, two.name) == ("first", "second")
    assert one.id != two.id


@pytest.mark.parametrize(
    "wrong",
    [
        pytest.param(_tampered, id="last-char-changed"),
        pytest.param(lambda s: s[:12] + s[12:][::-1], id="same-prefix-rest-reversed"),
        pytest.param(lambda s: s + "x", id="one-char-longer"),
        pytest.param(lambda s: s[:-1], id="one-char-shorter"),
        pytest.param(lambda s: s.upper(), id="upper-cased"),
        pytest.param(lambda s: s[: len("tlk_") + 31], id="too-short"),
        pytest.param(lambda s: "tlk_", id="prefix-only"),
        pytest.param(lambda s: "", id="empty"),
        pytest.param(lambda s: s[len("tlk_") :], id="without-tlk"),
        pytest.param(lambda s: "tlx_" + s[len("tlk_") :], id="other-prefix"),
        pytest.param(lambda s: "Bearer " + s, id="with-scheme"),
        pytest.param(lambda s: "tlk_" + "A" * 43, id="well-formed-unknown"),
    ],
)
async def test_authenticate_rejects_anything_but_the_exact_secret(
    db: Database, wrong: Callable[[str], str]
) -> None:
    """A tampered, different, short or non-tlk string is not a key."""
    secret = await create_key(db, name="ci")

    key = await authenticate(db, wrong(secret))

    assert key is None


async def test_last_used_at_is_set_when_the_key_is_used(db_path: Path) -> None:
    """A successful authentication stamps the key; a failed one does not."""
    async with Database.open(db_path) as db:
        used = await create_key(db, name="used")
        await create_key(db, name="idle")
        before = _last_used_at(db_path)

        await authenticate(db, used)
        await authenticate(db, _tampered(used))
        after = _last_used_at(db_path)

    assert before == {"used": None, "idle": None}
    assert after["used"] is not None
    assert after["used"] > 0
    assert after["idle"] is None
