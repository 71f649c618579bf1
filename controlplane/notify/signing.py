"""Webhook signatures: HMAC-SHA256 over the timestamp and the body.

Each delivery carries ``X-TraceLoom-Timestamp: <unix seconds>`` and
``X-TraceLoom-Signature: sha256=<hex>``, the HMAC-SHA256 with the webhook's
secret of ``<timestamp>.<body>`` (the timestamp's ASCII digits, a dot, the
body's exact bytes). A receiver recomputes it, compares in constant time,
and refuses timestamps far from its own clock, so a captured delivery cannot
be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-TraceLoom-Timestamp"
SIGNATURE_HEADER = "X-TraceLoom-Signature"
DEFAULT_TOLERANCE_S = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for ``body`` sent at ``timestamp``."""
    message = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify(
    secret: str,
    *,
    timestamp: str,
    signature_header: str,
    body: bytes,
    now: float | None = None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
) -> bool:
    """Whether a delivery is authentic and fresh (what a receiver checks)."""
    if not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance_s:
        return False
    expected = signature(secret, int(timestamp), body)
    return hmac.compare_digest(expected, signature_header)
