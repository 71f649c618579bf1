"""Secrets for the tests: stored encrypted, by name and scope, never shown.

A secret is a name, a scope and a value. The scope says which runs may have
it: ``*`` for every run, or a repository URL for the runs of that
repository only (so that a key allowed to start runs of any repository
cannot read the secrets of another). ``traceloom.yml`` names the secrets a
suite needs; a run gets the value of the repository's scope when there is
one, else the ``*`` one.

Values are encrypted with AES-256-GCM under a key kept in its own file
(``TRACELOOM_SECRETS_KEY_FILE``, by default ``secrets.key`` in the data
folder, made on first start with mode 0600): the database file alone does
not give a value away. Each value is bound to its name and scope, so a row
copied onto another name does not decrypt. Nothing here ever returns a
value except ``resolve``, which the run engine calls to hand a run its
secrets.
"""

from __future__ import annotations

import base64
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path

import aiosqlite
import attrs
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from controlplane.engine.repoconfig import SECRET_NAME
from controlplane.engine.source import split_credentials
from controlplane.errors import InvalidRequest, SourceError, TraceLoomError
from controlplane.storage.db import Database
from controlplane.storage.sealing import Sealer

GLOBAL_SCOPE = "*"
MIN_VALUE_CHARS = 4
MAX_VALUE_BYTES = 64 * 1024
_KEY_BYTES = 32


class SecretsKeyError(TraceLoomError):
    """The secrets key file is missing, unreadable or not a key."""


@attrs.frozen(kw_only=True)
class SecretRecord:
    """A secret as it may be shown: everything but its value."""

    name: str
    scope: str
    created_at: float
    updated_at: float


def normalize_scope(scope: str) -> str:
    """``*``, or a repository URL compared without credentials or ``.git``."""
    text = scope.strip()
    if text == GLOBAL_SCOPE:
        return text
    clean, _ = split_credentials(text)
    clean = clean.rstrip("/")
    clean = clean.removesuffix(".git")
    match = re.match(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<host>[^/]*)", clean)
    if match:
        clean = match["scheme"].lower() + match["host"].lower() + clean[match.end() :]
    return clean


def check_value(value: str) -> None:
    """Refuse values that could not be kept or redacted reliably."""
    if len(value) < MIN_VALUE_CHARS:
        raise InvalidRequest(
            {
                "value": f"must be at least {MIN_VALUE_CHARS} characters: shorter"
                " values cannot be redacted from logs reliably"
            }
        )
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise InvalidRequest({"value": f"must be at most {MAX_VALUE_BYTES} bytes"})
    if "\0" in value:
        raise InvalidRequest({"value": "must not hold a NUL character"})


def check_name(name: str) -> None:
    if not SECRET_NAME.match(name):
        raise InvalidRequest(
            {
                "name": "must be 1 to 128 letters, digits, '_', '-' or '.',"
                " starting with a letter or digit"
            }
        )


# What a run's repository can be: a URL, git's scp-like form, or (where the
# operator allows local repositories) an absolute path.
_REPOSITORY = re.compile(
    r"(?:[A-Za-z][A-Za-z0-9+.-]*://[^\s/]+|[^\s/@:]+@[^\s/:]+:|/)\S*\Z"
)


def check_scope(scope: str) -> None:
    text = scope.strip()
    if text != GLOBAL_SCOPE and (len(text) > 2048 or not _REPOSITORY.match(text)):
        raise InvalidRequest(
            {"scope": "must be '*' or a repository URL (as runs give gitRepo)"}
        )


