"""Where notifications go: the operator's webhooks file and GitHub settings.

``TRACELOOM_WEBHOOKS_FILE`` names a YAML file::

    webhooks:
      - name: ci-events                 # shown in run records; unique
        url: https://hooks.example.com/traceloom
        secretFile: /run/secrets/hook   # or secret: "...": signs each body
        format: traceloom               # or slack (an incoming webhook)
        when: finished                  # or failed: failed, errored, timed out

The file is read once at start; a wrong file stops the start with the field
that is wrong. URLs and secrets are never logged or stored with a run (a
Slack incoming-webhook URL is itself a secret): records name the webhook.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import attrs
import yaml

from controlplane.errors import TraceLoomError


class WebhookFormat(enum.StrEnum):
    TRACELOOM = "traceloom"
    SLACK = "slack"


class ConfigError(TraceLoomError, ValueError):
    """The webhooks file is wrong; the message names the entry and field."""


@attrs.frozen(kw_only=True)
class WebhookTarget:
    name: str
    url: str = attrs.field(repr=False)
    secret: str | None = attrs.field(repr=False, default=None)
    format: WebhookFormat = WebhookFormat.TRACELOOM
    only_failures: bool = False

    @property
    def shown_url(self) -> str:
        """Scheme and host only: the path and query may carry a secret."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.hostname or ''}"


# Not "on": YAML reads a bare ``on`` as true.
_KEYS = frozenset({"name", "url", "secret", "secretFile", "format", "when"})


def load_webhooks(path: Path | None) -> list[WebhookTarget]:
    """The webhooks of the file at ``path`` (none when there is no file)."""
    if path is None:
        return []
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read the webhooks file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("webhooks", []), list):
        raise ConfigError(f"{path}: expected a 'webhooks:' list")
    targets = [
        _target(entry, f"{path}: webhooks[{i}]", path.parent)
        for i, entry in enumerate(data.get("webhooks", []))
    ]
    names = [t.name for t in targets]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ConfigError(f"{path}: webhook names must be unique: {duplicated}")
    return targets


def _target(entry: Any, where: str, base: Path) -> WebhookTarget:
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping")
    unknown = sorted(str(key) for key in set(entry) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}")
    name, url = entry.get("name"), entry.get("url")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ConfigError(f"{where}.name: a name of 1 to 100 characters is required")
    where = f"{where} ({name})"
    if not isinstance(url, str) or urlsplit(url).scheme not in ("http", "https"):
        raise ConfigError(f"{where}.url: an http:// or https:// URL is required")
    if not urlsplit(url).hostname:
        raise ConfigError(f"{where}.url: has no host")
    try:
        kind = WebhookFormat(entry.get("format", "traceloom"))
    except ValueError:
        raise ConfigError(f"{where}.format: must be traceloom or slack") from None
    when = entry.get("when", "finished")
    if when not in ("finished", "failed"):
        raise ConfigError(f"{where}.when: must be finished or failed")
    return WebhookTarget(
        name=name.strip(),
        url=url,
        secret=_secret(entry, where, base),
        format=kind,
        only_failures=when == "failed",
    )


def _secret(entry: dict[str, Any], where: str, base: Path) -> str | None:
    if "secret" in entry and "secretFile" in entry:
        raise ConfigError(f"{where}: give secret or secretFile, not both")
    if "secretFile" in entry:
        secret_path = base / str(entry["secretFile"])
        try:
            secret = secret_path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{where}.secretFile: cannot read it: {exc}") from None
    else:
        given = entry.get("secret")
        if given is None:
            return None
        if not isinstance(given, str):
            raise ConfigError(f"{where}.secret: must be a string")
        secret = given
    if len(secret) < 16:
        raise ConfigError(f"{where}: the signing secret needs 16 characters or more")
    return secret
