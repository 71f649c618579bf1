"""``POST /api/runs`` bodies: strict validation that names every flawed field."""

from __future__ import annotations

from typing import Any

import pytest

from controlplane.api.models import parse_run_body
from controlplane.domain import GitSource, S3Source, TriggerSource
from controlplane.errors import InvalidRequest

MAX_SERVERS = 4
GIT = {
    "type": "git",
    "gitRepo": "https://example.invalid/suite.git",
    "gitBranch": "main",
}
S3 = {"type": "s3", "bucket": "suites", "key": "team/suite.zip"}
DROP = object()


def body(**changes: Any) -> dict[str, Any]:
    """A good git body with ``changes`` applied; a DROP value removes the field."""
    data: dict[str, Any] = {
        "testSource": dict(GIT),
        "testPattern": "tests/**/*.spec.ts",
    }
    for key, value in changes.items():
        if value is DROP:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def flawed_fields(data: Any) -> set[str]:
    with pytest.raises(InvalidRequest) as caught:
        parse_run_body(data, max_server_count=MAX_SERVERS)
    assert all(caught.value.fields.values()), "every flaw carries a reason"
    return set(caught.value.fields)


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        # The body itself.
        pytest.param([], {"body"}, id="body-list"),
        pytest.param("tests", {"body"}, id="body-string"),
        pytest.param(None, {"body"}, id="body-null"),
        pytest.param(42, {"body"}, id="body-number"),
        # Required fields.
        pytest.param(body(testSource=DROP), {"testSource"}, id="no-testSource"),
        pytest.param(body(testPattern=DROP), {"testPattern"}, id="no-testPattern"),
        pytest.param({}, {"testSource", "testPattern"}, id="empty-object"),
        # testSource.
        pytest.param(body(testSource="git"), {"testSource"}, id="source-string"),
        pytest.param(body(testSource=[GIT]), {"testSource"}, id="source-list"),
        pytest.param(
            body(testSource={**GIT, "type": "ftp"}),
            {"testSource.type"},
            id="source-type-unknown",
        ),
        pytest.param(
            body(testSource={"gitRepo": "r", "gitBranch": "main"}),
            {"testSource.type"},
            id="source-type-missing",
        ),
        pytest.param(
            body(testSource={**GIT, "gitRepo": ""}),
            {"testSource.gitRepo"},
            id="gitRepo-empty",
        ),
        pytest.param(
            body(testSource={**GIT, "gitRepo": "   "}),
            {"testSource.gitRepo"},
            id="gitRepo-blank",
        ),
        pytest.param(
            body(testSource={**GIT, "gitRepo": " https://example.invalid/s.git"}),
            {"testSource.gitRepo"},
            id="gitRepo-padded",
        ),
        pytest.param(
            body(testSource={**GIT, "gitRepo": "--upload-pack=touch /tmp/x"}),
            {"testSource.gitRepo"},
            id="gitRepo-option",
        ),
        pytest.param(
            body(testSource={**GIT, "gitRepo": "ssh://git:pw@example.invalid/s"}),
            {"testSource.gitRepo"},
            id="gitRepo-ssh-password",
        ),
        pytest.param(
            body(testSource={**GIT, "gitRepo": "/srv/\ud800"}),
            {"testSource.gitRepo"},
            id="gitRepo-surrogate",
        ),
        pytest.param(
            body(testSource={**GIT, "gitBranch": "ma\u0000in"}),
            {"testSource.gitBranch"},
            id="gitBranch-nul",
        ),
        pytest.param(
            body(testSource={**GIT, "gitBranch": "-f"}),
            {"testSource.gitBranch"},
            id="gitBranch-option",
        ),
        pytest.param(
            body(testSource={**GIT, "gitBranch": "a..b"}),
            {"testSource.gitBranch"},
            id="gitBranch-dots",
        ),
        pytest.param(
            body(testSource={**GIT, "gitBranch": "feature x"}),
            {"testSource.gitBranch"},
            id="gitBranch-space",
        ),
        pytest.param(
            body(testSource={**GIT, "gitBranch": "topic.lock"}),
            {"testSource.gitBranch"},
            id="gitBranch-lock",
        ),
        pytest.param(body(name="x\ud800y"), {"name"}, id="name-surrogate"),
        pytest.param(
            body(testSource={"type": "git", "gitRepo": "r"}),
            {"testSource.gitBranch"},
            id="gitBranch-missing",
        ),
        pytest.param(
            body(testSource={**GIT, "gitBranch": "b" * 256}),
            {"testSource.gitBranch"},
            id="gitBranch-too-long",
        ),
        pytest.param(
            body(testSource={**GIT, "token": "ghp_x"}),
            {"testSource.token"},
            id="source-unknown-field",
        ),
        pytest.param(
            body(testSource={"type": "s3", "bucket": "suites"}),
            {"testSource.key"},
            id="s3-key-missing",
        ),
        # testPattern.
        pytest.param(body(testPattern=""), {"testPattern"}, id="pattern-empty"),
        pytest.param(body(testPattern=5), {"testPattern"}, id="pattern-number"),
        pytest.param(
            body(testPattern="/tests/*.ts"), {"testPattern"}, id="pattern-absolute"
        ),
        # serverCount.
        pytest.param(body(serverCount=0), {"serverCount"}, id="servers-0"),
        pytest.param(body(serverCount=-1), {"serverCount"}, id="servers-negative"),
        pytest.param(body(serverCount=2.5), {"serverCount"}, id="servers-fraction"),
        pytest.param(body(serverCount="2"), {"serverCount"}, id="servers-string"),
        pytest.param(body(serverCount=True), {"serverCount"}, id="servers-true"),
        pytest.param(body(serverCount=None), {"serverCount"}, id="servers-null"),
        pytest.param(
            body(serverCount=MAX_SERVERS + 1), {"serverCount"}, id="servers-over-max"
        ),
        # timeout.
        pytest.param(body(timeout=0), {"timeout"}, id="timeout-0"),
        pytest.param(body(timeout=3601), {"timeout"}, id="timeout-3601"),
        pytest.param(body(timeout="600"), {"timeout"}, id="timeout-string"),
        pytest.param(body(timeout=1.5), {"timeout"}, id="timeout-fraction"),
        # commitSha.
        pytest.param(body(commitSha="abc12"), {"commitSha"}, id="sha-short"),
        pytest.param(body(commitSha="zzzzzzz"), {"commitSha"}, id="sha-non-hex"),
        pytest.param(body(commitSha="a" * 41), {"commitSha"}, id="sha-41-chars"),
        pytest.param(body(commitSha=""), {"commitSha"}, id="sha-empty"),
        pytest.param(body(commitSha=1234567), {"commitSha"}, id="sha-number"),
        # triggerSource, name and unknown fields.
        pytest.param(body(triggerSource="cron"), {"triggerSource"}, id="trigger-cron"),
        pytest.param(body(triggerSource="API"), {"triggerSource"}, id="trigger-case"),
        pytest.param(body(triggerSource=1), {"triggerSource"}, id="trigger-number"),
        pytest.param(body(name=5), {"name"}, id="name-number"),
        pytest.param(body(name="n" * 201), {"name"}, id="name-too-long"),
        pytest.param(body(servers=2), {"servers"}, id="unknown-field"),
    ],
)
def test_bad_body_is_refused_naming_the_flawed_fields(
    data: Any, fields: set[str]
) -> None:
    """Each flaw is reported under the JSON path of the field at fault."""
    flawed = flawed_fields(data)

    assert flawed == fields


