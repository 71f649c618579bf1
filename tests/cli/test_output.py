"""What the CLI writes: JUnit XML, progress lines and bars, from API answers."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from controlplane.cli import BarProgress, PlainProgress
from controlplane.reports.junit import write_junit

COLOURED = "Error: \x1b[2mexpect(\x1b[22mreceived).toBe(expected)\x07\nExpected: 2"


def _test(
    title: str, status: str, *, file: str = "tests/a.spec.ts", attempts: int = 1
) -> dict[str, Any]:
    outcomes = {"failed": "failed", "flaky": "failed", "didNotRun": None}
    tries = []
    for retry in range(attempts):
        last = retry == attempts - 1
        failing = outcomes.get(status) and not (status == "flaky" and last)
        tries.append(
            {
                "retry": retry,
                "status": "failed" if failing else "passed",
                "durationMs": 250,
                "error": COLOURED if failing else None,
            }
        )
    return {
        "id": title,
        "file": file,
        "line": 3,
        "project": "chromium",
        "title": title,
        "status": status,
        "durationMs": 250 * attempts,
        "attempts": [] if status == "didNotRun" else tries,
    }


TESTS = [
    _test("passes", "passed"),
    _test("fails", "failed", attempts=2),
    _test("flaky", "flaky", attempts=3),
    _test("skipped", "skipped", file="tests/b.spec.ts"),
    _test("never ran", "didNotRun", file="tests/b.spec.ts"),
]
RUN = {
    "id": "run_1",
    "name": "nightly",
    "status": "failed",
    "counts": {
        "total": 5,
        "passed": 1,
        "failed": 1,
        "flaky": 1,
        "skipped": 1,
        "didNotRun": 1,
    },
}


@pytest.fixture
def junit(tmp_path: Path) -> ET.Element:
    path = tmp_path / "junit.xml"
    write_junit(RUN, TESTS, path)
    return ET.parse(path).getroot()  # noqa: S314 - the file this test just wrote


def test_junit_totals_equal_the_run_counts(junit: ET.Element) -> None:
    """tests, failures, errors and skipped are the run's own counts."""
    totals = {k: junit.get(k) for k in ("tests", "failures", "errors", "skipped")}

    assert totals == {"tests": "5", "failures": "1", "errors": "1", "skipped": "1"}
    assert sum(int(s.get("tests", "0")) for s in junit.iter("testsuite")) == 5


def test_junit_has_a_suite_per_file(junit: ET.Element) -> None:
    """One testsuite per spec file, with its own totals."""
    suites = {s.get("name"): s for s in junit.iter("testsuite")}

    assert list(suites) == ["tests/a.spec.ts", "tests/b.spec.ts"]
    assert suites["tests/a.spec.ts"].get("failures") == "1"
    assert suites["tests/b.spec.ts"].get("errors") == "1"


@pytest.mark.parametrize(
    ("title", "children"),
    [
        ("passes", set()),
        ("fails", {"failure"}),
        ("flaky", {"properties", "flakyFailure"}),
        ("skipped", {"skipped"}),
        ("never ran", {"error"}),
    ],
)
def test_each_status_has_its_junit_element(
    junit: ET.Element, title: str, children: set[str]
) -> None:
    """failure, error, skipped; a flaky test passes, marked, with its failures."""
    case = junit.find(f".//testcase[@name='{title}']")

    assert case is not None
    assert {child.tag for child in case} == children


def test_flaky_test_keeps_each_failed_attempt(junit: ET.Element) -> None:
    """Two failed attempts before the pass: two flakyFailure elements."""
    case = junit.find(".//testcase[@name='flaky']")

    assert case is not None
    assert len(case.findall("flakyFailure")) == 2
    assert case.find("properties/property[@name='flaky']") is not None


def test_junit_error_text_has_no_terminal_codes(junit: ET.Element) -> None:
    """Colour codes and control characters are dropped; the text stays."""
    failure = junit.find(".//testcase[@name='fails']/failure")

    assert failure is not None
    assert failure.get("message") == "Error: expect(received).toBe(expected)"
    assert failure.text == "Error: expect(received).toBe(expected)\nExpected: 2"


def _running(done: list[int], totals: list[int | None]) -> dict[str, Any]:
    shards = [
        {
            "index": i,
            "status": "running" if total is None else "passed",
            "testsDone": d,
            "counts": {"total": total or 0, "didNotRun": 0},
        }
        for i, (d, total) in enumerate(zip(done, totals, strict=True))
    ]
    return {
        "status": "running",
        "shards": shards,
        "counts": {"total": sum(done), "failed": 0, "didNotRun": 0},
    }


def test_plain_progress_prints_a_line_per_change() -> None:
    """Off a terminal: a line when something changed, none otherwise."""
    lines: list[str] = []
    view = PlainProgress(lines.append)

    view.update(_running([1, 0], [None, None]))
    view.update(_running([1, 0], [None, None]))
    view.update(_running([3, 2], [None, 2]))
    view.update(_running([4, 2], [4, 2]))

    assert lines == [
        "running: 1/? tests done, 0 failed (shard 0 running 1/?, shard 1 running 0/?)",
        "running: 5/? tests done, 0 failed (shard 0 running 3/?, shard 1 passed 2/2)",
        "running: 6/6 tests done, 0 failed (shard 0 passed 4/4, shard 1 passed 2/2)",
    ]


def test_bar_progress_draws_the_run_and_each_shard() -> None:
    """On a terminal: a bar for the run and one per shard, with done/total."""
    out = io.StringIO()
    view = BarProgress(Console(file=out, force_terminal=True, width=100))

    view.update(_running([4, 2], [4, 2]))
    view.close()

    screen = out.getvalue()
    assert "run running" in screen
    assert "shard 0 passed" in screen
    assert "shard 1 passed" in screen
    assert "6/6" in screen
