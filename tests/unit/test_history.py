"""What earlier runs teach the planner: suite keys, estimates, learning."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.domain import Attempt, TestResult, TestStatus
from controlplane.engine import history
from controlplane.storage.db import Database, HistoryStore


@pytest.mark.parametrize(
    ("first", "second", "same"),
    [
        ("https://git.example/r.git", "https://git.example/r.git", True),
        ("https://user:tok@git.example/r.git", "https://git.example/r.git", True),
        ("https://git.example/r.git/", "https://git.example/r.git", True),
        ("https://git.example/r.git", "https://git.example/other.git", False),
        ("/srv/repos/a", "/srv/repos/a", True),
        ("/srv/repos/a", "/srv/repos/b", False),
    ],
)
def test_suite_key_ignores_credentials_not_the_repository(
    first: str, second: str, same: bool
) -> None:
    """A token in the URL does not make a new suite; another repo does."""
    assert (
        history.suite_key(first, "t/*.ts") == history.suite_key(second, "t/*.ts")
    ) is same


def test_suite_key_depends_on_the_pattern() -> None:
    """Repository plus pattern is the suite."""
    assert history.suite_key("/r", "a/*.ts") != history.suite_key("/r", "b/*.ts")


def test_known_files_keep_their_cost_and_new_ones_scale_by_size() -> None:
    """A file never seen costs what known files cost per byte."""
    known = {"a.ts": (10.0, 1000), "b.ts": (2.0, 200)}

    estimates = history.estimate_costs({"a.ts": 1000, "c.ts": 500}, known)

    assert estimates["a.ts"] == history.Estimate(10.0, True)
    assert estimates["c.ts"].known is False
    assert estimates["c.ts"].cost_s == pytest.approx(5.0)


def test_without_history_cost_comes_from_size_with_a_floor() -> None:
    """No history at all: bigger files are guessed costlier, never zero."""
    estimates = history.estimate_costs({"big.ts": 8192, "empty.ts": 0}, {})

    assert estimates["big.ts"].cost_s > estimates["empty.ts"].cost_s
    assert estimates["empty.ts"].cost_s == history.MIN_GUESS_S


def _result(test_id: str, file: str, *durations_ms: int) -> TestResult:
    return TestResult(
        run_id="r",
        test_id=test_id,
        file=file,
        project="",
        title=test_id,
        status=TestStatus.PASSED,
        shard_index=0,
        attempts=[
            Attempt(retry=i, status="passed", duration_ms=d)
            for i, d in enumerate(durations_ms)
        ],
    )


def test_observed_cost_is_host_time_of_every_attempt() -> None:
    """All attempts count, divided by the workers a host runs at once."""
    results = [_result("t1", "a.ts", 1000, 3000), _result("t2", "a.ts", 2000)]

    costs = history.observed_file_costs(results, workers=2, sizes={"a.ts": 99})

    assert costs == {"a.ts": (3.0, 99)}


async def test_learning_blends_runs(tmp_path: Path) -> None:
    """A second observation moves the stored cost half way."""
    async with Database.open(tmp_path / "db.sqlite3") as db:
        store = HistoryStore(db)
        for cost in (10.0, 20.0):
            await store.learn(
                "suite",
                files={"a.ts": (cost, 100)},
                tests=[],
                start_costs=[2.0],
                weight=0.5,
            )

        costs = await store.file_costs("suite")
        start = await store.start_cost("suite")
        other = await store.file_costs("other")

    assert costs == {"a.ts": (15.0, 100)}
    assert start == pytest.approx(2.0)
    assert other == {}


async def test_listing_cost_is_learnt_apart_from_the_start_cost(tmp_path: Path) -> None:
    """The listing's time blends like the others; unknown until first seen."""
    async with Database.open(tmp_path / "db.sqlite3") as db:
        store = HistoryStore(db)
        before = await store.list_cost("suite")
        for listing in (4.0, 2.0):
            await store.learn(
                "suite",
                files={},
                tests=[],
                start_costs=[9.0],
                list_costs=[listing],
                weight=0.5,
            )

        listing_s = await store.list_cost("suite")
        start_s = await store.start_cost("suite")

    assert before is None
    assert listing_s == pytest.approx(3.0)
    assert start_s == pytest.approx(9.0)
