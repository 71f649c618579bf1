"""What a request leaves in the log: its ids on every line, never a secret."""

from __future__ import annotations

import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import WaitForRun
from tests.unit.test_logs import json_logging

GIT_TOKEN = "ghp_R3dact10nTestT0ken0123456789abcdef"
# Port 9 (discard) on loopback refuses at once: the clone fails fast, locally.
REPO = f"https://oauth2:{GIT_TOKEN}@127.0.0.1:9/acme/e2e.git"


async def test_log_lines_carry_ids_and_no_secret(
    client: TestClient[Any, Any],
    api_key: str,
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A run whose repo URL holds a token: logs name the ids, never the secrets."""
    body = {
        "testSource": {"type": "git", "gitRepo": REPO, "gitBranch": "main"},
        "testPattern": "tests/**/*.spec.ts",
    }

    with json_logging():
        created = await client.post(
            "/api/runs", json=body, headers={**auth, "X-Request-Id": "req-42"}
        )
        run = await wait_for_run((await created.json())["id"])
        await client.get(
            "/api/runs", headers={"Authorization": "Bearer tlk_" + "z" * 43}
        )
    shown = await (await client.get(f"/api/runs/{run['id']}", headers=auth)).text()

    raw = capsys.readouterr().err
    lines = [json.loads(line) for line in raw.splitlines() if line.strip()]
    events = {line["event"] for line in lines}
    assert {"http.request", "run.created", "run.finished"} <= events
    assert all("request_id" in line or "run_id" in line for line in lines)
    assert any(
        line["event"] == "run.created" and line["request_id"] == "req-42"
        for line in lines
    )
    assert run["status"] == "errored"
    for secret in (GIT_TOKEN, api_key, api_key[len("tlk_") :], "z" * 43):
        assert secret not in raw
        assert secret not in shown
    assert "oauth2:" not in shown


async def test_an_unusable_request_id_is_replaced(
    client: TestClient[Any, Any], auth: dict[str, str]
) -> None:
    """A request id with odd characters is not echoed; a fresh one is made."""
    response = await client.get(
        "/healthz", headers={"X-Request-Id": "bad id with spaces;<x>"}
    )

    assert response.headers["X-Request-Id"] != "bad id with spaces;<x>"
    assert len(response.headers["X-Request-Id"]) == 16
