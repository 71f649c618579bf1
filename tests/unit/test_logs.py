"""Logging never carries a secret: the redaction rules, then the real pipeline."""

from __future__ import annotations

import json
import logging
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import structlog
import yarl

from controlplane.logs import (
    REDACTED,
    SECRET_VALUES,
    configure_logging,
    get_logger,
    redact_text,
)
from controlplane.remote.dispatch import redact_artifacts
from controlplane.storage.artifacts import LocalArtifactStore

API_KEY = "tlk_" + "Q7xk2P9mZr4TbW1vN8cY5sJd3HfL6gEaU0oKiRnM"
GIT_TOKEN = "ghp_S3cr3tT0k3nF0rG1tHubXyz0123456789"
PEM = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBPRIVATEKEYMATERIALPRIVATEKEYMATERIAL\n"
    "-----END OPENSSH PRIVATE KEY-----"
)
PEM_BODY = "QyNTUxOQAAACBPRIVATEKEYMATERIALPRIVATEKEYMATERIAL"
AMZ_SIGNATURE = "9f8e7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928"
AMZ_CREDENTIAL = "ASIAEXAMPLEKEYID%2F20240601%2Fus-east-1%2Fs3%2Faws4_request"
AMZ_TOKEN = "IQoJb3JpZ2luX2VjEFakeSessionTokenValue%2B%2F%3D"
PRESIGNED = (
    "https://traces.s3.amazonaws.com/run_1/trace.zip"
    "?X-Amz-Algorithm=AWS4-HMAC-SHA256"
    f"&X-Amz-Credential={AMZ_CREDENTIAL}"
    "&X-Amz-Date=20240601T000000Z&X-Amz-Expires=900"
    f"&X-Amz-Security-Token={AMZ_TOKEN}"
    "&X-Amz-SignedHeaders=host"
    f"&X-Amz-Signature={AMZ_SIGNATURE}"
)


@pytest.mark.parametrize(
    ("text", "secret", "kept"),
    [
        pytest.param(f"key={API_KEY} ok", API_KEY[4:], "key=tlk_", id="api-key"),
        pytest.param(
            f"https://oauth2:{GIT_TOKEN}@github.com/acme/e2e.git",
            GIT_TOKEN,
            "@github.com/acme/e2e.git",
            id="url-user-and-token",
        ),
        pytest.param(
            f"https://{GIT_TOKEN}@github.com/acme/e2e.git",
            GIT_TOKEN,
            "https://",
            id="url-token-only",
        ),
        pytest.param(
            f"fatal: unable to access 'https://x-access-token:{GIT_TOKEN}@git.example"
            ".invalid/acme/e2e.git/': The requested URL returned error: 403",
            GIT_TOKEN,
            "returned error: 403",
            id="git-error-message",
        ),
        pytest.param(
            f"ssh://deploy:{GIT_TOKEN}@git.example.invalid:2222/e2e.git",
            GIT_TOKEN,
            ":2222/e2e.git",
            id="ssh-url",
        ),
        pytest.param(f"key:\n{PEM}\nnext line", PEM_BODY, "next line", id="pem"),
        pytest.param(
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAtruncatedKEYbody",
            "MIIEowIBAAKCAQEAtruncatedKEYbody",
            "",
            id="pem-truncated",
        ),
        pytest.param(PRESIGNED, AMZ_SIGNATURE, "X-Amz-Expires=900", id="amz-signature"),
        pytest.param(PRESIGNED, "ASIAEXAMPLEKEYID", "X-Amz-Date=", id="amz-credential"),
        pytest.param(PRESIGNED, "FakeSessionToken", "trace.zip", id="amz-token"),
        pytest.param(
            PRESIGNED.lower(), AMZ_SIGNATURE.lower(), "x-amz-date=", id="amz-lowercase"
        ),
        pytest.param(
            "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload.sig",
            "eyJhbGciOiJIUzI1NiJ9",
            "Authorization: Bearer ",
            id="bearer",
        ),
        pytest.param(
            f"authorization: bearer {API_KEY}", API_KEY[4:], "bearer ", id="bearer-key"
        ),
        pytest.param(
            f"https://user:pa@ss{GIT_TOKEN}@git.example/r.git",
            GIT_TOKEN,
            "@git.example/r.git",
            id="url-password-with-at",
        ),
        pytest.param(
            f"fatal: unable to look up deploy:{GIT_TOKEN}@git.example (port 9418)",
            GIT_TOKEN,
            "@git.example (port 9418)",
            id="git-message-without-scheme",
        ),
        pytest.param(
            f"deploy:{GIT_TOKEN}@git.example:acme/e2e.git",
            GIT_TOKEN,
            "@git.example:acme/e2e.git",
            id="scp-like-with-password",
        ),
        pytest.param(
            f"https://git.example/r.git?private_token={GIT_TOKEN}&depth=1",
            GIT_TOKEN,
            "&depth=1",
            id="token-in-query",
        ),
    ],
)
def test_redact_text_removes_the_secret_and_keeps_the_rest(
    text: str, secret: str, kept: str
) -> None:
    """Each known kind of secret is replaced; the text around it stays readable."""
    redacted = redact_text(text)

    assert secret not in redacted
    assert REDACTED in redacted
    assert kept in redacted


