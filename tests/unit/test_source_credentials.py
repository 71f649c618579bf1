"""Credentials in a git URL are kept apart from the run record."""

from __future__ import annotations

import pytest

from controlplane.engine.source import (
    is_local_repo,
    split_credentials,
    url_credential_problem,
    with_credentials,
)


@pytest.mark.parametrize(
    ("url", "clean", "credential"),
    [
        ("https://u:tok@git.example/r.git", "https://git.example/r.git", "u:tok"),
        ("https://tok@git.example/r.git", "https://git.example/r.git", "tok"),
        ("http://u:p%40ss@127.0.0.1:8/x.git", "http://127.0.0.1:8/x.git", "u:p%40ss"),
        ("https://git.example/r.git", "https://git.example/r.git", None),
        ("/srv/repos/suite", "/srv/repos/suite", None),
        ("ssh://git@git.example/r.git", "ssh://git@git.example/r.git", None),
        (
            "https://git.example/r.git?private_token=t0k",
            "https://git.example/r.git",
            "?private_token=t0k",
        ),
        ("https://u:a@b@git.example/r.git", "https://git.example/r.git", "u:a@b"),
    ],
)
def test_split_keeps_the_url_and_moves_the_secret(
    url: str, clean: str, credential: str | None
) -> None:
    """User information and query leave the URL; ssh user names are not secrets."""
    assert split_credentials(url) == (clean, credential)


def test_credentials_go_back_for_the_clone_only() -> None:
    """Joining them again gives the URL the clone needs."""
    clean, credential = split_credentials("https://u:tok@git.example/r.git?x=1")

    assert with_credentials(clean, credential) == "https://u:tok@git.example/r.git?x=1"
    assert with_credentials(clean, None) == clean


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("/srv/repos/suite", True),
        ("relative/path", True),
        ("file:///srv/repos/suite", True),
        ("https://git.example/r.git", False),
        ("ssh://git@git.example/r.git", False),
        ("git@git.example:org/r.git", False),
    ],
)
def test_local_repositories_are_recognised(url: str, local: bool) -> None:
    """Paths and file:// are local; URLs and scp-like addresses are not."""
    assert is_local_repo(url) is local


@pytest.mark.parametrize(
    ("url", "refused"),
    [
        ("https://u:tok@git.example/r.git", False),
        ("ssh://git@git.example/r.git", False),
        ("git@git.example:org/r.git", False),
        ("/srv/repos/suite", False),
        ("ssh://git:pw@git.example/r.git", True),
        ("git://u:pw@git.example/r.git", True),
        ("u:pw@git.example:org/r.git", True),
    ],
)
def test_only_http_urls_may_carry_a_password(url: str, refused: bool) -> None:
    """A password TraceLoom could not keep out of the run record is refused."""
    assert (url_credential_problem(url) is not None) is refused
