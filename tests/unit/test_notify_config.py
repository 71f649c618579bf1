"""The webhooks file: what it may say, and a clear error for what it may not."""

from __future__ import annotations

from pathlib import Path

import pytest

from controlplane.notify.config import ConfigError, WebhookFormat, load_webhooks

SECRET = "0123456789abcdef-secret"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "webhooks.yml"
    path.write_text(text)
    return path


def test_no_file_means_no_webhooks() -> None:
    """Without TRACELOOM_WEBHOOKS_FILE nothing is sent."""
    assert load_webhooks(None) == []


def test_a_file_lists_signed_slack_and_failure_hooks(tmp_path: Path) -> None:
    """Each entry becomes a target; a secret file is read relative to the file."""
    (tmp_path / "secret").write_text(SECRET + "\n")
    path = write(
        tmp_path,
        "webhooks:\n"
        "  - name: ci\n    url: https://hooks.example.com/a\n    secretFile: secret\n"
        "  - name: slack\n    url: https://hooks.slack.com/services/T/B/X\n"
        "    format: slack\n    when: failed\n",
    )

    ci, slack = load_webhooks(path)

    assert (ci.name, ci.secret, ci.format, ci.only_failures) == (
        "ci",
        SECRET,
        WebhookFormat.TRACELOOM,
        False,
    )
    assert (slack.format, slack.only_failures, slack.secret) == (
        WebhookFormat.SLACK,
        True,
        None,
    )
    assert slack.shown_url == "https://hooks.slack.com"
    assert "X" not in repr(slack)


@pytest.mark.parametrize(
    ("entry", "complaint"),
    [
        ("name: a\n    url: ftp://x/y", "url"),
        ("name: a\n    url: https:///nohost", "no host"),
        ("url: https://x/y", "name"),
        ("name: a\n    url: https://x/y\n    format: teams", "format"),
        ("name: a\n    url: https://x/y\n    when: sometimes", "when"),
        ("name: a\n    url: https://x/y\n    on: failed", "unknown keys"),
        ("name: a\n    url: https://x/y\n    secret: short", "16 characters"),
        ("name: a\n    url: https://x/y\n    secretFile: missing", "secretFile"),
    ],
)
def test_a_wrong_entry_stops_the_start_naming_it(
    tmp_path: Path, entry: str, complaint: str
) -> None:
    """The error names the entry and the field that is wrong."""
    path = write(tmp_path, f"webhooks:\n  - {entry}\n")

    with pytest.raises(ConfigError, match=complaint) as caught:
        load_webhooks(path)

    assert "webhooks[0]" in str(caught.value)


def test_names_must_be_unique_and_the_file_valid_yaml(tmp_path: Path) -> None:
    """Two hooks of one name, or a file that is not YAML, are refused."""
    twice = write(
        tmp_path,
        "webhooks:\n  - {name: a, url: 'https://x/1'}\n  - {name: a, url: 'https://x/2'}\n",
    )
    with pytest.raises(ConfigError, match="unique"):
        load_webhooks(twice)

    broken = write(tmp_path, "webhooks: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_webhooks(broken)
