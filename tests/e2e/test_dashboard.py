"""The dashboard in headless Chromium, on a real run of the example suite.

The example suite runs on 3 local hosts with ``EXAMPLE_FAIL`` and
``EXAMPLE_FLAKY`` set through traceloom.yml, so the run has passed, failed,
flaky and skipped tests, a trace per test and a merged Playwright report.
The browser is Debian's Chromium driven by the ``playwright`` package from
PyPI (no browser download). With ``TRACELOOM_SCREENSHOT_DIR`` set, the run
page is saved there as ``run-page.png``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import requests
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from controlplane.api.appkeys import DB, STORE
from controlplane.domain import RunStatus, new_id
from controlplane.engine.runs import FinishedRun
from controlplane.reports.merge import ReportBuilder, blob_key
from controlplane.reports.store import ReportStatus, ReportStore
from controlplane.settings import Settings
from tests.api.live import LiveServer, live_server
from tests.conftest import (
    CHROMIUM,
    example_suite_files,
    make_repo,
    spec,
    tiny_suite,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM, reason="needs Chromium (.ci/run installs it)"),
]

FLAGS = "env:\n  EXAMPLE_FAIL: '1'\n  EXAMPLE_FLAKY: '1'\n"
# Playwright joins describe blocks and titles with a single angle quote.
FAILED_TITLE = "home page \u203a shows the shop name as its heading"
FLAKY_TITLE = "a recommendation opens the book page"


@attrs.frozen
class Example:
    server: LiveServer
    key: str
    run: dict[str, Any]
    tests: list[dict[str, Any]]
    settings: Settings

    @property
    def url(self) -> str:
        return self.server.url

    def api(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {self.key}"}
        answer = requests.get(f"{self.url}{path}", headers=headers, timeout=30)
        answer.raise_for_status()
        return answer.json()


def wait_settled(example_api: Any, run_id: str, timeout_s: float = 900) -> Any:
    """The run once finished and its report no longer building."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        run = example_api(f"/api/runs/{run_id}")
        report = run["report"]
        if run["finishedAt"] and report and report["status"] != "building":
            return run
        time.sleep(1)
    raise AssertionError(f"run {run_id} did not settle in {timeout_s}s")


@pytest.fixture(scope="module")
def example(
    tmp_path_factory: pytest.TempPathFactory, shared_cache: Path
) -> Iterator[Example]:
    tmp = tmp_path_factory.mktemp("dashboard")
    repo = make_repo(tmp / "repo", example_suite_files(extra={"traceloom.yml": FLAGS}))
    settings = Settings(
        data_dir=tmp / "data",
        cache_dir=shared_cache,
        chromium_path=CHROMIUM,
        poll_interval_s=0.2,
        local_max_hosts=4,
        max_server_count=4,
    )
    with live_server(settings) as server:
        key = server.key()
        body = {
            "testSource": {"type": "git", "gitRepo": str(repo), "gitBranch": "main"},
            "testPattern": "tests/**/*.spec.ts",
            "serverCount": 3,
            "name": "example on 3 hosts",
        }
        created = requests.post(
            f"{server.url}/api/runs",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        ).json()
        partial = Example(server, key, {}, [], settings)
        run = wait_settled(partial.api, created["id"])
        tests = partial.api(f"/api/runs/{run['id']}/tests")["tests"]
        yield Example(server, key, run, tests, settings)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


