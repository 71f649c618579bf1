"""Announcing finished runs: queued in the database, delivered with retries.

As a run listener, the notifier queues one notification per target when a
run ends: each configured webhook (all runs, or failures only) and, with a
GitHub token, a commit status for the commit the run tested. A worker task
delivers what is due, records every attempt (time, HTTP status or error,
duration) with the run, and retries failures with exponential backoff: a
connection error, a timeout, a 5xx, 408 or 429 is tried again; any other
4xx is final. Delivery is at least once (a control plane that dies mid-send
sends again after its restart); receivers dedupe on ``X-TraceLoom-Delivery``.

Secrets stay out of records and logs: the records name the target, never
its URL (a Slack webhook URL is a secret) and never a token.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import aiohttp
import attrs

from controlplane.domain import GitSource, Run
from controlplane.engine.runs import FinishedRun
from controlplane.logs import get_logger
from controlplane.notify import payloads, signing
from controlplane.notify.config import WebhookFormat, WebhookTarget
from controlplane.notify.store import (
    AttemptRecord,
    DeliveryStatus,
    Notification,
    NotificationStore,
    TargetKind,
)
from controlplane.reports.store import ReportStore
from controlplane.storage.db import Database

log = get_logger(__name__)

USER_AGENT = "TraceLoom-Notifier/1"
GITHUB_TARGET = "github"
_RETRIED_STATUSES = frozenset({408, 429})
_LEASE_S = 120.0
_IDLE_WAKE_S = 30.0


@attrs.frozen(kw_only=True)
class GitHubSettings:
    token: str = attrs.field(repr=False)
    api_url: str
    web_host: str
    context: str


@attrs.frozen(kw_only=True)
class RetryPolicy:
    max_attempts: int = 6
    base_delay_s: float = 5.0
    max_delay_s: float = 300.0
    timeout_s: float = 10.0

    def delay_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (from 1)."""
        return float(min(self.base_delay_s * 2 ** (attempt - 1), self.max_delay_s))


@attrs.frozen
class _Outcome:
    status_code: int | None
    error: str | None
    retry: bool

    @property
    def delivered(self) -> bool:
        return self.error is None


class Notifier:
    """A run listener that queues notifications, and their delivery worker."""

    def __init__(
        self,
        *,
        db: Database,
        base_url: str,
        webhooks: list[WebhookTarget],
        github: GitHubSettings | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.db = db
        self.store = NotificationStore(db)
        self.base_url = base_url
        self.webhooks = {w.name: w for w in webhooks}
        self.github = github
        self.retry = retry or RetryPolicy()
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- lifecycle --------------------------------------------------------

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=self.retry.timeout_s),
            headers={"User-Agent": USER_AGENT},
        )
        self._worker = asyncio.create_task(self._work(), name="notifier")

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        if self._session is not None:
            await self._session.close()

    # -- queueing -----------------------------------------------------------

    async def run_finished(self, finished: FinishedRun) -> None:
        run = finished.run
        report = await ReportStore(self.db).get(run.id)
        urls = payloads.links(
            self.base_url, run.id, report=report is not None and report.viewable
        )
        event = payloads.run_payload(run, await self.db.tests(run.id), urls)
        failure = run.status in payloads.FAILURE_STATUSES
        for target in self.webhooks.values():
            if target.only_failures and not failure:
                continue
            kind = (
                TargetKind.SLACK
                if target.format == WebhookFormat.SLACK
                else TargetKind.WEBHOOK
            )
            await self.store.add(run.id, target.name, kind, event)
        status = self._github_status(run, urls)
        if status is not None:
            await self.store.add(run.id, GITHUB_TARGET, TargetKind.GITHUB, status)
        self._wake.set()

    # XXX: a status is posted when the run ends only; a "pending" status when
    # it starts needs a run-started hook in the engine (listeners hear of ends).
    def _github_status(
        self, run: Run, urls: payloads.RunLinks
    ) -> dict[str, Any] | None:
        if self.github is None or not isinstance(run.request.test_source, GitSource):
            return None
        sha = run.resolved_sha
        repo = payloads.github_repo(
            run.request.test_source.git_repo, host=self.github.web_host
        )
        if sha is None or repo is None or run.request.commit_sha is None:
            return None
        body = payloads.github_status(run, urls, context=self.github.context)
        return {"repo": repo, "sha": sha, "body": body}

    # -- delivering -----------------------------------------------------------

    async def _work(self) -> None:
        while True:
            try:
                await self.deliver_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("notify.worker_failed")
            next_at = await self._next_due_at()
            wait_s = _IDLE_WAKE_S if next_at is None else next_at - time.time()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._wake.wait(), max(min(wait_s, _IDLE_WAKE_S), 0.05)
                )

    async def _next_due_at(self) -> float | None:
        try:
            return await self.store.next_due_at()
        except Exception:
            log.exception("notify.worker_failed")
            return None

    async def deliver_due(self) -> int:
        """Send every notification that is due now; how many were tried."""
        tried = 0
        for item in await self.store.due(time.time()):
            if not await self.store.lease(item, time.time() + _LEASE_S):
                continue
            await self._attempt(item)
            tried += 1
        return tried

    async def _attempt(self, item: Notification) -> None:
        number = item.attempts + 1
        started = time.monotonic()
        at = time.time()
        outcome = await self._send(item)
        attempt = AttemptRecord(
            number=number,
            at=at,
            status_code=outcome.status_code,
            error=outcome.error,
            duration_ms=round((time.monotonic() - started) * 1000),
        )
        if outcome.delivered:
            status, next_at = DeliveryStatus.DELIVERED, None
        elif outcome.retry and number < self.retry.max_attempts:
            status = DeliveryStatus.PENDING
            next_at = time.time() + self.retry.delay_after(number)
        else:
            status, next_at = DeliveryStatus.FAILED, None
        await self.store.record_attempt(
            item, attempt, status=status, next_attempt_at=next_at
        )
        log.info(
            "notification.attempted",
            run_id=item.run_id,
            target=item.target,
            attempt=number,
            status=status.value,
            http_status=outcome.status_code,
            error=outcome.error,
            duration_ms=attempt.duration_ms,
        )

    async def _send(self, item: Notification) -> _Outcome:
        if item.kind == TargetKind.GITHUB:
            if self.github is None:
                return _Outcome(None, "no GitHub token is configured any more", False)
            return await self._post_github(item)
        target = self.webhooks.get(item.target)
        if target is None:
            return _Outcome(None, "this webhook is no longer configured", False)
        payload = (
            payloads.slack_payload(item.payload)
            if target.format == WebhookFormat.SLACK
            else item.payload
        )
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {
            "Content-Type": "application/json",
            "X-TraceLoom-Event": str(item.payload.get("event", "run.finished")),
            "X-TraceLoom-Delivery": item.id,
        }
        if target.secret is not None:
            timestamp = int(time.time())
            headers[signing.TIMESTAMP_HEADER] = str(timestamp)
            headers[signing.SIGNATURE_HEADER] = signing.signature(
                target.secret, timestamp, body
            )
        return await self._post(target.url, body, headers, shown=target.shown_url)

    async def _post_github(self, item: Notification) -> _Outcome:
        assert self.github is not None
        url = (
            f"{self.github.api_url.rstrip('/')}/repos/{item.payload['repo']}"
            f"/statuses/{item.payload['sha']}"
        )
        headers = {
            "Accept": "application/vnd.github+json",
            "Authorization": f"Bearer {self.github.token}",
            "Content-Type": "application/json",
            "X-GitHub-Api-Version": "2022-11-28",
        }
        body = json.dumps(item.payload["body"]).encode()
        return await self._post(url, body, headers, shown=self.github.api_url)

    async def _post(
        self, url: str, body: bytes, headers: dict[str, str], *, shown: str
    ) -> _Outcome:
        assert self._session is not None, "start() opens the session"
        try:
            async with self._session.post(
                url, data=body, headers=headers, allow_redirects=False
            ) as response:
                await response.read()
                code = response.status
        except TimeoutError:
            return _Outcome(None, f"no answer from {shown} in time", True)
        except aiohttp.ClientError as exc:
            # The exception's text may hold the URL: name its kind and host.
            return _Outcome(None, f"{type(exc).__name__} talking to {shown}", True)
        if 200 <= code < 300:
            return _Outcome(code, None, False)
        retry = code >= 500 or code in _RETRIED_STATUSES
        return _Outcome(code, f"{shown} answered {code}", retry)
