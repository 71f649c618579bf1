"""Where a suite lives in its repository: its Playwright config and package."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import attrs

from controlplane.errors import SourceError

CONFIG_NAMES = (
    "playwright.config.ts",
    "playwright.config.js",
    "playwright.config.mts",
    "playwright.config.mjs",
    "playwright.config.cts",
    "playwright.config.cjs",
)
LOCKFILES = {
    "package-lock.json": "npm",
    "npm-shrinkwrap.json": "npm",
    "yarn.lock": "yarn",
    "pnpm-lock.yaml": "pnpm",
}


@attrs.frozen(kw_only=True)
class SuiteLayout:
    """Paths relative to the repository root, "" meaning the root itself."""

    config_dir: str
    package_dir: str
    lockfile: str
    package_manager: str


def _ancestors(rel_file: str) -> list[str]:
    parents = [p.as_posix() for p in PurePosixPath(rel_file).parents]
    return ["" if p == "." else p for p in parents]


def _nearest_config(root: Path, rel_file: str) -> str | None:
    for folder in _ancestors(rel_file):
        if any((root / folder / name).is_file() for name in CONFIG_NAMES):
            return folder
    return None


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
        shown = ", ".join(repr(d or ".") for d in distinct)
        raise SourceError(
            f"the pattern matches files of several Playwright configs ({shown});"
            " narrow testPattern to one of them"
        )
    config_dir = distinct[0]
    for folder in _ancestors(f"{config_dir}/x" if config_dir else "x"):
        package = root / folder / "package.json"
        if not package.is_file():
            continue
        for name, manager in LOCKFILES.items():
            if (root / folder / name).is_file():
                return SuiteLayout(
                    config_dir=config_dir,
                    package_dir=folder,
                    lockfile=name,
                    package_manager=manager,
                )
        raise SourceError(
            f"{(folder or '.')}/package.json has no lockfile; commit"
            " package-lock.json so dependencies resolve the same way every run"
        )
    raise SourceError(f"no package.json at or above {config_dir or '.'}")
