"""``traceloom schedules`` against a real server on a loopback port."""

from __future__ import annotations

import json

from click.testing import CliRunner, Result

from controlplane.cli import EXIT_OK, EXIT_UNREACHABLE, main
from tests.api.live import LiveServer

SOURCE = ["--repo", "/nonexistent/suite.git", "--branch", "main"]
PATTERN = ["--pattern", "tests/**/*.spec.ts"]


def traceloom(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env=env)


def test_a_schedule_is_created_listed_paused_resumed_and_deleted(
    cli_env: dict[str, str],
) -> None:
    """The whole life of a schedule from the command line."""
    created = traceloom(
        cli_env, "schedules", "create", "--name", "nightly", "--cron", "0 3 * * *",
        "--timezone", "Europe/Paris", *SOURCE, *PATTERN, "--servers", "2", "--json",
    )  # fmt: skip
    schedule = json.loads(created.stdout)
    listed = traceloom(cli_env, "schedules", "list")
    paused = traceloom(cli_env, "schedules", "pause", schedule["id"])
    resumed = traceloom(cli_env, "schedules", "resume", schedule["id"])
    deleted = traceloom(cli_env, "schedules", "delete", schedule["id"])
    after = traceloom(cli_env, "schedules", "list")

    assert created.exit_code == EXIT_OK, created.output
    assert schedule["run"]["serverCount"] == 2
    assert schedule["run"]["triggerSource"] == "schedule"
    assert schedule["timezone"] == "Europe/Paris"
    assert schedule["id"] in listed.stdout
    assert "next 20" in listed.stdout
    assert "paused" in paused.stdout
    assert "next 20" in resumed.stdout
    assert deleted.exit_code == EXIT_OK
    assert after.stdout.strip() == "No schedules."


def test_a_wrong_cron_is_refused_naming_it(cli_env: dict[str, str]) -> None:
    """The server's 400 comes back as one line naming the field; exit 3."""
    result = traceloom(
        cli_env, "schedules", "create", "--name", "x", "--cron", "every night",
        *SOURCE, *PATTERN,
    )  # fmt: skip

    assert result.exit_code == EXIT_UNREACHABLE
    assert "cron: must have 5 fields" in result.output


def test_schedules_need_the_schedules_scope(
    server: LiveServer, cli_env: dict[str, str]
) -> None:
    """A key without schedules:manage is refused (403, exit 3)."""
    env = {**cli_env, "TRACELOOM_API_KEY": server.key(scopes=("runs:read",))}

    result = traceloom(env, "schedules", "list")

    assert result.exit_code == EXIT_UNREACHABLE
    assert "403" in result.output
