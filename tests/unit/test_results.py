"""A shard's reporter events become per-test results and one shard verdict."""

from __future__ import annotations

import itertools
import json
import random
from typing import Any

import pytest

# Aliased: pytest would try to collect classes whose names start with Test.
from controlplane.domain import Attempt, ShardStatus
from controlplane.domain import TestResult as Result
from controlplane.domain import TestStatus as Status
from controlplane.engine.results import ShardResults, shard_verdict

PREFIX = "run_1/shard-2"
# Playwright joins describe titles with this separator.
SEP = "\N{SINGLE RIGHT-POINTING ANGLE QUOTATION MARK}"
TITLE = f"refunds {SEP} Grüße ✓"


def listed(test_id: str, title: str, retries: int = 1) -> dict[str, Any]:
    """A test as reporter.cjs describes it in the begin event."""
    return {
        "id": test_id,
        "file": "tests/checkout.spec.ts",
        "project": "chromium",
        "title": title,
        "expectedStatus": "passed",
        "retries": retries,
    }


def begin(*tests: dict[str, Any]) -> dict[str, Any]:
    return {"type": "begin", "version": "1.49.0", "workers": 2, "tests": list(tests)}


def started(test_id: str, retry: int = 0, time: int = 1_000) -> dict[str, Any]:
    return {"type": "testBegin", "id": test_id, "retry": retry, "time": time}


def ended(
    test_id: str,
    outcome: str,
    *,
    retry: int = 0,
    status: str = "passed",
    duration_ms: int = 10,
    error: str | None = None,
    attachments: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "type": "testEnd",
        "id": test_id,
        "retry": retry,
        "status": status,
        "durationMs": duration_ms,
        "outcome": outcome,
        "error": error,
        "attachments": attachments or [],
        "time": 2_000,
    }


END = {"type": "end", "status": "failed", "time": 9_000}

# One shard's whole stream: a pass, a failure with a trace and a screenshot,
# a flaky test that passed on retry, a skip, and a test that never ended.
STREAM = [
    begin(
        listed("t-pass", "pays by card"),
        listed("t-fail", TITLE),
        listed("t-flaky", "applies a coupon"),
        listed("t-skip", "ships abroad"),
        listed("t-lost", "prints an invoice"),
    ),
    started("t-pass", time=1_234),
    ended("t-pass", "expected", duration_ms=120),
    started("t-fail", time=1_300),
    ended(
        "t-fail",
        "unexpected",
        status="failed",
        duration_ms=450,
        error="expect(received).toBe(expected)",
        attachments=[
            {
                "name": "trace",
                "contentType": "application/zip",
                "path": "test-results/refunds/trace.zip",
            },
            {
                "name": "screenshot",
                "contentType": "image/png",
                "path": "test-results/refunds/test-failed-1.png",
            },
            {
                "name": "video",
                "contentType": "video/webm",
                "path": "test-results/refunds/video.webm",
            },
        ],
    ),
    started("t-flaky", time=1_400),
    ended("t-flaky", "unexpected", status="failed", duration_ms=300, error="timeout"),
    started("t-flaky", retry=1, time=1_800),
    ended("t-flaky", "flaky", retry=1, status="passed", duration_ms=200),
    ended("t-skip", "skipped", status="skipped", duration_ms=0),
    started("t-lost", time=2_100),
    {"type": "error", "message": "worker process exited unexpectedly"},
    END,
]
RAW = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in STREAM).encode()


def shard() -> ShardResults:
    return ShardResults(run_id="run_1", shard_index=2, artifact_prefix=PREFIX)


def fed(events: list[dict[str, Any]]) -> ShardResults:
    results = shard()
    results.feed("".join(json.dumps(e) + "\n" for e in events).encode())
    return results


def by_id(results: ShardResults) -> dict[str, Result]:
    return {r.test_id: r for r in results.results()}


def _random_cuts(seed: int) -> list[int]:
    rng = random.Random(seed)  # noqa: S311 - reproducible cut points, not secrets
    return sorted(rng.sample(range(1, len(RAW)), rng.randint(1, 60)))


def _chunks(cuts: list[int]) -> list[bytes]:
    edges = [0, *cuts, len(RAW)]
    return [RAW[a:b] for a, b in itertools.pairwise(edges)]


def _mid_line_cuts() -> list[int]:
    """Cut points in the middle of every line, and inside a UTF-8 sequence."""
    cuts = []
    start = 0
    for line in RAW.split(b"\n")[:-1]:
        cuts.append(start + len(line) // 2)
        start += len(line) + 1
    multibyte = RAW.index("ü".encode()) + 1
    return sorted({*cuts, multibyte})


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([RAW], id="whole"),
        pytest.param([RAW[i : i + 1] for i in range(len(RAW))], id="byte-by-byte"),
        pytest.param(_chunks(_mid_line_cuts()), id="mid-line-and-mid-utf8"),
        *(pytest.param(_chunks(_random_cuts(s)), id=f"random-{s}") for s in range(8)),
    ],
)
def test_results_do_not_depend_on_how_the_stream_is_chunked(
    chunks: list[bytes],
) -> None:
    """Feeding the same bytes in any split gives the same results."""
    whole = shard()
    whole.feed(RAW)
    results = shard()

    for chunk in chunks:
        results.feed(chunk)

    assert b"".join(chunks) == RAW
    assert results.results() == whole.results()
    assert results.errors == whole.errors
    assert (results.began, results.ended) == (True, True)
    assert by_id(results)["t-fail"].title == TITLE