def test_several_type_flaws_are_reported_at_once() -> None:
    """Wrong types and unknown fields in one body are all named together."""
    data = body(serverCount="2", timeout=2.5, triggerSource="cron", servers=2)

    flawed = flawed_fields(data)

    assert flawed == {"serverCount", "timeout", "triggerSource", "servers"}


def test_several_range_flaws_are_reported_at_once() -> None:
    """Out-of-range values, nested ones included, are all named together."""
    data = body(
        testSource={**GIT, "gitRepo": ""},
        testPattern="",
        serverCount=0,
        timeout=3601,
        commitSha="xyz",
    )

    flawed = flawed_fields(data)

    assert flawed == {
        "testSource.gitRepo",
        "testPattern",
        "serverCount",
        "timeout",
        "commitSha",
    }


@pytest.mark.parametrize(
    ("data", "fields"),
    [
        pytest.param(
            body(testPattern=DROP, serverCount="2"),
            {"testPattern", "serverCount"},
            id="missing-and-wrong-type",
        ),
        pytest.param(
            body(serverCount="2", timeout=0),
            {"serverCount", "timeout"},
            id="wrong-type-and-out-of-range",
        ),
        pytest.param(
            body(serverCount=MAX_SERVERS + 1, timeout=0),
            {"serverCount", "timeout"},
            id="over-max-and-out-of-range",
        ),
    ],
)
def test_flaws_of_different_kinds_are_reported_at_once(
    data: dict[str, Any], fields: set[str]
) -> None:
    """A body with flaws of different kinds names every one in one answer."""
    flawed = flawed_fields(data)

    assert flawed == fields


