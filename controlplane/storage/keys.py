"""API keys: ``tlk_`` plus random URL-safe text, stored only as a hash.

The first characters after ``tlk_`` are a lookup prefix kept in clear; the
whole key is hashed with SHA-256 (keys carry 256 bits of randomness, so a
slow password hash buys nothing) and compared in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

import attrs

from controlplane.domain import new_id
from controlplane.storage.db import Database, KeyRecord

KEY_PREFIX = "tlk_"
_LOOKUP_CHARS = 8
ALL_SCOPES = (
    "runs:trigger",
    "runs:read",
    "keys:manage",
    "schedules:manage",
    "secrets:manage",
)
# last_used_at is written at most this often per key, not on every request.
LAST_USED_RESOLUTION_S = 60.0


@attrs.frozen
class AuthenticatedKey:
    id: str
    name: str
    scopes: frozenset[str]


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _lookup_prefix(secret: str) -> str:
    return secret[len(KEY_PREFIX) : len(KEY_PREFIX) + _LOOKUP_CHARS]


@attrs.frozen
class IssuedKey:
    """A key just made: its record, and its secret, shown this once only."""

    record: KeyRecord
    secret: str = attrs.field(repr=False)


async def issue_key(
    db: Database, *, name: str, scopes: tuple[str, ...] = ALL_SCOPES
) -> IssuedKey:
    """Store a new key and return it with its secret."""
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    key_id = new_id("key_")
    await db.insert_key(
        key_id=key_id,
        name=name,
        prefix=_lookup_prefix(secret),
        secret_hash=_hash(secret),
        scopes=list(scopes),
    )
    record = await db.get_key(key_id)
    assert record is not None, "a key just inserted can be read back"
    return IssuedKey(record=record, secret=secret)


async def create_key(
    db: Database, *, name: str, scopes: tuple[str, ...] = ALL_SCOPES
) -> str:
    """Store a new key and return its secret; this is the only time it exists."""
    return (await issue_key(db, name=name, scopes=scopes)).secret


async def authenticate(db: Database, secret: str) -> AuthenticatedKey | None:
    """Return the key that ``secret`` belongs to, or None."""
    if not secret.startswith(KEY_PREFIX) or len(secret) < len(KEY_PREFIX) + 32:
        return None
    wanted = _hash(secret)
    match = None
    for row in await db.keys_by_prefix(_lookup_prefix(secret)):
        if hmac.compare_digest(row["secret_hash"], wanted):
            match = row
    if match is None:
        return None
    last_used = match["last_used_at"]
    if last_used is None or time.time() - last_used >= LAST_USED_RESOLUTION_S:
        await db.touch_key(match["id"])
    return AuthenticatedKey(
        id=match["id"],
        name=match["name"],
        scopes=frozenset(json.loads(match["scopes"])),
    )