@pytest.mark.parametrize(
    "text",
    [
        "run.created run_id=run_018f2a servers=4",
        "https://github.com/acme/e2e.git",
        "git@github.com:acme/e2e.git",
        "https://traces.s3.amazonaws.com/run_1/trace.zip?versionId=3",
        "tlk_short",
        "at 12:30:00 mail ops@example.com",
        "https://git.example/r.git?ref=main",
    ],
)
def test_redact_text_leaves_text_without_secrets_alone(text: str) -> None:
    """Text with nothing secret in it comes back unchanged."""
    redacted = redact_text(text)

    assert redacted == text


@contextmanager
def json_logging() -> Iterator[None]:
    """Log JSON lines to the current (captured) stderr, then undo everything.

    Used inside the test body rather than as a fixture so that the handlers
    it saves and restores are those of the running test phase.
    """
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    asyncssh = logging.getLogger("asyncssh")
    saved_asyncssh_level = asyncssh.level
    configure_logging(log_format="json")
    try:
        yield
    finally:
        structlog.contextvars.clear_contextvars()
        structlog.reset_defaults()
        root.handlers[:] = saved_handlers
        root.setLevel(saved_level)
        asyncssh.setLevel(saved_asyncssh_level)


def _lines(raw: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in raw.splitlines() if line.strip()]


SECRETS = [API_KEY[4:], GIT_TOKEN, PEM_BODY, AMZ_SIGNATURE, "ASIAEXAMPLEKEYID"]


