"""The suites teams really have, through the API on local hosts, exact counts.

yarn berry pinned by packageManager, a pnpm workspace whose config sits in
a sub-folder and whose app a setup step builds, a globalSetup and a web
server that print to stdout, an old Playwright beside the newest at once,
and projects whose browser the host lacks.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from tests.conftest import (
    CHROMIUM,
    REPO_ROOT,
    WaitForRun,
    make_repo,
    run_body,
    spec,
    tiny_suite,
    traceloom_processes,
)

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not CHROMIUM, reason="needs Chromium (.ci/run installs it)"),
]

FIXTURES = REPO_ROOT / "tests" / "fixtures" / "suites"
NO_TESTS = {"failed": 0, "flaky": 0, "skipped": 0, "didNotRun": 0}


def fixture(name: str, **extra: str) -> dict[str, str]:
    """The files of the fixture suite ``name``, plus ``extra``."""
    root = FIXTURES / name
    files = {
        p.relative_to(root).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
    files.update(extra)
    return files


async def start(
    client: TestClient[Any, Any], auth: dict[str, str], body: dict[str, Any]
) -> str:
    created = await client.post("/api/runs", json=body, headers=auth)
    assert created.status == 201, await created.text()
    run_id: str = (await created.json())["id"]
    return run_id


async def fetch_tests(
    client: TestClient[Any, Any], auth: dict[str, str], run_id: str
) -> list[dict[str, Any]]:
    answer = await client.get(f"/api/runs/{run_id}/tests", headers=auth)
    tests: list[dict[str, Any]] = (await answer.json())["tests"]
    return tests


async def test_yarn_berry_suite_runs_with_the_yarn_its_package_json_pins(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """yarn@4 (packageManager, hash checked) installs it; counts are exact."""
    repo = make_repo(tmp_path / "repo", fixture("yarn-berry"))

    run = await wait_for_run(
        await start(client, auth, run_body(repo, serverCount=2)), timeout_s=400
    )

    assert run["status"] == "passed", run["reason"]
    assert run["counts"] == {**NO_TESTS, "total": 4, "passed": 3, "skipped": 1}
    assert run["excludedFiles"] == []
    assert not traceloom_processes(run["id"])


async def test_pnpm_workspace_with_config_in_a_folder_and_an_app_built_by_setup(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """The e2e package's config governs; setup builds the app on every host.

    The web server serves the built page through the workspace link
    (e2e/node_modules/@shop/app), so a missing build or a broken link fails
    the tests; a spec file outside the config's testDir is left out and
    recorded before anything is dispatched.
    """
    repo = make_repo(tmp_path / "repo", fixture("pnpm-workspace"))

    run = await wait_for_run(
        await start(client, auth, run_body(repo, "e2e/**/*.spec.ts", serverCount=2)),
        timeout_s=400,
    )
    tests = await fetch_tests(client, auth, run["id"])

    assert run["status"] == "passed", run["reason"]
    assert run["counts"] == {**NO_TESTS, "total": 3, "passed": 3}
    assert {t["file"] for t in tests} == {
        "e2e/tests/home.spec.ts",
        "e2e/tests/missing.spec.ts",
    }
    assert run["excludedFiles"] == [
        {
            "file": "e2e/helpers/fixtures.spec.ts",
            "reason": "outside the testDir of e2e/playwright.config.ts (e2e/tests)",
        }
    ]
    assert len(run["setup"]) == 2
    for host in run["setup"]:
        assert host["status"] == "passed"
        assert "$ pnpm --filter @shop/app build" in host["output"]
        assert "app: built dist/index.html" in host["output"]
    assert [p["status"] for p in run["projects"]] == ["run"]
    # The merge found the e2e package's own Playwright (pnpm keeps it there).
    report = await built_report(client, auth, run["id"])
    assert report["status"] == "ready", report["reason"]
    assert report["blobsMerged"] == report["blobsExpected"] >= 1


async def built_report(
    client: TestClient[Any, Any], auth: dict[str, str], run_id: str
) -> dict[str, Any]:
    """The run's report once its merge is over (it starts as the run ends)."""
    for _ in range(600):
        run = await (await client.get(f"/api/runs/{run_id}", headers=auth)).json()
        report: dict[str, Any] | None = run.get("report")
        if report is not None and report["status"] != "building":
            return report
        await asyncio.sleep(0.2)
    raise AssertionError(f"the report of {run_id} was not built")


