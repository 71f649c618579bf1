"""The run summary says what was left out before the tests, and why."""

from __future__ import annotations

import pytest

from controlplane.cli import print_summary

RUN = {
    "id": "run_1",
    "status": "errored",
    "reason": "project 'firefox' did not run (2 tests): no Firefox here",
    "url": "http://x/api/runs/run_1",
    "counts": {
        "total": 4,
        "passed": 2,
        "failed": 0,
        "flaky": 0,
        "skipped": 0,
        "didNotRun": 2,
    },
    "excludedFiles": [
        {"file": "e2e/helpers/h.spec.ts", "reason": "outside the testDir of c (t)"}
    ],
    "projects": [
        {"name": "chromium", "status": "run", "reason": None},
        {"name": "firefox", "status": "unavailable", "reason": "no Firefox here"},
        {"name": "mobile", "status": "notSelected", "reason": "not in the projects"},
    ],
}


def test_summary_lists_left_out_files_and_projects_not_run(
    capsys: pytest.CaptureFixture[str],
) -> None:
    print_summary(RUN, [])

    lines = capsys.readouterr().out.splitlines()
    assert lines[2:5] == [
        "Left out e2e/helpers/h.spec.ts: outside the testDir of c (t)",
        "Project firefox not run: no Firefox here",
        "Project mobile not run: not in the projects",
    ]


def test_summary_of_a_run_without_notes_is_unchanged(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An answer from a server without these fields prints as before."""
    bare = {k: v for k, v in RUN.items() if k not in ("excludedFiles", "projects")}

    print_summary(bare, [])

    assert not any(
        line.startswith(("Left out", "Project"))
        for line in capsys.readouterr().out.splitlines()
    )