def load_or_create_key(path: Path) -> bytes:
    """The 256-bit key in ``path``; a new one is made when the file is absent."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        key = AESGCM.generate_key(bit_length=_KEY_BYTES * 8)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return load_or_create_key(path)
        with os.fdopen(fd, "wb") as out:
            out.write(base64.b64encode(key) + b"\n")
        return key
    except OSError as exc:
        raise SecretsKeyError(f"cannot read the secrets key {path}: {exc}") from None
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except ValueError:
        key = b""
    if len(key) != _KEY_BYTES:
        raise SecretsKeyError(
            f"{path} does not hold a secrets key (base64 of {_KEY_BYTES} bytes)"
        )
    return key


class SecretStore:
    """The control plane's secrets, in the ``secrets`` table.

    XXX: there is no key rotation: a new key file makes every stored value
    unreadable (each must be set again). A key id stored with each value,
    and a re-encrypting command, would allow rotating it.
    """

    def __init__(self, db: Database, key: bytes) -> None:
        self._db = db
        self._sealer = Sealer(key)

    @staticmethod
    def _bound(name: str, scope: str) -> str:
        return f"traceloom-secret\0{name}\0{scope}"

    def _seal(self, name: str, scope: str, value: str) -> bytes:
        return self._sealer.seal(self._bound(name, scope), value)

    def _open(self, name: str, scope: str, blob: bytes) -> str:
        return self._sealer.open(self._bound(name, scope), blob)

    async def put(self, name: str, scope: str, value: str) -> tuple[SecretRecord, bool]:
        """Store (or replace) a value; return its record and whether it is new."""
        check_name(name)
        check_value(value)
        check_scope(scope)
        scope = normalize_scope(scope)
        now = time.time()
        existed = await self._get(name, scope) is not None
        await self._db._execute(
            "INSERT INTO secrets (name, scope, ciphertext, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, scope) DO UPDATE SET"
            " ciphertext = excluded.ciphertext, updated_at = excluded.updated_at",
            (name, scope, self._seal(name, scope, value), now, now),
        )
        record = await self._get(name, scope)
        assert record is not None, "a secret just stored can be read back"
        return record, not existed

    async def _get(self, name: str, scope: str) -> SecretRecord | None:
        rows = await self._db._fetchall(
            "SELECT name, scope, created_at, updated_at FROM secrets"
            " WHERE name = ? AND scope = ?",
            (name, scope),
        )
        return _record(rows[0]) if rows else None

    async def list(self) -> list[SecretRecord]:
        rows = await self._db._fetchall(
            "SELECT name, scope, created_at, updated_at FROM secrets"
            " ORDER BY name, scope"
        )
        return [_record(row) for row in rows]

    async def delete(self, name: str, scope: str) -> bool:
        deleted = await self._db._execute(
            "DELETE FROM secrets WHERE name = ? AND scope = ?",
            (name, normalize_scope(scope)),
        )
        if deleted:
            # Old pages live in the write-ahead log until it is checkpointed.
            await self._db._fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
        return bool(deleted)

    async def resolve(self, repo: str, names: Iterable[str]) -> dict[str, str]:
        """The values of ``names`` for a run of ``repo``; missing ones are left out.

        The repository's own secret wins over the ``*`` one of the same name.
        """
        wanted = sorted(set(names))
        if not wanted:
            return {}
        scope = normalize_scope(repo)
        marks = ",".join("?" for _ in wanted)
        rows = await self._db._fetchall(
            "SELECT name, scope, ciphertext FROM secrets"  # noqa: S608
            f" WHERE name IN ({marks}) AND scope IN (?, ?)",
            [*wanted, scope, GLOBAL_SCOPE],
        )
        chosen: dict[str, tuple[str, bytes]] = {}
        for row in rows:
            if row["name"] not in chosen or row["scope"] != GLOBAL_SCOPE:
                chosen[row["name"]] = (row["scope"], bytes(row["ciphertext"]))
        values: dict[str, str] = {}
        for name, (row_scope, blob) in chosen.items():
            try:
                values[name] = self._open(name, row_scope, blob)
            except InvalidTag:
                raise SourceError(
                    f"secret {name!r} cannot be decrypted with this control plane's"
                    " secrets key (was the key file replaced?); set it again"
                ) from None
        return values


def _record(row: aiosqlite.Row) -> SecretRecord:
    return SecretRecord(
        name=row["name"],
        scope=row["scope"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )
