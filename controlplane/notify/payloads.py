"""What a finished run's notifications say: TraceLoom JSON, Slack, GitHub."""

from __future__ import annotations

import re
from typing import Any

import attrs

from controlplane.api.runs import iso
from controlplane.domain import GitSource, Run, RunStatus, TestResult, TestStatus
from controlplane.logs import redact_text

FAILURE_STATUSES = frozenset({RunStatus.FAILED, RunStatus.ERRORED, RunStatus.TIMED_OUT})
_LISTED_FAILURES = 20
# owner/name from https://github.com/o/r(.git), ssh://git@github.com/o/r,
# git@github.com:o/r.
_GITHUB_REPO = re.compile(
    r"(?:[a-z+]+://(?:[^@/]+@)?|[^@/\s]+@)(?P<host>[^/:]+)[/:]"
    r"(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+?)(?:\.git)?/?\Z"
)


@attrs.frozen(kw_only=True)
class RunLinks:
    api: str
    dashboard: str
    report: str | None
    junit: str


def links(base_url: str, run_id: str, *, report: bool) -> RunLinks:
    base = base_url.rstrip("/")
    return RunLinks(
        api=f"{base}/api/runs/{run_id}",
        dashboard=f"{base}/runs/{run_id}",
        report=f"{base}/runs/{run_id}/report/" if report else None,
        junit=f"{base}/api/runs/{run_id}/junit.xml",
    )


def run_payload(run: Run, tests: list[TestResult], urls: RunLinks) -> dict[str, Any]:
    """The ``run.finished`` event in TraceLoom's own JSON format."""
    source = run.request.test_source
    failed = [
        t for t in tests if t.status in (TestStatus.FAILED, TestStatus.DID_NOT_RUN)
    ]
    duration = (
        round(run.finished_at - run.started_at, 3)
        if run.finished_at and run.started_at
        else None
    )
    return {
        "event": "run.finished",
        "run": {
            "id": run.id,
            "name": run.request.name,
            "status": run.status.value,
            "reason": run.reason,
            "url": urls.api,
            "dashboardUrl": urls.dashboard,
            "reportUrl": urls.report,
            "junitUrl": urls.junit,
            "triggerSource": run.request.trigger_source.value,
            "gitRepo": redact_text(source.git_repo)
            if isinstance(source, GitSource)
            else None,
            "gitBranch": source.git_branch if isinstance(source, GitSource) else None,
            "commitSha": run.resolved_sha or run.request.commit_sha,
            "createdAt": iso(run.created_at),
            "finishedAt": iso(run.finished_at),
            "durationS": duration,
            "counts": run.counts.to_json(),
        },
        "failedTests": [
            {
                "file": t.file,
                "line": t.line,
                "project": t.project,
                "title": t.title,
                "status": t.status.value,
            }
            for t in failed[:_LISTED_FAILURES]
        ],
        "failedTestsOmitted": max(len(failed) - _LISTED_FAILURES, 0),
    }


_SLACK_ICONS = {
    RunStatus.PASSED: ":white_check_mark:",
    RunStatus.FAILED: ":x:",
    RunStatus.ERRORED: ":warning:",
    RunStatus.TIMED_OUT: ":hourglass:",
    RunStatus.CANCELLED: ":no_entry_sign:",
}


def _slack_escape(text: str) -> str:
    """Slack's mrkdwn needs only these three escaped."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(event: dict[str, Any]) -> dict[str, Any]:
    """A Slack incoming-webhook message (``text`` plus Block Kit ``blocks``)."""
    run = event["run"]
    status = RunStatus(run["status"])
    counts = run["counts"]
    label = _slack_escape(run["name"] or run["id"])
    icon = _SLACK_ICONS.get(status, "")
    link = f"<{run['dashboardUrl']}|{label}>"
    headline = f"{icon} TraceLoom run *{link}* {status.value.replace('_', ' ')}"
    summary = (
        f"{counts['passed']} passed, {counts['failed']} failed,"
        f" {counts['flaky']} flaky, {counts['skipped']} skipped"
        f" of {counts['total']}"
        + (f", {counts['didNotRun']} did not run" if counts["didNotRun"] else "")
    )
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": headline}},
        {"type": "section", "text": {"type": "mrkdwn", "text": summary}},
    ]
    if run.get("reason") and status != RunStatus.PASSED:
        blocks.append(
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": _slack_escape(run["reason"])[:2900]},
            }
        )
    failures = event["failedTests"][:5]
    if failures:
        lines = "\n".join(
            f"• `{_slack_escape(t['file'])}:{t['line']}` {_slack_escape(t['title'])}"
            for t in failures
        )
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": lines}})
    context = [f"trigger: {run['triggerSource']}"]
    if run.get("commitSha"):
        context.append(f"commit `{run['commitSha'][:12]}`")
    if run.get("reportUrl"):
        context.append(f"<{run['reportUrl']}|merged report>")
    blocks.append(
        {
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": " · ".join(context)}],
        }
    )
    return {
        "text": f"TraceLoom run {label} {status.value}: {summary}",
        "blocks": blocks,
    }


_GITHUB_STATES = {
    RunStatus.PASSED: "success",
    RunStatus.FAILED: "failure",
    RunStatus.ERRORED: "error",
    RunStatus.TIMED_OUT: "error",
    RunStatus.CANCELLED: "error",
}


def github_status(run: Run, urls: RunLinks, *, context: str) -> dict[str, str]:
    """The body of GitHub's ``POST /repos/{o}/{r}/statuses/{sha}``."""
    counts = run.counts
    description = (
        f"{run.status.value.replace('_', ' ')}: {counts.passed} passed,"
        f" {counts.failed} failed, {counts.flaky} flaky of {counts.total}"
    )
    return {
        "state": _GITHUB_STATES.get(run.status, "error"),
        "target_url": urls.dashboard,
        "description": description[:140],
        "context": context,
    }


def github_repo(git_repo: str, *, host: str) -> str | None:
    """``owner/name`` when ``git_repo`` is a repository on GitHub at ``host``."""
    match = _GITHUB_REPO.match(git_repo)
    if match is None or match["host"].lower() != host.lower():
        return None
    return f"{match['owner']}/{match['repo']}"