def test_statuses_follow_the_last_outcome_of_each_test() -> None:
    """Outcomes map to statuses; a listed test that never ended did not run."""
    results = shard()

    results.feed(RAW)

    statuses = {r.test_id: r.status for r in results.results()}
    assert statuses == {
        "t-pass": Status.PASSED,
        "t-fail": Status.FAILED,
        "t-flaky": Status.FLAKY,
        "t-skip": Status.SKIPPED,
        "t-lost": Status.DID_NOT_RUN,
    }
    counts = results.counts().to_json()
    assert counts == {
        "total": 5,
        "passed": 1,
        "failed": 1,
        "flaky": 1,
        "skipped": 1,
        "didNotRun": 1,
    }


@pytest.mark.parametrize(
    ("outcome", "status"),
    [
        ("expected", Status.PASSED),
        ("unexpected", Status.FAILED),
        ("flaky", Status.FLAKY),
        ("skipped", Status.SKIPPED),
        ("something-new", Status.FAILED),
    ],
)
def test_outcome_maps_to_status(outcome: str, status: Status) -> None:
    """Playwright's outcome names map to ours; an unknown one counts as failed."""
    results = fed([begin(listed("t", "x")), ended("t", outcome)])

    got = by_id(results)["t"].status

    assert got is status


def test_attempts_are_kept_in_order_with_their_details() -> None:
    """Every try of a test is kept, first to last, with when it began."""
    results = shard()

    results.feed(RAW)

    flaky = by_id(results)["t-flaky"]
    assert flaky.attempts == [
        Attempt(
            retry=0, status="failed", duration_ms=300, error="timeout", started_at=1.4
        ),
        Attempt(retry=1, status="passed", duration_ms=200, error=None, started_at=1.8),
    ]
    assert flaky.duration_ms == 500
    assert by_id(results)["t-lost"].attempts == []


def test_trace_and_screenshots_become_prefixed_artifact_keys() -> None:
    """The trace and image attachments are stored under the shard's prefix."""
    results = shard()

    results.feed(RAW)

    failed = by_id(results)["t-fail"]
    assert failed.trace == f"{PREFIX}/test-results/refunds/trace.zip"
    assert failed.screenshots == [f"{PREFIX}/test-results/refunds/test-failed-1.png"]
    passed = by_id(results)["t-pass"]
    assert (passed.trace, passed.screenshots) == (None, [])


def test_result_carries_where_the_test_ran() -> None:
    """Each result names its run, shard, file, project and title."""
    results = shard()

    results.feed(RAW)

    one = by_id(results)["t-pass"]
    assert (one.run_id, one.shard_index) == ("run_1", 2)
    assert (one.file, one.project, one.title) == (
        "tests/checkout.spec.ts",
        "chromium",
        "pays by card",
    )


def test_stream_bookkeeping_records_start_errors_and_end() -> None:
    """begin, the first testBegin time, error messages and end are recorded."""
    results = shard()

    results.feed(RAW)

    assert results.began
    assert results.ended
    assert results.first_test_at_ms == 1_234
    assert results.errors == ["worker process exited unexpectedly"]


def test_partial_last_line_waits_for_its_newline() -> None:
    """A line without its newline yet is not applied until the newline comes."""
    results = fed([begin(listed("t", "x"))])
    line = json.dumps(ended("t", "expected")).encode()

    results.feed(line)
    before = by_id(results)["t"].status
    results.feed(b"\n")
    after = by_id(results)["t"].status

    assert before is Status.DID_NOT_RUN
    assert after is Status.PASSED


def test_end_of_an_unlisted_test_is_ignored() -> None:
    """Only tests listed at begin are results; a stray testEnd adds nothing."""
    results = fed([begin(listed("t", "x")), ended("other", "expected")])

    ids = [r.test_id for r in results.results()]

    assert ids == ["t"]


def test_blank_lines_are_ignored() -> None:
    """Empty or whitespace-only lines in the stream are not events."""
    results = shard()

    results.feed(b"\n  \n" + json.dumps(begin(listed("t", "x"))).encode() + b"\n\n")

    assert results.began
    assert [r.test_id for r in results.results()] == ["t"]


