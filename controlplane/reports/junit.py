"""JUnit XML of a run, from the API's JSON of the run and of its tests.

One implementation for every producer: the CLI writes it after ``--wait``
and the control plane serves it at ``/api/runs/{id}/junit.xml``, so both
give the same document for the same run.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

Json = dict[str, Any]


def junit_tree(run: Json, tests: list[Json]) -> ET.ElementTree[ET.Element]:
    """JUnit XML of a run: a suite per file, totals equal to the run's counts.

    Failed tests carry ``<failure>``, tests that never ran ``<error>``,
    skipped ones ``<skipped>``; flaky tests pass, with a ``flaky`` property
    and one ``<flakyFailure>`` per failed attempt.
    """
    counts = run["counts"]
    root = ET.Element(
        "testsuites",
        name=run.get("name") or run["id"],
        tests=str(counts["total"]),
        failures=str(counts["failed"]),
        errors=str(counts["didNotRun"]),
        skipped=str(counts["skipped"]),
        time=f"{sum(t['durationMs'] for t in tests) / 1000:.3f}",
    )
    by_file: dict[str, list[Json]] = {}
    for test in tests:
        by_file.setdefault(test["file"], []).append(test)
    for file, members in sorted(by_file.items()):
        _junit_suite(root, file, members)
    ET.indent(root)
    return ET.ElementTree(root)


def _junit_suite(root: ET.Element, file: str, tests: list[Json]) -> None:
    def count(status: str) -> str:
        return str(sum(t["status"] == status for t in tests))

    suite = ET.SubElement(
        root,
        "testsuite",
        name=file,
        tests=str(len(tests)),
        failures=count("failed"),
        errors=count("didNotRun"),
        skipped=count("skipped"),
        time=f"{sum(t['durationMs'] for t in tests) / 1000:.3f}",
    )
    for test in tests:
        _junit_case(suite, file, test)


def _junit_case(suite: ET.Element, file: str, test: Json) -> None:
    case = ET.SubElement(
        suite,
        "testcase",
        name=test["title"],
        classname=f"{test['project']}.{file}" if test["project"] else file,
        file=file,
        line=str(test["line"]),
        time=f"{test['durationMs'] / 1000:.3f}",
    )
    failed_attempts = [a for a in test["attempts"] if a["status"] != "passed"]
    status = test["status"]
    if status == "failed":
        last = failed_attempts[-1] if failed_attempts else {}
        failure = ET.SubElement(
            case, "failure", message=_first_line(last.get("error")), type="failed"
        )
        failure.text = _xml_text(last.get("error"))
    elif status == "didNotRun":
        ET.SubElement(case, "error", message="the test did not run", type="didNotRun")
    elif status == "skipped":
        ET.SubElement(case, "skipped")
    elif status == "flaky":
        properties = ET.SubElement(case, "properties")
        ET.SubElement(properties, "property", name="flaky", value="true")
        for attempt in failed_attempts:
            flaky = ET.SubElement(
                case,
                "flakyFailure",
                message=_first_line(attempt.get("error")),
                type=attempt["status"],
            )
            flaky.text = _xml_text(attempt.get("error"))


_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_text(text: str | None) -> str:
    """Error text fit for XML 1.0: no terminal colours, no control characters."""
    return _NOT_XML.sub("", _ANSI.sub("", text or ""))


def _first_line(text: str | None) -> str:
    lines = _xml_text(text).strip().splitlines()
    return lines[0][:200] if lines else ""


def write_junit(run: Json, tests: list[Json], path: Path) -> None:
    """Write the run's JUnit XML to ``path``, making its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    junit_tree(run, tests).write(path, encoding="utf-8", xml_declaration=True)


def junit_bytes(run: Json, tests: list[Json]) -> bytes:
    """The document as UTF-8 bytes, with its XML declaration."""
    root = junit_tree(run, tests).getroot()
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document
