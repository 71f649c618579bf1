"""``traceloom.yml`` at the repository root: what a request body cannot say.

Optional. So far it holds ``env``: plain (non-secret) environment variables
for the tests, e.g. a feature flag. A malformed file ends the run errored
with the line at fault.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs
import yaml

from controlplane.errors import SourceError

FILE_NAME = "traceloom.yml"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_RESERVED_PREFIXES = ("TRACELOOM_", "PLAYWRIGHT_BLOB_")
# Set by the host or the harness; a suite overriding them would break the run.
_RESERVED_NAMES = frozenset(
    {"PATH", "HOME", "CI", "PLAYWRIGHT_BROWSERS_PATH", "PW_TEST_HTML_REPORT_OPEN"}
)
_KNOWN_KEYS = frozenset({"env"})


class _Loader(yaml.SafeLoader):
    """SafeLoader that keeps numbers and dates as the text written."""


def _as_written(loader: _Loader, node: yaml.Node) -> str:
    """Keep a number or date as written: 1.10 is not 1.1, 010 is not 8."""
    assert isinstance(node, yaml.ScalarNode)
    return loader.construct_scalar(node)


for _tag in ("int", "float", "timestamp"):
    _Loader.add_constructor(f"tag:yaml.org,2002:{_tag}", _as_written)


@attrs.frozen
class RepoConfig:
    env: dict[str, str] = attrs.Factory(dict)


def load(root: Path) -> RepoConfig:
    path = root / FILE_NAME
    if not path.is_file():
        return RepoConfig()
    try:
        text = path.read_text(encoding="utf-8")
        data: Any = yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader
    except yaml.MarkedYAMLError as exc:
        line = exc.problem_mark.line + 1 if exc.problem_mark else "?"
        raise SourceError(f"{FILE_NAME} line {line}: {exc.problem}") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SourceError(f"{FILE_NAME}: {exc}") from None
    if data is None:
        return RepoConfig()
    if not isinstance(data, dict):
        raise SourceError(f"{FILE_NAME}: the top level must be a mapping")
    unknown = sorted(set(data) - _KNOWN_KEYS)
    if unknown:
        raise SourceError(f"{FILE_NAME}: unknown key {unknown[0]!r}")
    raw_env = data.get("env")
    return RepoConfig(env=_env({} if raw_env is None else raw_env))


def _env(raw: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise SourceError(f"{FILE_NAME}: env must be a mapping of names to values")
    env: dict[str, str] = {}
    for name, value in raw.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise SourceError(f"{FILE_NAME}: env name {name!r} is not a valid variable")
        if name.startswith(_RESERVED_PREFIXES) or name in _RESERVED_NAMES:
            raise SourceError(f"{FILE_NAME}: env name {name!r} is reserved")
        if isinstance(value, dict | list) or value is None:
            raise SourceError(f"{FILE_NAME}: env {name} must be a plain value")
        env[name] = str(value).lower() if isinstance(value, bool) else str(value)
    return env
