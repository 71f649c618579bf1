"""Dashboard sessions: a browser signs in with an API key or the operator's
password and gets a random session token in a cookie.

Only the token's SHA-256 is stored, next to what the session may do (the
key's scopes, or every scope for the operator), its CSRF token and when it
expires. A session made with a key ends as soon as the key is revoked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time

import attrs

from controlplane.storage.db import Database
from controlplane.storage.keys import ALL_SCOPES, authenticate

OPERATOR = "operator"


@attrs.frozen(kw_only=True)
class Session:
    subject: str
    key_id: str | None
    scopes: frozenset[str]
    csrf_token: str = attrs.field(repr=False)
    expires_at: float


@attrs.frozen
class NewSession:
    """A session just made, with its token: it goes in the cookie only."""

    session: Session
    token: str = attrs.field(repr=False)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class PasswordCheck:
    """The operator's password, kept as a salted scrypt hash only."""

    def __init__(self, password: str) -> None:
        self._salt = secrets.token_bytes(16)
        self._hash = self._derive(password)

    def _derive(self, password: str) -> bytes:
        return hashlib.scrypt(
            password.encode(), salt=self._salt, n=2**14, r=8, p=1, dklen=32
        )

    def matches(self, password: str) -> bool:
        return hmac.compare_digest(self._derive(password), self._hash)


class SessionStore:
    def __init__(self, db: Database, *, ttl_s: float, operator_password: str) -> None:
        self._db = db
        self.ttl_s = ttl_s
        self._password = PasswordCheck(operator_password) if operator_password else None

    @property
    def password_enabled(self) -> bool:
        return self._password is not None

    async def sign_in_with_key(self, secret: str) -> NewSession | None:
        key = await authenticate(self._db, secret.strip())
        if key is None:
            return None
        return await self._create(key.name, key.id, key.scopes)

    async def sign_in_with_password(self, password: str) -> NewSession | None:
        if self._password is None or not self._password.matches(password):
            return None
        return await self._create(OPERATOR, None, frozenset(ALL_SCOPES))

    async def _create(
        self, subject: str, key_id: str | None, scopes: frozenset[str]
    ) -> NewSession:
        token = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(
            subject=subject,
            key_id=key_id,
            scopes=scopes,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=now + self.ttl_s,
        )
        await self._db.execute(
            "INSERT INTO dashboard_sessions (token_hash, key_id, subject, scopes,"
            " csrf_token, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                _digest(token),
                key_id,
                subject,
                json.dumps(sorted(scopes)),
                session.csrf_token,
                now,
                session.expires_at,
            ),
        )
        return NewSession(session, token)

    async def lookup(self, token: str) -> Session | None:
        """The live session of ``token``; None if unknown, expired or revoked."""
        if not token or len(token) > 100:
            return None
        rows = await self._db.fetchall(
            "SELECT s.*, k.revoked_at AS key_revoked_at, k.id AS key_exists"
            " FROM dashboard_sessions s LEFT JOIN api_keys k ON k.id = s.key_id"
            " WHERE s.token_hash = ?",
            (_digest(token),),
        )
        if not rows:
            return None
        row = rows[0]
        revoked = row["key_id"] is not None and (
            row["key_exists"] is None or row["key_revoked_at"] is not None
        )
        if row["expires_at"] <= time.time() or revoked:
            await self.sign_out(token)
            return None
        return Session(
            subject=row["subject"],
            key_id=row["key_id"],
            scopes=frozenset(json.loads(row["scopes"])),
            csrf_token=row["csrf_token"],
            expires_at=row["expires_at"],
        )

    async def sign_out(self, token: str) -> None:
        await self._db.execute(
            "DELETE FROM dashboard_sessions WHERE token_hash = ?", (_digest(token),)
        )

    async def purge_expired(self) -> int:
        return await self._db.execute(
            "DELETE FROM dashboard_sessions WHERE expires_at <= ?", (time.time(),)
        )
