"""The run's vocabulary: statuses, sources, counts and the records stored."""

from __future__ import annotations

import enum
import secrets
import time
from typing import Any

import attrs


class RunStatus(enum.StrEnum):
    QUEUED = "queued"
    PROVISIONING = "provisioning"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"

    @property
    def finished(self) -> bool:
        return self in FINISHED_RUN_STATUSES


FINISHED_RUN_STATUSES = frozenset(
    {
        RunStatus.PASSED,
        RunStatus.FAILED,
        RunStatus.ERRORED,
        RunStatus.CANCELLED,
        RunStatus.TIMED_OUT,
    }
)


class ShardStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    TIMED_OUT = "timed_out"
    CANCELLED = "cancelled"
    # The host stopped answering; its unfinished work went to other hosts.
    LOST = "lost"


class TestStatus(enum.StrEnum):
    __test__ = False  # a status, not a pytest test class

    PASSED = "passed"
    FAILED = "failed"
    FLAKY = "flaky"
    SKIPPED = "skipped"
    DID_NOT_RUN = "didNotRun"


class TriggerSource(enum.StrEnum):
    API = "api"
    SCHEDULE = "schedule"
    MANUAL = "manual"


@attrs.frozen(kw_only=True)
class GitSource:
    git_repo: str
    git_branch: str
    type: str = "git"


@attrs.frozen(kw_only=True)
class S3Source:
    bucket: str
    key: str
    type: str = "s3"


TestSource = GitSource | S3Source


@attrs.define(kw_only=True)
class Counts:
    total: int = 0
    passed: int = 0
    failed: int = 0
    flaky: int = 0
    skipped: int = 0
    did_not_run: int = 0

    def add(self, status: TestStatus) -> None:
        self.total += 1
        field = {
            TestStatus.PASSED: "passed",
            TestStatus.FAILED: "failed",
            TestStatus.FLAKY: "flaky",
            TestStatus.SKIPPED: "skipped",
            TestStatus.DID_NOT_RUN: "did_not_run",
        }[status]
        setattr(self, field, getattr(self, field) + 1)

    def to_json(self) -> dict[str, int]:
        return {
            "total": self.total,
            "passed": self.passed,
            "failed": self.failed,
            "flaky": self.flaky,
            "skipped": self.skipped,
            "didNotRun": self.did_not_run,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Counts:
        return cls(
            total=data.get("total", 0),
            passed=data.get("passed", 0),
            failed=data.get("failed", 0),
            flaky=data.get("flaky", 0),
            skipped=data.get("skipped", 0),
            did_not_run=data.get("didNotRun", 0),
        )


@attrs.frozen
class TestRef:
    """One test by where it is declared, as Playwright's ``file:line`` filter."""

    __test__ = False  # a record, not a pytest test class

    file: str
    line: int


@attrs.define(kw_only=True)
class RunRequest:
    """A validated ``POST /api/runs`` body."""

    test_source: TestSource
    test_pattern: str
    server_count: int = 1
    timeout: int = 600
    name: str | None = None
    commit_sha: str | None = None
    trigger_source: TriggerSource = TriggerSource.API
    # Set by a rerun: run only these tests (not part of the public body).
    only: list[TestRef] | None = None
    rerun_of: str | None = None


@attrs.define(kw_only=True)
class Run:
    id: str
    request: RunRequest
    status: RunStatus
    created_at: float
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    first_test_at: float | None = None
    resolved_sha: str | None = None
    counts: Counts = attrs.Factory(Counts)
    spec_files: list[str] = attrs.Factory(list)


@attrs.define(kw_only=True)
class Shard:
    run_id: str
    index: int
    files: list[str]
    status: ShardStatus = ShardStatus.PENDING
    host: str | None = None
    reason: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    counts: Counts = attrs.Factory(Counts)


@attrs.define(kw_only=True)
class Attempt:
    retry: int
    status: str
    duration_ms: int
    error: str | None = None
    # When the attempt began (epoch seconds, the host's clock), if reported.
    started_at: float | None = None


@attrs.define(kw_only=True)
class TestResult:
    __test__ = False  # a record, not a pytest test class

    run_id: str
    test_id: str
    file: str
    project: str
    title: str
    status: TestStatus
    shard_index: int
    line: int = 0
    duration_ms: int = 0
    attempts: list[Attempt] = attrs.Factory(list)
    trace: str | None = None
    screenshots: list[str] = attrs.Factory(list)


def new_id(prefix: str) -> str:
    """A time-ordered, unguessable id: sorting ids sorts by creation."""
    return f"{prefix}{time.time_ns() // 1_000_000:012x}{secrets.token_hex(5)}"
