"""The ``traceloom`` command against a real server on a loopback port."""

from __future__ import annotations

import json
import socket
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from controlplane.cli import (
    EXIT_OK,
    EXIT_RUN_ERRORED,
    EXIT_TESTS_FAILED,
    EXIT_UNREACHABLE,
    main,
)
from controlplane.settings import Settings
from tests.api.live import LiveServer
from tests.conftest import make_repo, spec, tiny_suite

MISSING_REPO = ["--repo", "/nonexistent/suite.git", "--branch", "main"]
PATTERN = ["--pattern", "tests/**/*.spec.ts"]
FLAKY = (
    "flaky until retried",
    "expect(test.info().retry).toBeGreaterThan(0);",
)
RETRY_ONCE = "test.describe.configure({ retries: 1 });\n"


def traceloom(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input)


def _run_id(result: Result) -> str:
    first = result.stdout.splitlines()[0]
    assert first.startswith("Run run_"), result.output
    return first.split()[1]


def test_run_without_wait_prints_the_run_and_exits_0(cli_env: dict[str, str]) -> None:
    """Without --wait the command answers as soon as the run exists."""
    result = traceloom(cli_env, "run", *MISSING_REPO, *PATTERN, "--name", "smoke")

    assert result.exit_code == EXIT_OK, result.output
    assert result.stdout.startswith("Run run_")
    assert f"{cli_env['TRACELOOM_URL']}/api/runs/run_" in result.stdout


def test_run_that_errors_exits_2_with_the_reason(cli_env: dict[str, str]) -> None:
    """An unclonable repository: the run errors, the command exits 2."""
    result = traceloom(
        cli_env, "run", *MISSING_REPO, *PATTERN, "--wait", "--poll-interval", "0.2"
    )

    assert result.exit_code == EXIT_RUN_ERRORED, result.output
    assert "errored" in result.stdout
    assert "Reason: cannot clone" in result.stdout
    assert "/api/runs/run_" in result.stdout.splitlines()[-1]


def test_body_file_and_flags_combine(cli_env: dict[str, str], tmp_path: Path) -> None:
    """A JSON body from a file, with flags laid over its fields."""
    body = tmp_path / "body.json"
    body.write_text(
        json.dumps(
            {
                "testSource": {
                    "type": "git",
                    "gitRepo": "/nonexistent/a.git",
                    "gitBranch": "main",
                },
                "testPattern": "tests/*.ts",
                "name": "from the file",
            }
        )
    )

    started = traceloom(cli_env, "run", "--body", str(body), "--name", "from a flag")
    shown = traceloom(cli_env, "runs", "show", _run_id(started), "--json")

    run = json.loads(shown.stdout)
    assert run["name"] == "from a flag"
    assert run["testPattern"] == "tests/*.ts"
    assert run["testSource"]["gitRepo"] == "/nonexistent/a.git"


def test_body_from_stdin(cli_env: dict[str, str]) -> None:
    """``--body -`` reads the request from standard input."""
    body = {
        "testSource": {"type": "s3", "bucket": "suites", "key": "shop.zip"},
        "testPattern": "tests/*.ts",
        "triggerSource": "manual",
    }

    started = traceloom(cli_env, "run", "--body", "-", input=json.dumps(body))
    shown = json.loads(
        traceloom(cli_env, "runs", "show", _run_id(started), "--json").stdout
    )

    assert shown["triggerSource"] == "manual"
    assert shown["testSource"]["type"] == "s3"


def test_invalid_body_is_refused_with_exit_3_naming_fields(
    cli_env: dict[str, str],
) -> None:
    """The server's 400 is shown with every field at fault; exit 3."""
    result = traceloom(cli_env, "run", *MISSING_REPO, "--servers", "0")

    assert result.exit_code == EXIT_UNREACHABLE
    assert "400" in result.output
    assert "testPattern" in result.output
    assert "serverCount" in result.output


