"""Where a suite lives in its repository: its Playwright config and package.

The config that governs the matched spec files is the nearest
``playwright.config.*`` above them; Playwright runs from its folder. The
package is the nearest ``package.json`` at or above that folder; its
dependencies are installed from the nearest lockfile at or above it, which
is the package's own or, in a monorepo, the lockfile of the workspace the
package belongs to.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

import attrs
import yaml

from controlplane.engine import packagemanagers
from controlplane.engine.discovery import glob_to_regex
from controlplane.engine.packagemanagers import PackageManager
from controlplane.errors import InvalidRequest, SourceError

CONFIG_NAMES = (
    "playwright.config.ts",
    "playwright.config.js",
    "playwright.config.mts",
    "playwright.config.mjs",
    "playwright.config.cts",
    "playwright.config.cjs",
)


@attrs.frozen(kw_only=True)
class SuiteLayout:
    """Paths relative to the repository root, "" meaning the root itself."""

    config_dir: str
    config_file: str
    # Where the lockfile is: the suite's package, or its workspace's root.
    package_dir: str
    # The suite's own package.json (a workspace member, or package_dir).
    member_dir: str
    manager: PackageManager

    @property
    def lockfile(self) -> str:
        return self.manager.lockfile

    @property
    def package_manager(self) -> str:
        return self.manager.name


def _ancestors(rel_file: str) -> list[str]:
    parents = [p.as_posix() for p in PurePosixPath(rel_file).parents]
    return ["" if p == "." else p for p in parents]


def _nearest_config(root: Path, rel_file: str) -> tuple[str, str] | None:
    for folder in _ancestors(rel_file):
        for name in CONFIG_NAMES:
            if (root / folder / name).is_file():
                return folder, name
    return None


def _folders_up(folder: str) -> list[str]:
    """``folder`` and each folder above it, up to the root ("")."""
    return _ancestors(f"{folder}/x" if folder else "x")


def find_layout(root: Path, spec_files: list[str]) -> SuiteLayout:
    """The one config governing ``spec_files``, and the package that holds it."""
    configs = {f: _nearest_config(root, f) for f in spec_files}
    missing = [f for f, c in configs.items() if c is None]
    if missing:
        raise SourceError(
            f"no playwright.config.* above {missing[0]}"
            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    distinct = sorted({c for c in configs.values() if c is not None})
    if len(distinct) > 1:
        shown = ", ".join(repr(d or ".") for d, _ in distinct)
        raise SourceError(
            f"the pattern matches files of several Playwright configs ({shown});"
            " narrow testPattern to one of them"
        )
    config_dir, config_file = distinct[0]
    member = next(
        (f for f in _folders_up(config_dir) if (root / f / "package.json").is_file()),
        None,
    )
    if member is None:
        raise SourceError(f"no package.json at or above {config_dir or '.'}")
    package_dir = next(
        (f for f in _folders_up(member) if packagemanagers.lockfiles_in(root / f)),
        None,
    )
    if package_dir is None:
        raise SourceError(
            f"{member or '.'}/package.json has no lockfile; commit the lockfile"
            " (package-lock.json, yarn.lock or pnpm-lock.yaml) so dependencies"
            " resolve the same way every run"
        )
    manager = packagemanagers.detect(root / package_dir, package_dir)
    if member != package_dir and not in_workspace(
        root / package_dir, manager.name, _relative(member, package_dir)
    ):
        raise SourceError(
            f"{member}/package.json has no lockfile, and the lockfile above it"
            f" ({package_dir or '.'}/{manager.lockfile}) is not of a workspace"
            f" that includes {member}; commit a lockfile for {member}"
        )
    return SuiteLayout(
        config_dir=config_dir,
        config_file=config_file,
        package_dir=package_dir,
        member_dir=member,
        manager=manager,
    )


def _relative(folder: str, base: str) -> str:
    return folder[len(base) + 1 :] if base else folder


def workspace_patterns(package_dir: Path, manager: str) -> list[str]:
    """The workspace globs of the package at ``package_dir`` ([] if none)."""
    raw: Any
    if manager == "pnpm":
        path = package_dir / "pnpm-workspace.yaml"
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise SourceError(f"pnpm-workspace.yaml is not valid YAML: {exc}") from None
        raw = data.get("packages") if isinstance(data, dict) else None
    else:
        try:
            data = json.loads((package_dir / "package.json").read_text("utf-8"))
        except (OSError, ValueError):
            return []
        raw = data.get("workspaces") if isinstance(data, dict) else None
        if isinstance(raw, dict):
            raw = raw.get("packages")
    if not isinstance(raw, list):
        return []
    return [str(p) for p in raw if isinstance(p, str)]


def in_workspace(package_dir: Path, manager: str, member: str) -> bool:
    """Whether ``member`` (relative to the workspace root) is one of its packages."""
    included = excluded = False
    for pattern in workspace_patterns(package_dir, manager):
        negated = pattern.startswith("!")
        glob = pattern.lstrip("!").removeprefix("./").rstrip("/")
        try:
            hit = bool(glob) and bool(glob_to_regex(glob).match(member))
        except InvalidRequest:
            continue
        if hit and negated:
            excluded = True
        elif hit:
            included = True
    return included and not excluded