GLOBAL_SETUP = """\
export default async function globalSetup() {
  // Lines that look like reporter events, on both streams.
  console.log('{"type":"testEnd","id":"fake","outcome":"unexpected"}');
  console.error('{"type":"begin","tests":[]}');
  process.stdout.write('no newline at the end');
}
"""
PRINTING_SERVER = """\
import { createServer } from 'node:http';
for (let i = 0; i < 200; i++) console.log(`server noise ${i} {"type":"end"}`);
createServer((req, res) => res.end('ok')).listen(4390, '127.0.0.1');
"""
PRINTING_CONFIG = """\
import { defineConfig } from '@playwright/test';
export default defineConfig({
  testDir: 'tests',
  workers: 1,
  retries: process.env.CI ? 1 : 0,
  globalSetup: './global-setup.ts',
  use: { trace: 'off', baseURL: 'http://127.0.0.1:4390' },
  webServer: { command: 'node server.mjs', url: 'http://127.0.0.1:4390/' },
});
"""
FIRST_ATTEMPT_FAILS = "expect(test.info().retry).toBe(1);"


async def test_global_setup_and_web_server_that_print_do_not_change_results(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """Printed lines that look like events are not results; CI is set.

    The suite retries only when CI is set, so a test that fails its first
    attempt is flaky here, as it is in the suite's own CI.
    """
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/a.spec.ts": spec(
                    ("passes", "expect(process.env.CI).toBe('1');"),
                    ("passes on retry", FIRST_ATTEMPT_FAILS),
                ),
                "tests/b.spec.ts": (
                    "import { test, expect } from '@playwright/test';\n"
                    "test('server answers', async ({ request }) => {\n"
                    "  expect(await (await request.get('/')).text()).toBe('ok');\n"
                    "});\n"
                ),
            },
            **{
                "playwright.config.ts": PRINTING_CONFIG,
                "global-setup.ts": GLOBAL_SETUP,
                "server.mjs": PRINTING_SERVER,
            },
        ),
    )

    run = await wait_for_run(await start(client, auth, run_body(repo)))

    assert run["status"] == "passed", run["reason"]
    assert run["counts"] == {**NO_TESTS, "total": 3, "passed": 2, "flaky": 1}


NEWEST = spec(
    (
        "runs on the newest Playwright",
        "expect(require('@playwright/test/package.json').version).toBe('1.65.2');",
    )
) + (
    "test('drives a browser', async ({ page }) => {\n"
    "  await page.setContent('<p>new</p>');\n"
    "  await expect(page.locator('p')).toHaveText('new');\n"
    "});\n"
)


