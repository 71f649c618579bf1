"""Geometry of the run timeline and the duration trend."""

from __future__ import annotations

from controlplane.dashboard.charts import (
    PLOT_X0,
    PLOT_X1,
    duration_trend,
    run_timeline,
    span_label,
)
from controlplane.domain import (
    Attempt,
    GitSource,
    Run,
    RunRequest,
    RunStatus,
    Shard,
    ShardStatus,
    TestResult,
    TestStatus,
)

T0 = 1_700_000_000.0


def a_run() -> Run:
    return Run(
        id="run_x",
        request=RunRequest(
            test_source=GitSource(git_repo="r", git_branch="main"), test_pattern="*"
        ),
        status=RunStatus.FAILED,
        created_at=T0,
        started_at=T0,
        finished_at=T0 + 100,
    )


def a_test(shard: int, *attempts: tuple[float, int, str]) -> TestResult:
    return TestResult(
        run_id="run_x",
        test_id=f"t{shard}{attempts[0][0]}",
        file="a.spec.ts",
        project="chromium",
        title="t",
        status=TestStatus.PASSED,
        shard_index=shard,
        attempts=[
            Attempt(retry=i, status=s, duration_ms=ms, started_at=T0 + start)
            for i, (start, ms, s) in enumerate(attempts)
        ],
    )


def shard(index: int, start: float, end: float) -> Shard:
    return Shard(
        run_id="run_x",
        index=index,
        files=[],
        status=ShardStatus.PASSED,
        host=f"run_x-h{index}",
        started_at=T0 + start,
        finished_at=T0 + end,
    )


def test_a_row_per_shard_after_the_preparation() -> None:
    """Preparing gets its own row; each shard's bar spans its own time."""
    timeline = run_timeline(
        a_run(), [shard(0, 10, 100), shard(1, 10, 50)], [], now=T0 + 200
    )

    assert [r.label for r in timeline.rows] == ["prepare", "shard 0", "shard 1"]
    assert [r.sublabel for r in timeline.rows[1:]] == ["host h0", "host h1"]
    bars = {b.css: b for b in timeline.bars if b.css.startswith("shard")}
    full = PLOT_X1 - PLOT_X0
    assert len([b for b in timeline.bars if b.css.startswith("shard")]) == 2
    assert bars["shard passed"].x == PLOT_X0 + full * 0.1


def test_overlapping_attempts_get_their_own_lanes() -> None:
    """Two workers' tests at the same time are drawn one above the other."""
    tests = [a_test(0, (20, 10_000, "passed")), a_test(0, (25, 10_000, "failed"))]

    timeline = run_timeline(a_run(), [shard(0, 10, 100)], tests, now=T0 + 200)

    attempts = [b for b in timeline.bars if b.css.startswith("attempt")]
    assert {b.css for b in attempts} == {"attempt passed", "attempt failed"}
    assert attempts[0].y != attempts[1].y
    assert attempts[0].x < attempts[1].x


def test_retries_are_separate_attempts_titled_as_retries() -> None:
    """A flaky test shows its failed try and its passing retry."""
    tests = [a_test(0, (20, 1_000, "failed"), (22, 1_000, "passed"))]

    timeline = run_timeline(a_run(), [shard(0, 10, 100)], tests, now=T0 + 200)

    titles = [b.title for b in timeline.bars if b.css.startswith("attempt")]
    assert titles == ["t: failed, 1.0s", "t (retry 1): passed, 1.0s"]


def test_nothing_to_draw_before_the_run_starts() -> None:
    """A queued run has an empty timeline."""
    run = a_run()
    run.started_at = None

    assert run_timeline(run, [], [], now=T0).empty


def test_ticks_and_labels_are_round() -> None:
    """At most nine ticks on round steps, labelled in s, m and h."""
    timeline = run_timeline(a_run(), [shard(0, 0, 100)], [], now=T0 + 200)

    assert [t.label for t in timeline.ticks] == [
        "0s", "15s", "30s", "45s", "1m", "1m15s", "1m30s",
    ]  # fmt: skip
    assert span_label(3720) == "1h2m"


def test_the_trend_puts_the_slowest_run_at_the_top() -> None:
    """Points run left to right, oldest first; the peak touches the top."""
    trend = duration_trend(
        [("run_1", T0, 1000, "passed"), ("run_2", T0 + 1, 4000, "flaky")]
    )

    first, second = trend.points
    assert first.x < second.x
    assert second.y == trend.y1
    assert first.y > second.y
    assert second.href == "/runs/run_2"