def signed_in(browser: Browser, url: str, key: str) -> BrowserContext:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.goto(f"{url}/login")
    page.fill("input[name=api_key]", key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/runs")
    page.close()
    return context


@pytest.fixture
def page(browser: Browser, example: Example) -> Iterator[Page]:
    context = signed_in(browser, example.url, example.key)
    yield context.new_page()
    context.close()


def test_the_example_run_has_passed_failed_flaky_and_skipped_tests(
    example: Example,
) -> None:
    """The data the pages are checked against (the reference test checks
    these counts against a plain Playwright run)."""
    assert example.run["status"] == "failed"
    assert example.run["counts"]["failed"] == 1
    assert example.run["counts"]["flaky"] == 1
    assert example.run["counts"]["skipped"] == 1
    assert len(example.run["shards"]) == 3


def test_the_run_page_shows_the_runs_counts_tests_and_timeline(
    page: Page, example: Example
) -> None:
    """Counts, every test with its status and attempts, a row per shard."""
    run, counts = example.run, example.run["counts"]

    page.goto(f"{example.url}/runs/{run['id']}")

    tally = {
        label: page.locator(f".tally .cell.{css} .n").inner_text()
        for label, css in (
            ("total", "total"),
            ("passed", "passed"),
            ("failed", "failed"),
            ("flaky", "flaky"),
            ("skipped", "skipped"),
            ("didNotRun", "didNotRun"),
        )
    }
    assert tally == {k: str(v) for k, v in counts.items()}
    expect(page.locator("#run-summary .badge").first).to_have_text("failed")
    rows = page.locator("tr.test-row")
    expect(rows).to_have_count(counts["total"])
    failed = page.locator("tr.test-row.failed")
    expect(failed).to_have_count(1)
    expect(failed.locator(".test-title a")).to_have_text(FAILED_TITLE)
    expect(failed.locator(".attempt-chip.failed")).to_have_count(2)
    flaky = page.locator("tr.test-row.flaky")
    expect(flaky.locator(".test-title a")).to_have_text(FLAKY_TITLE)
    expect(flaky.locator(".attempt-chip")).to_have_text(["1", "2"])
    expect(flaky.locator(".attempt-chip.failed")).to_have_count(1)
    expect(flaky.locator(".attempt-chip.passed")).to_have_count(1)
    expect(page.locator("tr.test-row.passed")).to_have_count(counts["passed"])
    expect(page.locator("tr.test-row.skipped")).to_have_count(1)
    expect(page.locator("svg.timeline text.row-label")).to_contain_text(
        ["shard 0", "shard 1", "shard 2"]
    )
    attempts = page.locator("svg.timeline rect.attempt")
    assert attempts.count() >= counts["total"]
    expect(page.locator("a.button", has_text="Merged report")).to_have_attribute(
        "href", f"/runs/{run['id']}/report/"
    )
    shots = os.environ.get("TRACELOOM_SCREENSHOT_DIR")
    if shots:
        Path(shots).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(shots) / "run-page.png"), full_page=True)


def test_the_trace_link_opens_the_trace_viewer_on_that_test(
    page: Page, example: Example
) -> None:
    """The failed test's trace opens in Playwright's viewer from the report."""
    page.goto(f"{example.url}/runs/{example.run['id']}")

    with page.context.expect_page() as opened:
        page.locator("tr.test-row.failed a.trace-link").click()
    viewer = opened.value

    assert f"/runs/{example.run['id']}/report/trace/" in viewer.url
    expect(viewer.get_by_text(FAILED_TITLE).first).to_be_visible(timeout=60_000)
    expect(viewer.get_by_text("toHaveText").first).to_be_visible(timeout=60_000)


def test_the_merged_report_holds_every_shards_tests(
    page: Page, example: Example
) -> None:
    """Playwright's own report, merged from all batches, under the run's path."""
    report = example.run["report"]
    batches = example.server.call(example.server.app[DB].batches(example.run["id"]))

    page.goto(f"{example.url}/runs/{example.run['id']}/report/")

    assert report["status"] == "ready"
    assert report["blobsMerged"] == report["blobsExpected"] == len(batches)
    assert report["missing"] == []
    expect(page.get_by_text(FAILED_TITLE).first).to_be_visible(timeout=30_000)
    expect(page.get_by_text(FLAKY_TITLE).first).to_be_visible()
    # Its own tally counts the tests of every host.
    tally = "".join(page.locator("body").inner_text().split())
    counts = example.run["counts"]
    for label in ("passed", "failed", "flaky", "skipped"):
        assert f"{label.title()}{counts[label]}" in tally


def test_screenshots_and_junit_are_served_to_the_session(
    page: Page, example: Example
) -> None:
    """The screenshot link gives a PNG; the JUnit link the run's totals."""
    page.goto(f"{example.url}/runs/{example.run['id']}")
    shot = page.locator("tr.test-row.failed a.shot-link").first.get_attribute("href")
    junit = page.locator("a.button", has_text="JUnit XML").get_attribute("href")

    png = page.request.get(f"{example.url}{shot}")
    xml = page.request.get(f"{example.url}{junit}")
    anonymous = requests.get(f"{example.url}{shot}", timeout=30)

    assert png.body()[:8] == b"\x89PNG\r\n\x1a\n"
    assert anonymous.status_code == 401
    root = ET.fromstring(xml.body())  # noqa: S314 - the server's own document
    counts = example.run["counts"]
    assert root.get("tests") == str(counts["total"])
    assert root.get("failures") == str(counts["failed"])
    assert root.get("skipped") == str(counts["skipped"])
    flaky = root.findall(".//testcase/properties/property[@name='flaky']")
    assert len(flaky) == counts["flaky"]


def test_a_tests_history_page_shows_its_results_and_flaky_rate(
    page: Page, example: Example
) -> None:
    """From the run page to the flaky test's history: rate, strip, trend."""
    page.goto(f"{example.url}/runs/{example.run['id']}")

    page.locator("tr.test-row.flaky .test-title a").click()

    expect(page.locator("h1")).to_have_text(FLAKY_TITLE)
    expect(page.locator(".flaky-rate")).to_contain_text("100%")
    expect(page.locator(".strip .cell.flaky")).to_have_count(1)
    expect(page.locator("svg.trend circle")).to_have_count(1)
    expect(page.locator(".attempts-list li")).to_have_count(2)


