"""Which package manager and release a suite uses, from its own files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from controlplane.engine import packagemanagers, suite
from controlplane.engine.packagemanagers import PackageManager, install_command
from controlplane.errors import SourceError

BERRY_LOCK = '__metadata:\n  version: {v}\n  cacheKey: 10c0\n\n"a@npm:1.0.0":\n'
CLASSIC_LOCK = '# yarn lockfile v1\n\n\na@^1.0.0:\n  version "1.0.0"\n'


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def package(**fields: object) -> str:
    return json.dumps({"name": "s", "private": True, **fields})


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"package-lock.json": "{}"}, ("npm", None, "package-lock.json"), id="npm"
        ),
        pytest.param(
            {"npm-shrinkwrap.json": "{}"},
            ("npm", None, "npm-shrinkwrap.json"),
            id="shrinkwrap",
        ),
        pytest.param(
            {"yarn.lock": CLASSIC_LOCK}, ("yarn", "1.22.22", "yarn.lock"), id="classic"
        ),
        pytest.param(
            {"yarn.lock": BERRY_LOCK.format(v=8)},
            ("yarn", "4.5.3", "yarn.lock"),
            id="berry-8",
        ),
        pytest.param(
            {"yarn.lock": BERRY_LOCK.format(v=10)},
            ("yarn", "4.18.1", "yarn.lock"),
            id="berry-10",
        ),
        pytest.param(
            {"yarn.lock": BERRY_LOCK.format(v=6)},
            ("yarn", "3.8.7", "yarn.lock"),
            id="berry-6",
        ),
        pytest.param(
            {
                "yarn.lock": BERRY_LOCK.format(v=6),
                ".yarnrc.yml": "yarnPath: .yarn/releases/yarn-3.6.4.cjs\n",
            },
            ("yarn", "3.6.4", "yarn.lock"),
            id="yarn-path",
        ),
        pytest.param(
            {"pnpm-lock.yaml": "lockfileVersion: '9.0'\n"},
            ("pnpm", "9.15.9", "pnpm-lock.yaml"),
            id="pnpm-9",
        ),
        pytest.param(
            {"pnpm-lock.yaml": "lockfileVersion: '6.0'\n"},
            ("pnpm", "8.15.9", "pnpm-lock.yaml"),
            id="pnpm-8",
        ),
        pytest.param(
            {"pnpm-lock.yaml": "lockfileVersion: 5.4\n"},
            ("pnpm", "7.33.7", "pnpm-lock.yaml"),
            id="pnpm-7",
        ),
    ],
)
def test_lockfile_says_which_manager_and_release(
    tmp_path: Path, files: dict[str, str], expected: tuple[str, str | None, str]
) -> None:
    """Without packageManager, the lockfile's format picks the release."""
    write(tmp_path, {"package.json": package(), **files})

    found = packagemanagers.detect(tmp_path)

    assert (found.name, found.version, found.lockfile) == expected


def test_package_manager_field_pins_the_release_and_its_hash(tmp_path: Path) -> None:
    """packageManager wins over the lockfile's default, hash kept for checking."""
    digest = "ab" * 32
    write(
        tmp_path,
        {
            "package.json": package(packageManager=f"pnpm@10.4.1+sha256.{digest}"),
            "pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
        },
    )

    found = packagemanagers.detect(tmp_path)

    assert found == PackageManager(
        name="pnpm",
        version="10.4.1",
        lockfile="pnpm-lock.yaml",
        digest=f"sha256.{digest}",
    )
    assert found.registry_package == "pnpm@10.4.1"


def test_package_manager_field_chooses_among_several_lockfiles(tmp_path: Path) -> None:
    """With a yarn.lock and a package-lock.json, packageManager says which."""
    write(
        tmp_path,
        {
            "package.json": package(packageManager="yarn@1.22.19"),
            "yarn.lock": CLASSIC_LOCK,
            "package-lock.json": "{}",
        },
    )

    found = packagemanagers.detect(tmp_path)

    assert (found.flavour, found.lockfile) == ("yarn-classic", "yarn.lock")
    assert found.registry_package == "yarn@1.22.19"