def test_minimal_git_body_gets_the_defaults() -> None:
    """serverCount 1, timeout 600 s and triggerSource api when not given."""
    request = parse_run_body(body(), max_server_count=MAX_SERVERS)

    assert request.test_source == GitSource(
        git_repo="https://example.invalid/suite.git", git_branch="main"
    )
    assert request.test_pattern == "tests/**/*.spec.ts"
    assert request.server_count == 1
    assert request.timeout == 600
    assert request.trigger_source is TriggerSource.API
    assert request.name is None
    assert request.commit_sha is None


def test_s3_body_gives_an_s3_source() -> None:
    """The type tag selects the source kind."""
    request = parse_run_body(body(testSource=dict(S3)), max_server_count=MAX_SERVERS)

    assert request.test_source == S3Source(bucket="suites", key="team/suite.zip")


def test_commit_sha_is_lower_cased() -> None:
    """A commit SHA in capitals is stored in git's lower-case spelling."""
    sha = "ABCDEF0123456789ABCDEF0123456789ABCDEF01"

    request = parse_run_body(body(commitSha=sha), max_server_count=MAX_SERVERS)

    assert request.commit_sha == sha.lower()


def test_every_field_given_is_kept() -> None:
    """Explicit values replace the defaults, converted to the domain types."""
    data = body(
        serverCount=MAX_SERVERS,
        timeout=3600,
        name="nightly",
        commitSha="abc1234",
        triggerSource="schedule",
    )

    request = parse_run_body(data, max_server_count=MAX_SERVERS)

    assert request.server_count == MAX_SERVERS
    assert request.timeout == 3600
    assert request.name == "nightly"
    assert request.commit_sha == "abc1234"
    assert request.trigger_source is TriggerSource.SCHEDULE


@pytest.mark.parametrize(
    ("changes", "attribute", "value"),
    [
        pytest.param({"serverCount": 1}, "server_count", 1, id="servers-min"),
        pytest.param({"serverCount": 3.0}, "server_count", 3, id="servers-whole-float"),
        pytest.param({"timeout": 1}, "timeout", 1, id="timeout-min"),
        pytest.param({"timeout": 3600}, "timeout", 3600, id="timeout-max"),
        pytest.param({"commitSha": "abcdef1"}, "commit_sha", "abcdef1", id="sha-7"),
        pytest.param({"name": None}, "name", None, id="name-null"),
        pytest.param(
            {"triggerSource": "manual"}, "trigger_source", "manual", id="manual"
        ),
    ],
)
def test_boundary_values_are_accepted(
    changes: dict[str, Any], attribute: str, value: object
) -> None:
    """Values at the edge of each allowed range are accepted unchanged."""
    request = parse_run_body(body(**changes), max_server_count=MAX_SERVERS)

    assert getattr(request, attribute) == value


@pytest.mark.parametrize(
    "branch",
    ["main", "release/1.2", "feature/JIRA-12_x", "dependabot/npm_and_yarn/pw-1.49.0"],
)
def test_usual_branch_names_are_accepted(branch: str) -> None:
    """Names git itself accepts pass the branch check."""
    parsed = parse_run_body(
        body(testSource={**GIT, "gitBranch": branch}), max_server_count=MAX_SERVERS
    )

    assert isinstance(parsed.test_source, GitSource)
    assert parsed.test_source.git_branch == branch