async def test_old_and_newest_playwright_run_at_once_on_one_machine(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """A suite pinned to 1.40 and one on the newest release, at the same time.

    Each drives Chromium through the browser layout of its own version.
    """
    old = make_repo(tmp_path / "old", fixture("playwright-1.40"))
    new = make_repo(tmp_path / "new", tiny_suite({"tests/new.spec.ts": NEWEST}))

    ids = [
        await start(client, auth, run_body(old, "tests/**/*.spec.js")),
        await start(client, auth, run_body(new)),
    ]
    old_run, new_run = await asyncio.gather(
        *(wait_for_run(i, timeout_s=400) for i in ids)
    )

    assert old_run["status"] == "passed", old_run["reason"]
    assert old_run["counts"] == {**NO_TESTS, "total": 2, "passed": 2}
    assert new_run["status"] == "passed", new_run["reason"]
    assert new_run["counts"] == {**NO_TESTS, "total": 2, "passed": 2}
    # They overlapped: each started before the other finished.
    assert old_run["startedAt"] < new_run["finishedAt"]
    assert new_run["startedAt"] < old_run["finishedAt"]


TWO_BROWSERS = """\
import { defineConfig, devices } from '@playwright/test';
export default defineConfig({
  testDir: 'tests',
  workers: 1,
  use: { trace: 'off' },
  projects: [
    { name: 'chromium', use: { ...devices['Desktop Chrome'] } },
    { name: 'firefox', use: { ...devices['Desktop Firefox'] } },
  ],
});
"""
BROWSER_SPEC = (
    "import { test, expect } from '@playwright/test';\n"
    "test('opens a page', async ({ page }) => {\n"
    "  await page.setContent('<b>x</b>');\n"
    "  await expect(page.locator('b')).toHaveText('x');\n"
    "});\n"
    "test('plain', async () => { expect(2).toBe(2); });\n"
)


async def test_projects_of_a_browser_the_host_lacks_are_not_run_and_say_why(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """Firefox is missing here: its tests did not run, and the run cannot pass.

    Selecting only chromium in traceloom.yml gives a pass that records
    firefox as not selected.
    """
    files = tiny_suite(
        {"tests/a.spec.ts": BROWSER_SPEC}, **{"playwright.config.ts": TWO_BROWSERS}
    )
    both = make_repo(tmp_path / "both", files)
    chosen = make_repo(
        tmp_path / "chosen", {**files, "traceloom.yml": "projects: [chromium]\n"}
    )

    missing = await wait_for_run(await start(client, auth, run_body(both)))
    selected = await wait_for_run(await start(client, auth, run_body(chosen)))
    tests = await fetch_tests(client, auth, missing["id"])

    assert missing["status"] == "errored"
    assert "project 'firefox' did not run (2 tests)" in missing["reason"]
    assert "no Playwright Firefox build" in missing["reason"]
    assert missing["counts"] == {**NO_TESTS, "total": 4, "passed": 2, "didNotRun": 2}
    assert {(t["project"], t["status"]) for t in tests} == {
        ("chromium", "passed"),
        ("firefox", "didNotRun"),
    }
    by_name = {p["name"]: p for p in missing["projects"]}
    assert by_name["chromium"]["status"] == "run"
    assert by_name["firefox"]["status"] == "unavailable"
    assert by_name["firefox"]["browser"] == "firefox"
    assert by_name["firefox"]["tests"] == 2
    assert selected["status"] == "passed", selected["reason"]
    assert selected["counts"] == {**NO_TESTS, "total": 2, "passed": 2}
    assert [(p["name"], p["status"]) for p in selected["projects"]] == [
        ("chromium", "run"),
        ("firefox", "notSelected"),
    ]


async def test_failing_setup_step_ends_the_run_errored_with_its_output(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """The failing step, its exit code and its last lines are the run's reason."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {"tests/a.spec.ts": spec(("never runs", "expect(1).toBe(1);"))},
            **{
                "traceloom.yml": (
                    "setup:\n"
                    "  - echo first step ok\n"
                    "  - run: echo building in $(basename $PWD); echo broken >&2;"
                    " exit 3\n"
                    "    dir: tests\n"
                )
            },
        ),
    )

    run = await wait_for_run(await start(client, auth, run_body(repo, serverCount=2)))

    assert run["status"] == "errored"
    assert "traceloom.yml setup step 2" in run["reason"]
    assert "failed with exit code 3" in run["reason"]
    assert "broken" in run["reason"]
    assert run["counts"]["total"] == 0
    [failed] = [s for s in run["setup"] if s["status"] == "failed"]
    assert failed["step"] == 2
    assert failed["exitCode"] == 3
    assert "first step ok" in failed["output"]
    assert "building in tests" in failed["output"]
    assert not traceloom_processes(run["id"])


async def test_a_config_that_does_not_load_names_its_error_in_the_reason(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """The message at the head of a long stack trace reaches the run's reason."""
    # A deep stack makes Playwright's output far longer than what a reason
    # keeps: the message comes first, the frames after it.
    config = (
        "function deep(n: number): never {\n"
        "  if (n === 0) throw new Error('config boom: no BASE_URL');\n"
        "  return deep(n - 1);\n"
        "}\n"
        "deep(60);\n"
        "export default {};\n"
    )
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {"tests/a.spec.ts": spec(("never runs", "expect(1).toBe(1);"))},
            **{"playwright.config.ts": config},
        ),
    )

    run = await wait_for_run(await start(client, auth, run_body(repo)))

    assert run["status"] == "errored"
    assert "config boom: no BASE_URL" in run["reason"]
    assert not traceloom_processes(run["id"])


SECRET = "s3cr3t-" + "4f1c9a7e2b"
SECRET_SHA256 = __import__("hashlib").sha256(SECRET.encode()).hexdigest()
SECRET_SPECS = (
    "import { test, expect } from '@playwright/test';\n"
    "import { createHash } from 'node:crypto';\n"
    "const token = process.env.SHOP_TOKEN ?? '';\n"
    "test('sees the secret', async () => {\n"
    "  expect(createHash('sha256').update(token).digest('hex'))\n"
    f"    .toBe('{SECRET_SHA256}');\n"
    "});\n"
    "test('shows it in a failure', async () => { expect(token).toBe('wrong'); });\n"
)


async def test_secrets_reach_setup_and_tests_but_no_record_or_database_file(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
    settings: Any,
) -> None:
    """traceloom.yml names the secret; its value is redacted wherever it shows."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {"tests/a.spec.ts": SECRET_SPECS},
            **{
                "traceloom.yml": (
                    "secrets:\n  SHOP_TOKEN: shop-token\n"
                    "setup:\n  - echo token is $SHOP_TOKEN\n"
                )
            },
        ),
    )
    stored = await client.put(
        "/api/secrets/shop-token",
        json={"value": SECRET, "scope": str(repo)},
        headers=auth,
    )

    run = await wait_for_run(await start(client, auth, run_body(repo)))
    tests = await fetch_tests(client, auth, run["id"])
    answers = [
        await (await client.get(path, headers=auth)).text()
        for path in (f"/api/runs/{run['id']}", f"/api/runs/{run['id']}/tests")
    ]
    failed = next(t for t in tests if t["status"] == "failed")

    assert stored.status == 201
    assert run["status"] == "failed", run["reason"]
    assert run["counts"] == {**NO_TESTS, "total": 2, "passed": 1, "failed": 1}
    assert "[redacted]" in failed["attempts"][0]["error"]
    assert "token is [redacted]" in run["setup"][0]["output"]
    assert all(SECRET not in text for text in answers)
    for path in settings.data_dir.rglob("*"):
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path


async def test_a_secret_that_is_not_set_ends_the_run_errored_at_its_line(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """The run names the file, the line and the missing secret; no host starts."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {"tests/a.spec.ts": spec(("x", "expect(1).toBe(1);"))},
            **{"traceloom.yml": "env:\n  A: b\nsecrets:\n  TOKEN: not-set-anywhere\n"},
        ),
    )

    run = await wait_for_run(await start(client, auth, run_body(repo)))

    assert run["status"] == "errored"
    assert run["reason"].startswith(
        "traceloom.yml line 4: secret 'not-set-anywhere' (for TOKEN) is not set"
    )
    assert run["shards"] == []


