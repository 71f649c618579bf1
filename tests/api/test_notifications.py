"""Webhooks, Slack messages and GitHub statuses, delivered to real servers.

The receivers are aiohttp servers on loopback. The webhook receiver checks
each signature with its own HMAC code (not the control plane's), as a
customer's receiver would; a stand-in for api.github.com (unreachable from
here) checks the token and the status it is sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from controlplane.api.app import make_app
from controlplane.api.appkeys import DB
from controlplane.domain import (
    Counts,
    GitSource,
    Run,
    RunRequest,
    RunStatus,
    TestResult,
    TestStatus,
    new_id,
)
from controlplane.engine.runs import FinishedRun
from controlplane.notify.config import WebhookFormat, WebhookTarget
from controlplane.notify.service import GitHubSettings, Notifier, RetryPolicy
from controlplane.settings import Settings
from controlplane.storage.db import Database
from controlplane.storage.keys import create_key
from tests.api.live import RefusingProvider
from tests.unit.test_logs import json_logging

SECRET = "whsec-7f3c9a1e5b2d4c6e8a0b"
SLACK_TOKEN = "T0001/B0002/SlackPathSecretXYZ"
GITHUB_TOKEN = "ghp_StatusT0kenForTheFakeGitHub01"
SHA = "0123456789abcdef0123456789abcdef01234567"


@attrs.define
class Receiver:
    """What a loopback server was sent, and how it answers each path."""

    url: str = ""
    received: list[dict[str, Any]] = attrs.Factory(list)
    # path -> status codes to answer in turn (then 200)
    script: dict[str, list[int]] = attrs.Factory(dict)

    def to(self, path: str) -> list[dict[str, Any]]:
        return [r for r in self.received if r["path"] == path]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    found = Receiver()

    async def handle(request: web.Request) -> web.Response:
        body = await request.read()
        found.received.append(
            {"path": request.path, "headers": dict(request.headers), "body": body}
        )
        answers = found.script.get(request.path, [])
        status = answers.pop(0) if answers else 200
        return web.json_response({"ok": status < 300}, status=status)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    found.url = f"http://{host}:{port}"
    yield found
    await runner.cleanup()


def signed_by(secret: str, delivery: dict[str, Any]) -> bool:
    """The receiver's own check: HMAC-SHA256 of ``<timestamp>.<body>``."""
    timestamp = delivery["headers"]["X-TraceLoom-Timestamp"]
    expected = hmac.new(
        secret.encode(), timestamp.encode() + b"." + delivery["body"], hashlib.sha256
    ).hexdigest()
    fresh = abs(time.time() - int(timestamp)) < 300
    offered = delivery["headers"]["X-TraceLoom-Signature"]
    return fresh and hmac.compare_digest(f"sha256={expected}", offered)


def webhooks_file(tmp_path: Path, receiver: Receiver) -> Path:
    (tmp_path / "hook-secret").write_text(SECRET + "\n")
    path = tmp_path / "webhooks.yml"
    path.write_text(
        "webhooks:\n"
        f"  - name: every-run\n    url: {receiver.url}/every\n"
        "    secretFile: hook-secret\n"
        f"  - name: failures\n    url: {receiver.url}/failures\n"
        f"    secret: {SECRET}\n    when: failed\n"
        f"  - name: team-slack\n    url: {receiver.url}/services/{SLACK_TOKEN}\n"
        "    format: slack\n"
    )
    return path


async def settled(client: TestClient[Any, Any], run_id: str, auth: Any) -> Any:
    """The run once it finished and no notification of it is pending."""
    for _ in range(600):
        run = await (await client.get(f"/api/runs/{run_id}", headers=auth)).json()
        pending = [n for n in run["notifications"] if n["status"] == "pending"]
        if run["finishedAt"] and run["notifications"] and not pending:
            return run
        await asyncio.sleep(0.1)
    raise AssertionError(f"the notifications of {run_id} did not settle")