def test_a_wrong_key_is_refused_with_exit_3(cli_env: dict[str, str]) -> None:
    """401 from the server: exit 3, saying so."""
    env = {**cli_env, "TRACELOOM_API_KEY": "tlk_" + "x" * 43}

    result = traceloom(env, "run", *MISSING_REPO, *PATTERN)

    assert result.exit_code == EXIT_UNREACHABLE
    assert "401" in result.output


def test_an_unreachable_server_exits_3(cli_env: dict[str, str]) -> None:
    """Nothing listening: the command retries, then exits 3."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}"

    result = traceloom(
        cli_env, "runs", "list", "--url", closed, "--api-key", "tlk_" + "x" * 43
    )

    assert result.exit_code == EXIT_UNREACHABLE
    assert "cannot reach" in result.output


def test_missing_url_is_a_usage_error(cli_env: dict[str, str]) -> None:
    """Without --url or TRACELOOM_URL the command says what is missing; exit 2."""
    env = {**cli_env, "TRACELOOM_URL": ""}

    result = traceloom(env, "runs", "list")

    assert result.exit_code == 2
    assert "--url" in result.output


@pytest.mark.parametrize(
    ("content", "reason"),
    [(None, "No such file"), (b"\xff\xfe{", "cannot read")],
    ids=["missing", "not-utf8"],
)
def test_an_unreadable_body_file_is_a_usage_error(
    cli_env: dict[str, str], tmp_path: Path, content: bytes | None, reason: str
) -> None:
    """A --body file that cannot be read is named, without a traceback; exit 2."""
    path = tmp_path / "body.json"
    if content is not None:
        path.write_bytes(content)

    result = traceloom(cli_env, "run", "--body", str(path))

    assert result.exit_code == EXIT_RUN_ERRORED
    assert reason in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("TRACELOOM_MAX_SERVER_COUNT", "abc", "not a valid whole number"),
        ("TRACELOOM_MAX_SERVER_COUNT", "0", "must be above 0"),
        ("TRACELOOM_LOCAL_MAX_HOSTS", "-1", "must be above 0"),
        ("TRACELOOM_POLL_INTERVAL_S", "0", "must be above 0"),
        ("TRACELOOM_POLL_INTERVAL_S", "nan", "must be above 0"),
        ("TRACELOOM_CLONE_TIMEOUT_S", "inf", "must be above 0"),
        ("TRACELOOM_POLL_INTERVAL_S", "1e17", "must be at most 60"),
        ("TRACELOOM_ALLOW_LOCAL_REPOS", "maybe", "not a valid boolean"),
    ],
)
def test_serve_refuses_a_wrong_setting_naming_it(
    tmp_path: Path, variable: str, value: str, reason: str
) -> None:
    """A setting no control plane can work with stops serve at once; exit 2."""
    result = traceloom(
        {variable: value}, "serve", "--data-dir", str(tmp_path / "d"), "--port", "0"
    )

    assert result.exit_code == EXIT_RUN_ERRORED
    assert variable in result.output
    assert reason in result.output


def test_serve_says_when_its_port_is_taken(tmp_path: Path) -> None:
    """A port in use is one clear line, not a traceback; exit 2."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = traceloom(
            {}, "serve", "--data-dir", str(tmp_path / "d"), "--port", str(port)
        )

    assert result.exit_code == EXIT_RUN_ERRORED
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


def test_runs_list_filters_and_pages(cli_env: dict[str, str]) -> None:
    """Runs are listed newest first; a cursor leads to the next page."""
    ids = [
        _run_id(traceloom(cli_env, "run", *MISSING_REPO, *PATTERN, "--name", f"n{i}"))
        for i in range(3)
    ]

    first = traceloom(cli_env, "runs", "list", "--limit", "2")
    cursor = first.stdout.splitlines()[-1].split()[-1]
    second = traceloom(cli_env, "runs", "list", "--limit", "2", "--cursor", cursor)
    named = traceloom(cli_env, "runs", "list", "--name", "n1", "--json")

    listed = [line.split()[0] for line in first.stdout.splitlines()[:2]]
    assert listed == sorted(ids, reverse=True)[:2]
    assert second.stdout.split()[0] == min(ids)
    assert [r["id"] for r in json.loads(named.stdout)["runs"]] == [ids[1]]