# A setup step that kills its own local host (the SSH server it runs under)
# on the first host only: that host is lost while it lists the tests.
KILL_FIRST_HOST = """\
setup:
  - |
    case "$TRACELOOM_HOST" in
      *-h0)
        for proc in /proc/[0-9]*; do
          if tr '\\0' ' ' <"$proc/cmdline" 2>/dev/null |
              grep -q "localhost_server.* --name $TRACELOOM_HOST "; then
            kill -9 "${proc#/proc/}"
          fi
        done
        sleep 30 ;;
    esac
"""


async def test_a_host_lost_while_listing_hands_the_listing_to_another(
    client: TestClient[Any, Any],
    auth: dict[str, str],
    wait_for_run: WaitForRun,
    tmp_path: Path,
) -> None:
    """The next host, set up meanwhile, lists and runs every test."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/a.spec.ts": spec(("a", "expect(1).toBe(1);")),
                "tests/b.spec.ts": spec(("b", "expect(2).toBe(2);")),
            },
            **{"traceloom.yml": KILL_FIRST_HOST},
        ),
    )

    run = await wait_for_run(await start(client, auth, run_body(repo, serverCount=2)))

    assert run["status"] == "passed", run["reason"]
    assert run["counts"] == {**NO_TESTS, "total": 2, "passed": 2}
    lost, used = run["shards"]
    assert lost["status"] == "lost"
    assert "while listing the tests" in lost["reason"]
    assert used["status"] == "passed"
    assert sorted(used["files"]) == ["tests/a.spec.ts", "tests/b.spec.ts"]
    assert not traceloom_processes(run["id"])
