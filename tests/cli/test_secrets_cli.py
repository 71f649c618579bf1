"""``traceloom secrets`` against a real server: values go in, never come out."""

from __future__ import annotations

from click.testing import CliRunner, Result

from controlplane.cli import EXIT_OK, EXIT_UNREACHABLE, main
from tests.api.live import LiveServer

VALUE = "cli-s3cret-value-91"


def traceloom(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), env=env, input=input)


def test_set_reads_the_value_from_stdin_and_list_never_prints_it(
    cli_env: dict[str, str],
) -> None:
    """One trailing newline ends the input; the listing shows names and scopes."""
    repo = "https://git.example.com/shop.git"

    set_global = traceloom(cli_env, "secrets", "set", "shop-token", input=VALUE + "\n")
    set_repo = traceloom(
        cli_env, "secrets", "set", "shop-token", "--scope", repo, input=VALUE
    )
    listing = traceloom(cli_env, "secrets", "list")

    assert set_global.exit_code == EXIT_OK, set_global.output
    assert set_global.stdout == "Set secret shop-token for scope *.\n"
    assert set_repo.stdout == (
        "Set secret shop-token for scope https://git.example.com/shop.\n"
    )
    lines = listing.stdout.splitlines()
    assert lines[0].split() == ["NAME", "UPDATED", "SCOPE"]
    assert [line.split()[::2] for line in lines[1:]] == [
        ["shop-token", "*"],
        ["shop-token", "https://git.example.com/shop"],
    ]
    assert VALUE not in listing.output + set_global.output + set_repo.output


def test_the_stored_value_is_the_input_without_its_last_newline(
    cli_env: dict[str, str], server: LiveServer
) -> None:
    from controlplane.api.appkeys import SECRETS

    traceloom(cli_env, "secrets", "set", "multi", input="line one\nline two\n")

    stored = server.call(server.app[SECRETS].resolve("r", ["multi"]))
    assert stored == {"multi": "line one\nline two"}


def test_delete_then_delete_again_is_refused_with_exit_3(
    cli_env: dict[str, str],
) -> None:
    traceloom(cli_env, "secrets", "set", "tmp-secret", input=VALUE)

    deleted = traceloom(cli_env, "secrets", "delete", "tmp-secret")
    again = traceloom(cli_env, "secrets", "delete", "tmp-secret")

    assert deleted.exit_code == EXIT_OK, deleted.output
    assert deleted.stdout == "Deleted secret tmp-secret for scope *.\n"
    assert again.exit_code == EXIT_UNREACHABLE
    assert "was refused (404)" in again.output


def test_a_too_short_value_is_refused_naming_the_field(
    cli_env: dict[str, str],
) -> None:
    result = traceloom(cli_env, "secrets", "set", "short", input="abc")

    assert result.exit_code == EXIT_UNREACHABLE
    assert "value: must be at least 4 characters" in result.output