def test_cancelling_a_finished_run_exits_3_with_the_reason(
    cli_env: dict[str, str],
) -> None:
    """The server's 409 reaches the user."""
    started = traceloom(cli_env, "run", *MISSING_REPO, *PATTERN, "--wait")

    result = traceloom(cli_env, "runs", "cancel", _run_id(started))

    assert result.exit_code == EXIT_UNREACHABLE
    assert "409" in result.output
    assert "already finished" in result.output


def test_keys_create_list_and_revoke(server: LiveServer, settings: Settings) -> None:
    """Keys made in the data folder work; listed without secrets; revoked, refused."""
    data = ["--data-dir", str(settings.data_dir)]
    created = traceloom(
        {}, "keys", "create", "--name", "ci", "--scope", "runs:read", *data
    )
    secret = created.stdout.splitlines()[-1]
    env = {"TRACELOOM_URL": server.url, "TRACELOOM_API_KEY": secret}

    before = traceloom(env, "runs", "list")
    listing = traceloom({}, "keys", "list", *data, "--json")
    key_id = json.loads(listing.stdout)["keys"][0]["id"]
    revoked = traceloom({}, "keys", "revoke", key_id, *data)
    after = traceloom(env, "runs", "list")
    table = traceloom({}, "keys", "list", *data)

    assert created.exit_code == EXIT_OK
    assert before.exit_code == EXIT_OK
    assert secret not in listing.stdout
    assert secret not in table.stdout
    assert json.loads(listing.stdout)["keys"][0]["lastUsedAt"]
    assert revoked.exit_code == EXIT_OK
    assert after.exit_code == EXIT_UNREACHABLE
    assert "revoked" in table.stdout


def test_revoking_an_unknown_key_is_a_usage_error(settings: Settings) -> None:
    """No such key id: exit 2 naming it."""
    traceloom({}, "keys", "create", "--name", "x", "--data-dir", str(settings.data_dir))
    result = traceloom(
        {}, "keys", "revoke", "key_nope", "--data-dir", str(settings.data_dir)
    )

    assert result.exit_code == 2
    assert "key_nope" in result.output


@pytest.mark.parametrize("command", [["keys", "list"], ["keys", "revoke", "key_x"]])
def test_a_data_dir_without_a_database_is_a_usage_error(
    tmp_path: Path, command: list[str]
) -> None:
    """A mistyped --data-dir is named, and no empty database is left there."""
    typo = tmp_path / "no-such-dir"

    result = traceloom({}, *command, "--data-dir", str(typo))

    assert result.exit_code == 2
    assert "no TraceLoom database" in result.output
    assert not typo.exists()


def test_an_unreadable_operator_password_file_is_a_usage_error(
    tmp_path: Path,
) -> None:
    """A missing password file is one clear line, not a traceback; exit 2."""
    result = traceloom(
        {}, "serve", "--data-dir", str(tmp_path / "d"), "--port", "0",
        "--operator-password-file", str(tmp_path / "missing"),
    )  # fmt: skip

    assert result.exit_code == 2
    assert "cannot be read" in result.output
    assert "Traceback" not in result.output


def test_an_api_key_that_cannot_be_a_header_is_a_usage_error(
    cli_env: dict[str, str],
) -> None:
    """A control character in the key is refused before any request; exit 2."""
    result = traceloom({**cli_env, "TRACELOOM_API_KEY": "tlk_\x01abc"}, "runs", "list")

    assert result.exit_code == 2
    assert "visible ASCII" in result.output
    assert "Traceback" not in result.output