def test_no_secret_reaches_the_json_log(capsys: pytest.CaptureFixture[str]) -> None:
    """Secrets in fields, nested values, context and exceptions are all redacted."""
    log = get_logger("tests.unit.logs")
    repo = f"https://oauth2:{GIT_TOKEN}@github.com/acme/e2e.git"

    with json_logging():
        structlog.contextvars.bind_contextvars(api_key=API_KEY)
        log.warning("clone.failed", repo=repo, attempt=2)
        log.warning(
            "host.prepared",
            details={"ssh": {"private_key": PEM}, "urls": [PRESIGNED], "n": 3},
            pair=("Authorization", f"Bearer {API_KEY}"),
        )
        try:
            raise RuntimeError(f"git clone {repo} exited 128")
        except RuntimeError:
            log.exception("run.crashed", run_id="run_1")
        logging.getLogger("aiohttp.server").error("request from %s failed", repo)

    raw = capsys.readouterr().err
    for secret in SECRETS:
        assert secret not in raw
    events = _lines(raw)
    assert [e["event"] for e in events] == [
        "clone.failed",
        "host.prepared",
        "run.crashed",
        f"request from https://{REDACTED}@github.com/acme/e2e.git failed",
    ]
    clone, host, crash, _foreign = events
    assert clone["repo"] == f"https://{REDACTED}@github.com/acme/e2e.git"
    assert clone["attempt"] == 2
    assert clone["api_key"] == f"tlk_{REDACTED}"
    assert host["details"]["ssh"]["private_key"] == REDACTED
    assert host["details"]["n"] == 3
    assert f"X-Amz-Signature={REDACTED}" in host["details"]["urls"][0]
    assert host["pair"] == ["Authorization", f"Bearer {REDACTED}"]
    assert crash["run_id"] == "run_1"
    assert "RuntimeError: git clone https://" in crash["exception"]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(
            RuntimeError(f"push to https://{GIT_TOKEN}@github.com failed"),
            id="exception",
        ),
        pytest.param(yarl.URL(f"https://oauth2:{GIT_TOKEN}@github.com/a/b"), id="url"),
    ],
)
def test_no_secret_reaches_the_log_from_a_non_string_value(
    capsys: pytest.CaptureFixture[str], value: object
) -> None:
    """A secret inside an object logged as a field value is redacted too."""
    log = get_logger("tests.unit.logs")

    with json_logging():
        log.warning("push.failed", error=value)

    raw = capsys.readouterr().err
    assert "push.failed" in raw
    assert GIT_TOKEN not in raw


RUN_SECRET = "p4ss-w0rd-of-a-run"


def test_values_of_secrets_handed_to_runs_are_redacted_while_runs_hold_them(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A run's secrets leave no log line, whole or one line of a multi-line one.

    Two runs may hold the same value; it stays redacted until both let go.
    """
    log = get_logger("tests.unit.logs")
    multi = "-----CERT-----\nline-one-of-it\nline-two-of-it"

    with json_logging():
        SECRET_VALUES.add([RUN_SECRET, multi])
        SECRET_VALUES.add([RUN_SECRET])
        log.warning("setup.output", tail=f"echo {RUN_SECRET}; got line-two-of-it")
        SECRET_VALUES.remove([RUN_SECRET, multi])
        log.warning("still.held", value=RUN_SECRET)
        SECRET_VALUES.remove([RUN_SECRET])
        log.warning("released", value=RUN_SECRET)

    events = _lines(capsys.readouterr().err)
    assert events[0]["tail"] == f"echo {REDACTED}; got {REDACTED}"
    assert events[1]["value"] == REDACTED
    assert events[2]["value"] == RUN_SECRET
    assert not SECRET_VALUES.active


def test_attachments_are_redacted_in_text_and_inside_traces(tmp_path: Path) -> None:
    """error-context.md and a trace zip's entries lose the value; a PNG is kept."""
    store = LocalArtifactStore(tmp_path)
    text = store.path_for("r/a/error-context.md")
    text.parent.mkdir(parents=True)
    text.write_text(f"Expected: wrong\nReceived: {RUN_SECRET}\n")
    trace = store.path_for("r/a/trace.zip")
    with zipfile.ZipFile(trace, "w") as archive:
        archive.writestr("trace.network", f'{{"auth":"{RUN_SECRET}"}}')
        archive.writestr("resources/page.html", "<p>no secret</p>")
    png = store.path_for("r/a/shot.png")
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    before = png.read_bytes()

    SECRET_VALUES.add([RUN_SECRET])
    try:
        redact_artifacts(
            store, ["r/a/error-context.md", "r/a/trace.zip", "r/a/shot.png"]
        )
    finally:
        SECRET_VALUES.remove([RUN_SECRET])

    assert text.read_text() == f"Expected: wrong\nReceived: {REDACTED}\n"
    with zipfile.ZipFile(trace) as archive:
        assert archive.read("trace.network").decode() == f'{{"auth":"{REDACTED}"}}'
        assert archive.read("resources/page.html") == b"<p>no secret</p>"
    assert png.read_bytes() == before