PASS = [begin(listed("a", "a"), listed("b", "b")), ended("a", "expected")]
PASS_ALL = [*PASS, ended("b", "expected"), END]
FAIL = [*PASS, ended("b", "unexpected", status="failed"), END]
FLAKY_AND_SKIP = [*PASS, ended("b", "flaky", retry=1), ended("a", "skipped")]


@pytest.mark.parametrize(
    ("events", "exit_code", "timed_out", "log_tail", "status", "reason_has"),
    [
        pytest.param(
            PASS_ALL, 0, True, "", ShardStatus.TIMED_OUT, "timeout", id="timed-out"
        ),
        pytest.param(
            PASS, None, True, "", ShardStatus.TIMED_OUT, "timeout", id="timed-out-early"
        ),
        pytest.param(
            [],
            1,
            False,
            "Error: Cannot find module '@playwright/test'",
            ShardStatus.ERRORED,
            "Cannot find module",
            id="never-began-log-tail",
        ),
        pytest.param(
            [{"type": "error", "message": "config file is broken"}],
            1,
            False,
            "",
            ShardStatus.ERRORED,
            "config file is broken",
            id="never-began-error-event",
        ),
        pytest.param(
            [],
            None,
            False,
            "",
            ShardStatus.ERRORED,
            "no output",
            id="never-began-silent",
        ),
        pytest.param(
            [begin(), {"type": "error", "message": "No tests found"}],
            1,
            False,
            "",
            ShardStatus.ERRORED,
            "No tests found",
            id="began-with-no-tests-and-an-error",
        ),
        pytest.param(
            [*PASS, END],
            0,
            False,
            "",
            ShardStatus.ERRORED,
            "1 listed tests were never reported",
            id="listed-but-unreported-exit-0",
        ),
        pytest.param(FAIL, 1, False, "", ShardStatus.FAILED, None, id="a-test-failed"),
        pytest.param(
            PASS_ALL,
            1,
            False,
            "globalTeardown threw",
            ShardStatus.ERRORED,
            "Playwright exited 1: globalTeardown threw",
            id="non-zero-exit-without-failures",
        ),
        pytest.param(
            [*PASS_ALL, {"type": "error", "message": "teardown: db unreachable"}],
            1,
            False,
            "",
            ShardStatus.ERRORED,
            "teardown: db unreachable",
            id="non-zero-exit-with-an-error-event",
        ),
        pytest.param(PASS_ALL, 0, False, "", ShardStatus.PASSED, None, id="all-pass"),
        pytest.param(
            FLAKY_AND_SKIP, 0, False, "", ShardStatus.PASSED, None, id="flaky-and-skip"
        ),
    ],
)
def test_shard_verdict(
    events: list[dict[str, Any]],
    exit_code: int | None,
    timed_out: bool,
    log_tail: str,
    status: ShardStatus,
    reason_has: str | None,
) -> None:
    """The shard's status follows from its events, exit code and timeout."""
    results = fed(events)

    got_status, reason = shard_verdict(
        results, exit_code=exit_code, timed_out=timed_out, log_tail=log_tail
    )

    assert got_status is status
    if reason_has is None:
        assert reason is None
    else:
        assert reason is not None
        assert reason_has in reason


def test_shard_never_passes_while_a_listed_test_did_not_run() -> None:
    """Whatever the exit code, a listed test never reported stops a pass."""
    for exit_code in (0, None, 1):
        results = fed([*PASS, END])

        status, _reason = shard_verdict(
            results, exit_code=exit_code, timed_out=False, log_tail=""
        )

        assert status is not ShardStatus.PASSED


@pytest.mark.parametrize(
    ("retries", "outcomes", "settled"),
    [
        pytest.param(0, ["expected"], True, id="passed"),
        pytest.param(0, ["unexpected"], True, id="failed-no-retries"),
        pytest.param(1, ["unexpected"], False, id="failed-retry-to-come"),
        pytest.param(1, ["unexpected", "unexpected"], True, id="failed-retries-used"),
        pytest.param(2, ["unexpected", "flaky"], True, id="flaky-on-retry"),
        pytest.param(2, ["skipped"], True, id="skipped"),
        pytest.param(1, [], False, id="never-ended"),
    ],
)
def test_settled_holds_only_results_no_retry_can_change(
    retries: int, outcomes: list[str], settled: bool
) -> None:
    """A failure is settled only once its retries are used up."""
    events = [begin(listed("t", "x", retries=retries))]
    events += [ended("t", outcome, retry=i) for i, outcome in enumerate(outcomes)]
    results = fed(events)

    ids = [r.test_id for r in results.settled()]

    assert ids == (["t"] if settled else [])


def test_settled_takes_retries_as_zero_when_not_listed() -> None:
    """A begin event without a retries count means no retry will come."""
    test = listed("t", "x")
    del test["retries"]
    results = fed([begin(test), ended("t", "unexpected", status="failed")])

    settled = results.settled()

    assert [(r.test_id, r.status) for r in settled] == [("t", Status.FAILED)]
