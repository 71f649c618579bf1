"""Webhook signatures: HMAC-SHA256 over the timestamp and the exact body."""

from __future__ import annotations

import hashlib
import hmac

from controlplane.notify.signing import signature, verify

SECRET = "whsec-unit-test-secret-0123"
BODY = b'{"event":"run.finished"}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    """What the README documents, computed independently here."""
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256)

    assert signature(SECRET, 1700000000, BODY) == f"sha256={expected.hexdigest()}"


def test_a_fresh_untouched_delivery_verifies() -> None:
    """The receiver's check passes for what was sent, as sent."""
    header = signature(SECRET, 1700000000, BODY)

    assert verify(
        SECRET,
        timestamp="1700000000",
        signature_header=header,
        body=BODY,
        now=1700000010,
    )


def test_a_changed_body_timestamp_or_secret_fails() -> None:
    """Any change to what was signed, or the wrong secret, is refused."""
    header = signature(SECRET, 1700000000, BODY)
    now = 1700000001

    assert not verify(
        SECRET,
        timestamp="1700000000",
        signature_header=header,
        body=BODY + b" ",
        now=now,
    )
    assert not verify(
        SECRET, timestamp="1700000001", signature_header=header, body=BODY, now=now
    )
    assert not verify(
        "another-secret-value", timestamp="1700000000", signature_header=header,
        body=BODY, now=now,
    )  # fmt: skip


def test_an_old_delivery_is_refused_as_a_replay() -> None:
    """A captured delivery sent again ten minutes later does not verify."""
    header = signature(SECRET, 1700000000, BODY)

    assert not verify(
        SECRET,
        timestamp="1700000000",
        signature_header=header,
        body=BODY,
        now=1700000600,
    )
    assert not verify(SECRET, timestamp="soon", signature_header=header, body=BODY)