@pytest.mark.e2e
def test_waiting_on_a_passing_run_exits_0_and_writes_junit(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """Passed with one flaky test: exit 0, progress lines, JUnit matching counts."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/a.spec.ts": spec(("adds", "expect(1 + 1).toBe(2);")),
                "tests/b.spec.ts": spec(FLAKY).replace(
                    "\ntest(", f"\n{RETRY_ONCE}test(", 1
                ),
            }
        ),
    )
    junit = tmp_path / "out" / "junit.xml"
    args = ["--repo", str(repo), "--branch", "main", *PATTERN, "--servers", "2"]

    result = traceloom(
        cli_env, "run", *args, "--wait", "--poll-interval", "0.3", "--junit", str(junit)
    )
    strict = traceloom(cli_env, "run", *args, "--wait", "--fail-on-flaky")

    assert result.exit_code == EXIT_OK, result.output
    assert "passed: 2/2 tests done, 0 failed" in result.stderr
    # The first host lists; the second, which starts at once, runs both.
    assert "(shard 0 passed 0/0, shard 1 passed 2/2)" in result.stderr
    assert "2 tests, 1 passed, 0 failed, 1 flaky" in result.stdout
    suites = ET.parse(junit).getroot()  # noqa: S314 - the file the CLI just wrote
    assert (suites.get("tests"), suites.get("failures"), suites.get("errors")) == (
        "2",
        "0",
        "0",
    )
    flaky = suites.find(".//testcase[@name='flaky until retried']")
    assert flaky is not None
    assert flaky.find("flakyFailure") is not None
    assert flaky.find("failure") is None
    assert strict.exit_code == EXIT_TESTS_FAILED, strict.output


@pytest.mark.e2e
def test_failed_tests_exit_1_and_rerun_runs_only_them(
    cli_env: dict[str, str], tmp_path: Path
) -> None:
    """A failing test: exit 1; ``runs rerun --wait`` runs just it, exit 1 again."""
    repo = make_repo(
        tmp_path / "repo",
        tiny_suite(
            {
                "tests/a.spec.ts": spec(
                    ("passes", "expect(1).toBe(1);"), ("fails", "expect(1).toBe(2);")
                )
            }
        ),
    )
    junit = tmp_path / "junit.xml"

    first = traceloom(
        cli_env,
        "run", "--repo", str(repo), "--branch", "main", *PATTERN,
        "--wait", "--junit", str(junit),
    )  # fmt: skip
    rerun = traceloom(cli_env, "runs", "rerun", _run_id(first), "--wait")

    assert first.exit_code == EXIT_TESTS_FAILED, first.output
    assert "failed    tests/a.spec.ts:3 fails" in first.stdout
    root = ET.parse(junit).getroot()  # noqa: S314 - the file the CLI just wrote
    failure = root.find(".//testcase[@name='fails']/failure")
    assert failure is not None
    assert "toBe" in (failure.text or "")
    assert rerun.exit_code == EXIT_TESTS_FAILED, rerun.output
    assert "1 tests, 0 passed, 1 failed" in rerun.stdout


@pytest.mark.parametrize(
    ("status", "flaky", "fail_on_flaky", "code"),
    [
        ("passed", 0, False, EXIT_OK),
        ("passed", 2, False, EXIT_OK),
        ("passed", 2, True, EXIT_TESTS_FAILED),
        ("passed", 0, True, EXIT_OK),
        ("failed", 0, False, EXIT_TESTS_FAILED),
        ("errored", 0, False, EXIT_RUN_ERRORED),
        ("timed_out", 0, False, EXIT_RUN_ERRORED),
        ("cancelled", 0, False, EXIT_RUN_ERRORED),
    ],
)
def test_exit_code_tells_the_verdict(
    status: str, flaky: int, fail_on_flaky: bool, code: int
) -> None:
    """The documented exit code for each verdict."""
    from controlplane.cli import exit_code_for

    run: dict[str, Any] = {"status": status, "counts": {"flaky": flaky}}

    assert exit_code_for(run, fail_on_flaky=fail_on_flaky) == code
