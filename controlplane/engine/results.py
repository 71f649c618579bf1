"""Turning a shard's reporter events into per-test results and a verdict."""

from __future__ import annotations

import json
from typing import Any

import attrs

from controlplane.domain import Attempt, Counts, ShardStatus, TestResult, TestStatus
from controlplane.logs import redact_text

_OUTCOMES = {
    "expected": TestStatus.PASSED,
    "unexpected": TestStatus.FAILED,
    "flaky": TestStatus.FLAKY,
    "skipped": TestStatus.SKIPPED,
}


@attrs.define
class _TestState:
    id: str
    file: str
    project: str
    title: str
    line: int = 0
    retries: int = 0
    outcome: str | None = None
    attempts: list[Attempt] = attrs.Factory(list)
    attachments: list[dict[str, str]] = attrs.Factory(list)
    # Start of each attempt (epoch ms), by retry number.
    began_ms: dict[int, int] = attrs.Factory(dict)


@attrs.define
class ShardResults:
    """Everything a shard reported so far, from its JSON-lines event stream."""

    run_id: str
    shard_index: int
    artifact_prefix: str
    began: bool = False
    ended: bool = False
    errors: list[str] = attrs.Factory(list)
    tests: dict[str, _TestState] = attrs.Factory(dict)
    first_test_at_ms: int | None = None
    # When the harness started Playwright (the host's clock), from its state.
    started_ms: int | None = None
    workers: int = 1
    # The config's projects, as the reporter describes them (see reporter.cjs).
    projects: list[dict[str, Any]] = attrs.Factory(list)
    _partial: bytes = b""

    def feed(self, chunk: bytes) -> None:
        """Take the next raw bytes of the stream; a partial line waits."""
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for line in lines:
            if line.strip():
                self._apply(json.loads(line))

    def _apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        if kind == "begin":
            self.began = True
            self.workers = max(int(event.get("workers") or 1), 1)
            self.projects = list(event.get("projects") or [])
            for t in event["tests"]:
                self.tests[t["id"]] = _TestState(
                    id=t["id"],
                    file=t["file"],
                    project=t["project"],
                    title=t["title"],
                    line=int(t.get("line", 0)),
                    retries=int(t.get("retries", 0)),
                )
        elif kind == "testBegin":
            if self.first_test_at_ms is None:
                self.first_test_at_ms = int(event["time"])
            if event.get("id") in self.tests:
                retry = int(event.get("retry", 0))
                self.tests[event["id"]].began_ms[retry] = int(event["time"])
        elif kind == "testEnd" and event["id"] in self.tests:
            state = self.tests[event["id"]]
            state.outcome = event["outcome"]
            began_ms = state.began_ms.get(int(event["retry"]))
            state.attempts.append(
                Attempt(
                    retry=int(event["retry"]),
                    status=str(event["status"]),
                    duration_ms=int(event["durationMs"]),
                    error=_redacted(event.get("error")),
                    started_at=None if began_ms is None else began_ms / 1000,
                )
            )
            state.attachments.extend(event.get("attachments", []))
        elif kind == "error":
            self.errors.append(redact_text(str(event.get("message", ""))))
        elif kind == "end":
            self.ended = True

    def settled(self) -> list[TestResult]:
        """Results that cannot change any more: no retry is still to come."""
        return [
            self._result(state)
            for state in self.tests.values()
            if state.outcome is not None
            and (state.outcome != "unexpected" or len(state.attempts) > state.retries)
        ]

    def results(self) -> list[TestResult]:
        """One result per listed test; tests that never ended did not run."""
        return [self._result(state) for state in self.tests.values()]

    def _result(self, state: _TestState) -> TestResult:
        status = (
            _OUTCOMES.get(state.outcome, TestStatus.FAILED)
            if state.outcome is not None
            else TestStatus.DID_NOT_RUN
        )
        trace = None
        screenshots = []
        for item in state.attachments:
            key = f"{self.artifact_prefix}/{item['path']}"
            if item.get("name") == "trace":
                trace = key
            elif str(item.get("contentType", "")).startswith("image/"):
                screenshots.append(key)
        return TestResult(
            run_id=self.run_id,
            test_id=state.id,
            file=state.file,
            line=state.line,
            project=state.project,
            title=state.title,
            status=status,
            shard_index=self.shard_index,
            duration_ms=sum(a.duration_ms for a in state.attempts),
            attempts=list(state.attempts),
            trace=trace,
            screenshots=screenshots,
        )

    @property
    def start_cost_s(self) -> float | None:
        """Seconds from starting Playwright to its first test, if both known."""
        if self.started_ms is None or self.first_test_at_ms is None:
            return None
        return max(self.first_test_at_ms - self.started_ms, 0) / 1000

    def unsettled_by_file(self) -> dict[str, list[int]] | None:
        """Lines of listed tests that have no final result, by file.

        None when Playwright never listed its tests (nothing is known).
        """
        if not self.began:
            return None
        settled = {r.test_id for r in self.settled()}
        lines: dict[str, list[int]] = {}
        for state in self.tests.values():
            if state.id not in settled:
                lines.setdefault(state.file, [])
                if state.line not in lines[state.file]:
                    lines[state.file].append(state.line)
        return lines

    def counts(self) -> Counts:
        counts = Counts()
        for result in self.results():
            counts.add(result.status)
        return counts


def _redacted(text: object) -> str | None:
    """A test's error as stored: secrets of runs in flight are redacted."""
    return None if text is None else redact_text(str(text))


def shard_verdict(
    results: ShardResults, *, exit_code: int | None, timed_out: bool, log_tail: str
) -> tuple[ShardStatus, str | None]:
    """The shard's status and, when it is not a plain pass or fail, why."""
    counts = results.counts()
    if timed_out and results.began and not counts.did_not_run:
        return ShardStatus.TIMED_OUT, (
            "Playwright reported every test but did not exit (hung);"
            " stopped at the timeout"
        )
    if timed_out:
        return ShardStatus.TIMED_OUT, "shard ran past its timeout"
    if not results.began:
        detail = "; ".join(results.errors) or log_tail or "no output"
        return ShardStatus.ERRORED, f"Playwright did not start: {detail}"
    if results.errors and counts.total == 0:
        return ShardStatus.ERRORED, "; ".join(results.errors)
    if counts.did_not_run:
        return (
            ShardStatus.ERRORED,
            f"{counts.did_not_run} listed tests were never reported"
            f" (Playwright exited {exit_code})",
        )
    if counts.failed or exit_code not in (0, None):
        reason = "; ".join(results.errors) if results.errors else None
        if not counts.failed:
            return ShardStatus.ERRORED, reason or (
                f"Playwright exited {exit_code}: {log_tail}".strip(": ")
            )
        return ShardStatus.FAILED, reason
    return ShardStatus.PASSED, None