@pytest.mark.parametrize(
    ("files", "message"),
    [
        pytest.param(
            {"package.json": package(), "yarn.lock": "", "package-lock.json": "{}"},
            "has lockfiles of npm and yarn",
            id="two-lockfiles",
        ),
        pytest.param(
            {
                "package.json": package(packageManager="pnpm@9.1.0"),
                "yarn.lock": CLASSIC_LOCK,
            },
            "names pnpm in packageManager, but . has no pnpm lockfile",
            id="pinned-other",
        ),
        pytest.param(
            {"package.json": package(packageManager="bun@1.1.0"), "yarn.lock": ""},
            "packageManager bun is not supported",
            id="bun",
        ),
        pytest.param(
            {"package.json": package(packageManager="yarn"), "yarn.lock": ""},
            "is not NAME@X.Y.Z",
            id="no-version",
        ),
        pytest.param(
            {"package.json": "[1]", "yarn.lock": ""},
            "must hold a JSON object",
            id="not-object",
        ),
        pytest.param(
            {"package.json": package(), "pnpm-lock.yaml": "lockfileVersion: '4.2'\n"},
            "lockfileVersion 4.2 is not one TraceLoom knows",
            id="old-pnpm",
        ),
    ],
)
def test_unclear_or_unsupported_managers_are_refused_with_the_reason(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    """Ambiguity and unknown managers end the run with what to change."""
    write(tmp_path, files)

    with pytest.raises(SourceError, match=message):
        packagemanagers.detect(tmp_path)


@pytest.mark.parametrize(
    ("manager", "flags"),
    [
        (
            PackageManager(name="npm", version=None, lockfile="x"),
            ["ci", "--ignore-scripts"],
        ),
        (
            PackageManager(name="yarn", version="1.22.22", lockfile="yarn.lock"),
            ["--frozen-lockfile", "--ignore-scripts"],
        ),
        (
            PackageManager(name="yarn", version="4.5.3", lockfile="yarn.lock"),
            ["install", "--immutable"],
        ),
        (
            PackageManager(name="pnpm", version="9.15.9", lockfile="pnpm-lock.yaml"),
            ["--frozen-lockfile", "--ignore-scripts", "--ignore-pnpmfile"],
        ),
    ],
    ids=["npm", "yarn-classic", "yarn-berry", "pnpm"],
)
def test_every_install_is_frozen_and_runs_no_scripts(
    tmp_path: Path, manager: PackageManager, flags: list[str]
) -> None:
    """Frozen to the lockfile, no install scripts, no release from the repo."""
    tool = packagemanagers.Tool(manager, tmp_path, "bin/x.cjs")

    command = install_command(
        manager, None if manager.name == "npm" else tool, tmp_path
    )

    assert all(flag in command.argv for flag in flags)
    if manager.flavour == "yarn-berry":
        assert command.env["YARN_ENABLE_SCRIPTS"] == "0"
        assert command.env["YARN_NODE_LINKER"] == "node-modules"
    if manager.name == "yarn":
        assert command.env["YARN_IGNORE_PATH"] == "1"


def test_yarnrc_loses_what_would_run_the_repositorys_code(tmp_path: Path) -> None:
    """yarnPath and plugins go; registry settings stay."""
    rc = (
        write(
            tmp_path,
            {
                ".yarnrc.yml": (
                    "yarnPath: .yarn/releases/yarn-4.1.0.cjs\n"
                    "plugins:\n  - path: .yarn/plugins/evil.cjs\n"
                    "npmRegistryServer: https://registry.example.invalid\n"
                )
            },
        )
        / ".yarnrc.yml"
    )

    packagemanagers.rewrite_yarnrc(rc)

    assert rc.read_text() == "npmRegistryServer: https://registry.example.invalid\n"


# -- where the suite is ---------------------------------------------------------

CONFIG = "export default {};\n"


def test_workspace_member_installs_from_the_workspace_root(tmp_path: Path) -> None:
    """A config in a member without a lockfile uses the root's pnpm lockfile."""
    write(
        tmp_path,
        {
            "package.json": package(),
            "pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
            "pnpm-workspace.yaml": "packages:\n  - 'apps/*'\n  - '!apps/skip'\n",
            "apps/e2e/package.json": package(),
            "apps/e2e/playwright.config.ts": CONFIG,
            "apps/e2e/tests/a.spec.ts": "",
        },
    )

    layout = suite.find_layout(tmp_path, ["apps/e2e/tests/a.spec.ts"])

    assert (layout.config_dir, layout.member_dir, layout.package_dir) == (
        "apps/e2e",
        "apps/e2e",
        "",
    )
    assert layout.config_file == "playwright.config.ts"
    assert layout.package_manager == "pnpm"


@pytest.mark.parametrize(
    ("workspaces", "member"),
    [
        ('{"workspaces": ["packages/*"]}', "tools/e2e"),
        ('{"workspaces": ["apps/*", "!apps/e2e"]}', "apps/e2e"),
        ("{}", "e2e"),
    ],
    ids=["not-listed", "negated", "no-workspaces"],
)
def test_package_outside_the_workspace_needs_its_own_lockfile(
    tmp_path: Path, workspaces: str, member: str
) -> None:
    """The root's lockfile does not install a package its workspace leaves out."""
    write(
        tmp_path,
        {
            "package.json": workspaces,
            "package-lock.json": "{}",
            f"{member}/package.json": package(),
            f"{member}/playwright.config.ts": CONFIG,
            f"{member}/a.spec.ts": "",
        },
    )

    with pytest.raises(SourceError, match=f"not of a workspace that includes {member}"):
        suite.find_layout(tmp_path, [f"{member}/a.spec.ts"])


def test_npm_workspace_member_with_yarn_style_packages_field(tmp_path: Path) -> None:
    """``workspaces: {packages: [...]}`` counts too (yarn classic's shape)."""
    write(
        tmp_path,
        {
            "package.json": '{"workspaces": {"packages": ["e2e"]}}',
            "yarn.lock": CLASSIC_LOCK,
            "e2e/package.json": package(),
            "e2e/playwright.config.js": CONFIG,
            "e2e/t.spec.js": "",
        },
    )

    layout = suite.find_layout(tmp_path, ["e2e/t.spec.js"])

    assert (layout.package_dir, layout.manager.flavour) == ("", "yarn-classic")


def test_no_lockfile_anywhere_says_which_package_lacks_one(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "e2e/package.json": package(),
            "e2e/playwright.config.ts": CONFIG,
            "e2e/a.spec.ts": "",
        },
    )

    with pytest.raises(SourceError, match=r"e2e/package.json has no lockfile"):
        suite.find_layout(tmp_path, ["e2e/a.spec.ts"])