async def test_a_finished_run_is_announced_signed_and_retried(
    settings: Settings,
    receiver: Receiver,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Each webhook gets the run's status, counts and URL, signed; a 503 is
    retried after a backoff, and every attempt is in the run's record."""
    receiver.script["/every"] = [503]
    config = attrs.evolve(
        settings,
        webhooks_file=webhooks_file(tmp_path, receiver),
        webhook_retry_base_s=0.3,
        public_url="https://traceloom.example.com",
    )
    app = make_app(settings=config, provider=RefusingProvider())
    with json_logging():
        async with TestClient(TestServer(app)) as client:
            auth = {"Authorization": f"Bearer {await create_key(app[DB], name='t')}"}
            body = {
                "testSource": {
                    "type": "git",
                    "gitRepo": "/nonexistent/hooks.git",
                    "gitBranch": "main",
                },
                "testPattern": "tests/**/*.spec.ts",
                "name": "hooked",
            }
            created = await (
                await client.post("/api/runs", json=body, headers=auth)
            ).json()
            run = await settled(client, created["id"], auth)
            stored = await app[DB].fetchall(
                "SELECT n.payload, a.error FROM notifications n"
                " LEFT JOIN notification_attempts a ON a.notification_id = n.id"
            )
    logs = capsys.readouterr().err

    every, failures = receiver.to("/every"), receiver.to("/failures")
    event = json.loads(every[-1]["body"])
    notes = {n["target"]: n for n in run["notifications"]}
    assert run["status"] == "errored"
    assert len(every) == 2
    assert len(failures) == 1
    assert all(signed_by(SECRET, d) for d in every + failures)
    assert (
        every[0]["headers"]["X-TraceLoom-Delivery"]
        == every[1]["headers"]["X-TraceLoom-Delivery"]
    )
    assert event["event"] == "run.finished"
    assert event["run"]["status"] == "errored"
    assert event["run"]["counts"] == run["counts"]
    assert event["run"]["url"] == f"https://traceloom.example.com/api/runs/{run['id']}"
    assert event["run"]["dashboardUrl"].endswith(f"/runs/{run['id']}")
    assert [a["httpStatus"] for a in notes["every-run"]["attempts"]] == [503, 200]
    assert notes["every-run"]["status"] == "delivered"
    first, second = notes["every-run"]["attempts"]
    assert second["at"] > first["at"]
    assert notes["failures"]["status"] == "delivered"
    assert notes["team-slack"]["kind"] == "slack"
    for secret in (SECRET, SLACK_TOKEN):
        assert secret not in logs
        assert secret not in json.dumps(run)
        assert all(secret not in str(tuple(row)) for row in stored)


async def test_the_slack_format_is_an_incoming_webhook_message(
    settings: Settings, receiver: Receiver, tmp_path: Path
) -> None:
    """Slack gets ``text`` and Block Kit ``blocks`` naming the run and counts."""
    async with notifier_on(
        tmp_path,
        [
            WebhookTarget(
                name="slack",
                url=f"{receiver.url}/services/{SLACK_TOKEN}",
                format=WebhookFormat.SLACK,
            )
        ],
    ) as (notifier, db):
        run = await finished_run(db, RunStatus.FAILED, failed=1, passed=3)
        await deliver(notifier, run)

    [message] = receiver.to(f"/services/{SLACK_TOKEN}")
    payload = json.loads(message["body"])
    assert "failed" in payload["text"]
    assert payload["blocks"][0]["type"] == "section"
    assert f"/runs/{run.id}|nightly>" in payload["blocks"][0]["text"]["text"]
    assert "3 passed, 1 failed" in payload["blocks"][1]["text"]["text"]
    assert "tests/cart.spec.ts" in json.dumps(payload["blocks"])
    assert "X-TraceLoom-Signature" not in message["headers"]


async def test_failures_only_hooks_skip_passed_runs(
    receiver: Receiver, tmp_path: Path
) -> None:
    """A hook set to ``on: failed`` hears of failed runs only."""
    hooks = [
        WebhookTarget(name="all", url=f"{receiver.url}/all", secret=SECRET),
        WebhookTarget(
            name="bad", url=f"{receiver.url}/bad", secret=SECRET, only_failures=True
        ),
    ]
    async with notifier_on(tmp_path, hooks) as (notifier, db):
        await deliver(notifier, await finished_run(db, RunStatus.PASSED, passed=2))
        await deliver(notifier, await finished_run(db, RunStatus.TIMED_OUT))

    statuses = [json.loads(d["body"])["run"]["status"] for d in receiver.to("/bad")]
    assert len(receiver.to("/all")) == 2
    assert statuses == ["timed_out"]


async def test_a_refusing_receiver_is_not_retried_and_a_failing_one_gives_up(
    receiver: Receiver, tmp_path: Path
) -> None:
    """A 400 is final at once; 5xx answers are retried up to the attempt limit."""
    receiver.script["/gone"] = [400]
    receiver.script["/down"] = [500, 502, 503, 504]
    hooks = [
        WebhookTarget(name="gone", url=f"{receiver.url}/gone"),
        WebhookTarget(name="down", url=f"{receiver.url}/down"),
    ]
    async with notifier_on(tmp_path, hooks, max_attempts=3) as (notifier, db):
        run = await finished_run(db, RunStatus.FAILED)
        records = {n.target: (n, a) for n, a in await deliver(notifier, run)}

    gone, gone_attempts = records["gone"]
    down, down_attempts = records["down"]
    assert gone.status.value == "failed"
    assert [a.status_code for a in gone_attempts] == [400]
    assert down.status.value == "failed"
    assert [a.status_code for a in down_attempts] == [500, 502, 503]
    assert len(receiver.to("/down")) == 3


async def test_an_unreachable_receiver_is_retried_and_its_url_never_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A refused connection is retried; the records name the host, not the path."""
    # Port 9 (discard) on loopback refuses at once.
    hooks = [WebhookTarget(name="nowhere", url=f"http://127.0.0.1:9/{SLACK_TOKEN}")]
    with json_logging():
        async with notifier_on(tmp_path, hooks, max_attempts=2) as (notifier, db):
            run = await finished_run(db, RunStatus.FAILED)
            [(record, attempts)] = await deliver(notifier, run)
    logs = capsys.readouterr().err

    assert record.status.value == "failed"
    assert len(attempts) == 2
    assert all(a.status_code is None and a.error for a in attempts)
    assert "http://127.0.0.1" in (attempts[0].error or "")
    assert SLACK_TOKEN not in logs
    assert all(SLACK_TOKEN not in (a.error or "") for a in attempts)


async def test_a_github_status_is_posted_for_the_runs_commit(
    receiver: Receiver, tmp_path: Path
) -> None:
    """The run's commit gets a status: state, description, link and context.

    The receiver stands in for api.github.com (the API base URL is a
    setting, as for GitHub Enterprise).
    """
    github = GitHubSettings(
        token=GITHUB_TOKEN,
        api_url=f"{receiver.url}/api/v3",
        web_host="github.com",
        context="traceloom/e2e",
    )
    async with notifier_on(tmp_path, [], github=github) as (notifier, db):
        run = await finished_run(
            db, RunStatus.FAILED, failed=2, passed=5, repo="git@github.com:acme/shop"
        )
        [(record, _attempts)] = await deliver(notifier, run)
        other = await finished_run(db, RunStatus.PASSED, repo="https://gitlab.com/a/b")
        skipped = await deliver(notifier, other)
        stored = await db.fetchall("SELECT payload FROM notifications")

    [posted] = receiver.to(f"/api/v3/repos/acme/shop/statuses/{SHA}")
    status = json.loads(posted["body"])
    assert posted["headers"]["Authorization"] == f"Bearer {GITHUB_TOKEN}"
    assert status["state"] == "failure"
    assert status["context"] == "traceloom/e2e"
    assert status["target_url"].endswith(f"/runs/{run.id}")
    assert "5 passed, 2 failed" in status["description"]
    assert record.status.value == "delivered"
    assert skipped == []
    assert all(GITHUB_TOKEN not in row["payload"] for row in stored)


# -- helpers: a notifier on its own database --------------------------------------


@asynccontextmanager
async def notifier_on(
    tmp_path: Path,
    hooks: list[WebhookTarget],
    *,
    max_attempts: int = 4,
    github: GitHubSettings | None = None,
) -> AsyncIterator[tuple[Notifier, Database]]:
    """A started notifier with ``hooks``, on a database of its own."""
    async with Database.open(tmp_path / "notify.sqlite3") as db:
        notifier = Notifier(
            db=db,
            base_url="https://traceloom.example.com",
            webhooks=hooks,
            github=github,
            retry=RetryPolicy(max_attempts=max_attempts, base_delay_s=0.1),
        )
        await notifier.start()
        try:
            yield notifier, db
        finally:
            await notifier.close()


async def finished_run(
    db: Database,
    status: RunStatus,
    *,
    passed: int = 0,
    failed: int = 0,
    repo: str = "https://github.com/acme/shop.git",
) -> Run:
    """A stored finished run with ``passed`` and ``failed`` tests."""
    now = time.time()
    run = Run(
        id=new_id("run_"),
        request=RunRequest(
            test_source=GitSource(git_repo=repo, git_branch="main"),
            test_pattern="tests/**/*.spec.ts",
            name="nightly",
            commit_sha=SHA[:12],
        ),
        status=status,
        created_at=now,
        started_at=now,
        finished_at=now + 5,
        resolved_sha=SHA,
        counts=Counts(total=passed + failed, passed=passed, failed=failed),
    )
    await db.insert_run(run)
    await db.upsert_tests(
        [
            TestResult(
                run_id=run.id,
                test_id=f"t{i}",
                file="tests/cart.spec.ts",
                project="chromium",
                title=f"test {i}",
                status=TestStatus.FAILED if i < failed else TestStatus.PASSED,
                shard_index=0,
                line=i + 1,
            )
            for i in range(passed + failed)
        ]
    )
    return run


async def deliver(notifier: Notifier, run: Run) -> list[Any]:
    """Announce ``run`` and wait until none of its notifications is pending."""
    await notifier.run_finished(
        FinishedRun(run=run, checkout=None, node_modules=None, config_dir=None)
    )
    for _ in range(300):
        found = await notifier.store.for_run(run.id)
        if all(n.status.value != "pending" for n, _a in found):
            return found
        await asyncio.sleep(0.05)
    raise AssertionError("notifications still pending")
