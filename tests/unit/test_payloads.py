"""What notifications say about a run, and which GitHub repository it is."""

from __future__ import annotations

import pytest

from controlplane.domain import Counts, GitSource, Run, RunRequest, RunStatus
from controlplane.notify.payloads import (
    github_repo,
    github_status,
    links,
    run_payload,
    slack_payload,
)


def run(status: RunStatus, **counts: int) -> Run:
    return Run(
        id="run_abc",
        request=RunRequest(
            test_source=GitSource(
                git_repo="https://github.com/acme/shop.git", git_branch="main"
            ),
            test_pattern="tests/**/*.spec.ts",
            name="<nightly> & co",
        ),
        status=status,
        created_at=1_700_000_000,
        started_at=1_700_000_000,
        finished_at=1_700_000_065,
        resolved_sha="f" * 40,
        counts=Counts(**counts),
    )


@pytest.mark.parametrize(
    ("url", "slug"),
    [
        ("https://github.com/acme/shop.git", "acme/shop"),
        ("https://github.com/acme/shop", "acme/shop"),
        ("git@github.com:acme/shop.git", "acme/shop"),
        ("ssh://git@github.com/acme/shop.git", "acme/shop"),
        ("https://GitHub.com/Acme/Shop.js.git", "Acme/Shop.js"),
        ("https://gitlab.com/acme/shop.git", None),
        ("https://github.com/acme", None),
        ("/srv/git/shop.git", None),
    ],
)
def test_github_repositories_are_recognised_by_host(url: str, slug: str | None) -> None:
    """Only URLs on the configured GitHub host name a repository."""
    assert github_repo(url, host="github.com") == slug


def test_the_json_payload_has_status_counts_and_urls() -> None:
    """The event names the run, its verdict, its counts and where to look."""
    urls = links("https://tl.example.com/", "run_abc", report=True)

    event = run_payload(run(RunStatus.FAILED, total=3, passed=2, failed=1), [], urls)

    assert event["event"] == "run.finished"
    assert event["run"]["status"] == "failed"
    assert event["run"]["counts"]["failed"] == 1
    assert event["run"]["url"] == "https://tl.example.com/api/runs/run_abc"
    assert event["run"]["reportUrl"] == "https://tl.example.com/runs/run_abc/report/"
    assert event["run"]["durationS"] == 65


def test_slack_text_is_escaped_for_mrkdwn() -> None:
    """A run name with <, > and & cannot break Slack's link syntax."""
    urls = links("https://tl.example.com", "run_abc", report=False)
    event = run_payload(run(RunStatus.PASSED, total=1, passed=1), [], urls)

    message = slack_payload(event)

    headline = message["blocks"][0]["text"]["text"]
    assert "&lt;nightly&gt; &amp; co" in headline
    assert "<https://tl.example.com/runs/run_abc|" in headline
    assert message["text"].startswith("TraceLoom run")


@pytest.mark.parametrize(
    ("status", "state"),
    [
        (RunStatus.PASSED, "success"),
        (RunStatus.FAILED, "failure"),
        (RunStatus.ERRORED, "error"),
        (RunStatus.TIMED_OUT, "error"),
        (RunStatus.CANCELLED, "error"),
    ],
)
def test_github_states_follow_the_verdict(status: RunStatus, state: str) -> None:
    """Each finished status maps to one of GitHub's commit states."""
    urls = links("https://tl.example.com", "run_abc", report=False)

    body = github_status(run(status), urls, context="traceloom")

    assert body["state"] == state
    assert len(body["description"]) <= 140
