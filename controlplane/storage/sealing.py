"""Small values the database keeps encrypted: secrets and git credentials.

AES-256-GCM under the control plane's secrets key (see
``controlplane.storage.secrets``). Each value is bound to a context, the
purpose and the row it belongs to, so a sealed value copied onto another
row does not open.
"""

from __future__ import annotations

import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_NONCE_BYTES = 12
_VERSION = b"\x01"


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    @classmethod
    def ephemeral(cls) -> Sealer:
        """A key of this process only: what it seals is gone when it ends."""
        return cls(AESGCM.generate_key(bit_length=256))

    def seal(self, context: str, value: str) -> bytes:
        nonce = secrets.token_bytes(_NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode(), context.encode())
        return _VERSION + nonce + sealed

    def open(self, context: str, blob: bytes) -> str:
        """The value; ``cryptography.exceptions.InvalidTag`` if it does not open."""
        if blob[:1] != _VERSION:
            raise InvalidTag
        nonce, sealed = blob[1 : 1 + _NONCE_BYTES], blob[1 + _NONCE_BYTES :]
        return self._aead.decrypt(nonce, sealed, context.encode()).decode()