def test_the_runs_list_shows_and_filters_runs(page: Page, example: Example) -> None:
    """Status, trigger, commit, duration and counts; filters narrow it."""
    run = example.run

    page.goto(f"{example.url}/runs?status=failed")
    row = page.locator(f"tr.run-row[data-run-id='{run['id']}']")
    expect(row).to_contain_text("example on 3 hosts")
    expect(row).to_contain_text("api")
    expect(row).to_contain_text(run["resolvedSha"][:10])
    expect(row).to_contain_text(f"{run['counts']['passed']} passed")
    page.goto(f"{example.url}/runs?status=passed")
    expect(page.locator("tr.run-row")).to_have_count(0)
    page.goto(f"{example.url}/runs?triggerSource=schedule")
    expect(page.locator(".empty")).to_contain_text("No runs match")


def test_a_missing_blob_makes_the_report_incomplete_and_says_which(
    page: Page, example: Example
) -> None:
    """Merged again without one batch's blob: built, marked, the batch named."""
    app = example.server.app
    db, store = app[DB], app[STORE]
    original = example.server.call(db.get_run(example.run["id"]))
    assert original is not None
    copy = attrs.evolve(original, id=new_id("run_"), status=RunStatus.QUEUED)
    batches = example.server.call(db.batches(original.id))
    example.server.call(db.insert_run(copy))
    for row in batches:
        example.server.call(
            db.save_batch(copy.id, row["number"], row["slot"], [], row["status"])
        )
        source = store.path_for(blob_key(original.id, row["slot"], row["number"]))
        target = store.path_for(blob_key(copy.id, row["slot"], row["number"]))
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    dropped = batches[0]
    store.path_for(blob_key(copy.id, dropped["slot"], dropped["number"])).unlink()
    [node_modules] = example.settings.deps_dir.glob("*/tree/node_modules")
    builder = ReportBuilder(
        db=db, store=store, scratch_dir=example.settings.work_dir, timeout_s=300
    )

    example.server.call(
        builder.run_finished(
            FinishedRun(
                run=copy,
                checkout=None,
                node_modules=node_modules,
                config_dir="",
                playwright=node_modules / ".bin" / "playwright",
            )
        ),
        timeout_s=300,
    )
    record = example.server.call(ReportStore(db).get(copy.id))
    page.goto(f"{example.url}/runs/{copy.id}")

    assert record is not None
    assert record.status == ReportStatus.INCOMPLETE
    assert record.blobs_merged == len(batches) - 1
    assert record.missing == [
        f"batch {dropped['number']} on shard {dropped['slot']}:"
        " no blob report came back"
    ]
    assert store.path_for(f"{copy.id}/report/index.html").is_file()
    expect(page.locator(".banner.incomplete")).to_contain_text(
        f"batch {dropped['number']} on shard {dropped['slot']}"
    )


def test_a_run_page_follows_the_run_live(
    browser: Browser, example: Example, tmp_path: Path
) -> None:
    """Opened while the run goes, the page reaches the verdict without reloading."""
    slow = "await new Promise((r) => setTimeout(r, 1500));"
    repo = make_repo(
        tmp_path / "live",
        tiny_suite(
            {
                "tests/a.spec.ts": spec(*((f"slow {i}", slow) for i in range(6))),
            }
        ),
    )
    created = requests.post(
        f"{example.url}/api/runs",
        json={
            "testSource": {"type": "git", "gitRepo": str(repo), "gitBranch": "main"},
            "testPattern": "tests/**/*.spec.ts",
            "name": "live",
        },
        headers={"Authorization": f"Bearer {example.key}"},
        timeout=30,
    ).json()
    context = signed_in(browser, example.url, example.key)
    page = context.new_page()

    page.goto(f"{example.url}/runs/{created['id']}")
    first = page.locator("#run-summary .badge").first.inner_text()
    page.evaluate("window.__sameDocument = true")
    expect(page.locator("#run-summary .badge").first).to_have_text(
        "passed", timeout=300_000
    )
    expect(page.locator(".tally .cell.passed .n")).to_have_text("6")
    expect(page.locator("tr.test-row.passed")).to_have_count(6)
    same_document = page.evaluate("window.__sameDocument === true")
    context.close()

    assert first in ("queued", "provisioning", "running")
    assert same_document
    run = example.api(f"/api/runs/{created['id']}")
    assert run["status"] == "passed"
    assert json.dumps(run["counts"]) == json.dumps(
        {
            "total": 6,
            "passed": 6,
            "failed": 0,
            "flaky": 0,
            "skipped": 0,
            "didNotRun": 0,
        }
    )
