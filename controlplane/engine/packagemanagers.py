"""The suite's package manager: which one, which version, how to install.

The lockfile says which manager a suite uses (``package-lock.json`` npm,
``yarn.lock`` yarn, ``pnpm-lock.yaml`` pnpm); ``packageManager`` in
``package.json`` (corepack's field) picks among several lockfiles and pins
the version, and its hash, when present, is checked. Without it, the version
follows the lockfile's format (a yarn berry lockfile's ``__metadata``, a
pnpm ``lockfileVersion``), or a release named by ``yarnPath``.

npm is the machine's own. yarn and pnpm are fetched once per version from
the npm registry (``npm pack``, which checks the registry's integrity hash)
into a tools folder of the cache, and run with the machine's Node: corepack
is not used, because it fetches yarn berry from its own site and insists on
registry signatures that mirrors do not serve.

Every install is frozen to the lockfile and runs no install scripts (they
are the suite's code, and the control plane does not run the suite's code).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import re
import shutil
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import attrs
import yaml

from controlplane.engine.commands import run_command
from controlplane.errors import SourceError
from controlplane.logs import get_logger, redact_text

log = get_logger(__name__)

LOCKFILES = {
    "package-lock.json": "npm",
    "npm-shrinkwrap.json": "npm",
    "yarn.lock": "yarn",
    "pnpm-lock.yaml": "pnpm",
}
_PACKAGE_MANAGER = re.compile(
    r"(?P<name>[a-z]+)@(?P<version>\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)"
    r"(?:\+(?P<algorithm>sha1|sha224|sha256|sha512)\.(?P<digest>[0-9a-f]+))?\Z"
)
_DIGESTS = ("sha1", "sha224", "sha256", "sha512")
_YARN_RELEASE = re.compile(r"yarn-(\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?)\.c?js\Z")
# Versions used when nothing pins one: the newest release that writes the
# lockfile format found (a newer release could rewrite it, which a frozen
# install refuses).
YARN_CLASSIC_DEFAULT = "1.22.22"
_BERRY_BY_LOCKFILE = {
    "4": "2.4.2",
    "5": "2.4.2",
    "6": "3.8.7",
    "8": "4.5.3",
    "10": "4.18.1",
}
_BERRY_NEWEST = "4.18.1"
_PNPM_BY_LOCKFILE = {
    # pnpm 6 does not run on Node 20; pnpm 7 installs 5.3 lockfiles as they are.
    "5.3": "7.33.7",
    "5.4": "7.33.7",
    "6.0": "8.15.9",
    "6.1": "8.15.9",
    "9.0": "9.15.9",
}
# Files a package manager reads besides the lockfile and package.json files.
CONFIG_FILES = (
    ".npmrc",
    ".yarnrc",
    ".yarnrc.yml",
    "pnpm-workspace.yaml",
)
# Folders of patches that lockfiles may name (pnpm patchedDependencies,
# yarn's patch: protocol).
PATCH_FOLDERS = ("patches", ".yarn/patches")


@attrs.frozen(kw_only=True)
class PackageManager:
    """One package manager release, as a suite asks for it."""

    name: str
    # None for npm: the machine's own npm is used.
    version: str | None
    lockfile: str
    # corepack's pin: ``sha512.<hex>`` of the release, or None.
    digest: str | None = None

    @property
    def flavour(self) -> str:
        """npm, yarn-classic, yarn-berry or pnpm."""
        if self.name == "yarn":
            major = int((self.version or "1").split(".")[0])
            return "yarn-classic" if major < 2 else "yarn-berry"
        return self.name

    @property
    def label(self) -> str:
        return self.name if self.version is None else f"{self.name}@{self.version}"

    @property
    def registry_package(self) -> str | None:
        """The npm package that holds this release (None for npm)."""
        if self.version is None:
            return None
        package = {
            "yarn-classic": "yarn",
            "yarn-berry": "@yarnpkg/cli-dist",
            "pnpm": "pnpm",
        }[self.flavour]
        return f"{package}@{self.version}"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path.name} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise SourceError(f"{path.name} must hold a JSON object")
    return data


def lockfiles_in(folder: Path) -> list[str]:
    return [name for name in LOCKFILES if (folder / name).is_file()]


def parse_package_manager(value: object, where: str) -> tuple[str, str, str | None]:
    """``(name, version, digest)`` from a ``packageManager`` value."""
    match = _PACKAGE_MANAGER.match(value) if isinstance(value, str) else None
    if match is None:
        raise SourceError(
            f"{where}: packageManager {value!r} is not NAME@X.Y.Z[+sha512.HEX]"
        )
    if match["name"] not in ("npm", "yarn", "pnpm"):
        raise SourceError(
            f"{where}: packageManager {match['name']} is not supported;"
            " use npm, yarn or pnpm"
        )
    digest = f"{match['algorithm']}.{match['digest']}" if match["digest"] else None
    return match["name"], match["version"], digest


def detect(folder: Path, rel_folder: str = "") -> PackageManager:
    """The package manager of the package at ``folder`` (which has a lockfile).

    ``rel_folder`` is only for messages (the folder within the repository).
    """
    where = f"{rel_folder or '.'}/package.json"
    package = _read_json(folder / "package.json")
    found = lockfiles_in(folder)
    pinned = package.get("packageManager")
    name: str
    version: str | None = None
    digest = None
    if pinned is not None:
        name, version, digest = parse_package_manager(pinned, where)
        matching = [f for f in found if LOCKFILES[f] == name]
        if not matching:
            raise SourceError(
                f"{where} names {name} in packageManager, but"
                f" {rel_folder or '.'} has no {name} lockfile"
                f" (found {', '.join(found) or 'none'})"
            )
        lockfile = matching[0]
    else:
        managers = sorted({LOCKFILES[f] for f in found})
        if len(managers) > 1:
            raise SourceError(
                f"{rel_folder or '.'} has lockfiles of {' and '.join(managers)}"
                f" ({', '.join(found)}); set packageManager in {where} to say"
                " which one installs the suite, or remove the others"
            )
        lockfile = found[0]
        name = LOCKFILES[lockfile]
    if name == "npm":
        # The machine's npm installs any lockfile version npm writes today.
        return PackageManager(name="npm", version=None, lockfile=lockfile)
    if version is None:
        version = _default_version(folder, name, lockfile, rel_folder)
    return PackageManager(name=name, version=version, lockfile=lockfile, digest=digest)


def _default_version(folder: Path, name: str, lockfile: str, rel_folder: str) -> str:
    """The release to use when package.json pins none."""
    text = (folder / lockfile).read_text(encoding="utf-8", errors="replace")
    shown = f"{rel_folder}/{lockfile}" if rel_folder else lockfile
    if name == "pnpm":
        match = re.search(r"^lockfileVersion:\s*'?\"?([0-9.]+)", text, re.MULTILINE)
        found = match[1] if match else "?"
        if found not in _PNPM_BY_LOCKFILE:
            raise SourceError(
                f"{shown}: lockfileVersion {found} is not one TraceLoom knows;"
                " pin pnpm with packageManager in package.json"
            )
        return _PNPM_BY_LOCKFILE[found]
    release = _yarn_path_release(folder)
    if release is not None:
        return release
    match = re.search(r"^__metadata:\s*\n\s+version:\s*(\d+)", text, re.MULTILINE)
    if match is None:
        return YARN_CLASSIC_DEFAULT
    return _BERRY_BY_LOCKFILE.get(match[1], _BERRY_NEWEST)


def _yarn_path_release(folder: Path) -> str | None:
    """The version of the release a ``.yarnrc.yml`` ``yarnPath`` names."""
    rc = folder / ".yarnrc.yml"
    if not rc.is_file():
        return None
    try:
        data = yaml.safe_load(rc.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    path = data.get("yarnPath") if isinstance(data, dict) else None
    match = _YARN_RELEASE.search(str(path)) if path else None
    return match[1] if match else None


# -- fetching a release --------------------------------------------------------


@attrs.frozen
class Tool:
    """A package manager release unpacked on this machine."""

    manager: PackageManager
    # The unpacked npm package (its package.json is at the top).
    folder: Path
    # Its entry point, relative to ``folder``; run with ``node``.
    entry: str

    def argv(self, *args: str) -> list[str]:
        return ["node", str(self.folder / self.entry), *args]


class ToolCache:
    """Releases of yarn and pnpm, fetched from the npm registry once each."""

    def __init__(self, root: Path, *, timeout_s: float = 300) -> None:
        self.root = root.resolve()
        self.timeout_s = timeout_s
        self._locks: dict[str, asyncio.Lock] = {}

    async def get(self, manager: PackageManager) -> Tool | None:
        """The release ``manager`` names, fetched if needed (None for npm)."""
        spec = manager.registry_package
        if spec is None:
            return None
        name = spec.replace("/", "+").lstrip("@")
        folder = self.root / name
        lock = self._locks.setdefault(name, asyncio.Lock())
        async with lock:
            self.root.mkdir(parents=True, exist_ok=True)
            with (self.root / f"{name}.lock").open("w") as lock_file:
                await asyncio.to_thread(fcntl.flock, lock_file, fcntl.LOCK_EX)
                try:
                    if not (folder / ".complete").is_file():
                        await self._fetch(spec, folder)
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)
        tool = Tool(manager, folder / "package", _entry(folder / "package", manager))
        if manager.digest is not None:
            await asyncio.to_thread(_check_digest, tool, folder)
        return tool

    async def _fetch(self, spec: str, folder: Path) -> None:
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            done = await run_command(
                ["npm", "pack", spec, "--json", "--ignore-scripts",
                 "--pack-destination", str(staging)],
                cwd=staging,
                env={**os.environ, "npm_config_update_notifier": "false"},
                timeout_s=self.timeout_s,
            )  # fmt: skip
            if done.returncode != 0:
                text = redact_text(done.stderr.decode(errors="replace"))
                reason = " ".join(
                    line.removeprefix("npm error").strip()
                    for line in text.splitlines()
                    if line.startswith("npm error") and "A complete log" not in line
                )
                raise SourceError(
                    f"cannot fetch {spec} from the npm registry: "
                    + (reason or text.strip()[-500:])
                )
            [packed] = json.loads(done.stdout)
            await asyncio.to_thread(
                _unpack, staging / packed["filename"], staging, folder
            )
            log.info("packagemanager.fetched", release=spec)
        except TimeoutError:
            raise SourceError(
                f"fetching {spec} from the npm registry took over {self.timeout_s:.0f}s"
            ) from None
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _unpack(archive: Path, staging: Path, folder: Path) -> None:
    """Unpack a release, note its tarball's hashes, publish it at ``folder``."""
    with tarfile.open(archive) as tar:
        tar.extractall(staging, filter="data")
    data = archive.read_bytes()
    digests = {a: hashlib.new(a, data).hexdigest() for a in _DIGESTS}
    (staging / "tarball.json").write_text(json.dumps(digests))
    archive.unlink()
    (staging / ".complete").touch()
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _entry(package: Path, manager: PackageManager) -> str:
    """The JavaScript file that is the release's command."""
    data = _read_json(package / "package.json")
    command = "pnpm" if manager.flavour == "pnpm" else "yarn"
    bins = data.get("bin")
    entry = bins.get(command) if isinstance(bins, dict) else bins
    if not isinstance(entry, str) or not entry.endswith((".js", ".cjs", ".mjs")):
        raise SourceError(
            f"{manager.label} is not a JavaScript release (its command is"
            f" {entry!r}); pin a release that runs on Node, e.g. pnpm 9 or 10"
        )
    return entry.removeprefix("./")


def _check_digest(tool: Tool, folder: Path) -> None:
    """Refuse a release whose bytes are not those packageManager pins.

    corepack's hash is of what it downloads: the npm tarball for pnpm and
    yarn classic, the ``yarn.js`` file for yarn berry; either is accepted.
    """
    assert tool.manager.digest is not None
    algorithm, expected = tool.manager.digest.split(".", 1)
    tarball = json.loads((folder / "tarball.json").read_text())[algorithm]
    entry = hashlib.new(algorithm, (tool.folder / tool.entry).read_bytes())
    if expected not in (tarball, entry.hexdigest()):
        raise SourceError(
            f"package.json pins {tool.manager.label} with a {algorithm} hash that"
            " does not match that release from the npm registry"
        )


# -- installing --------------------------------------------------------------


@attrs.frozen
class InstallCommand:
    argv: list[str]
    env: dict[str, str]


def install_command(
    manager: PackageManager, tool: Tool | None, cache_root: Path
) -> InstallCommand:
    """The frozen, script-free install of ``manager``, with its caches."""
    if manager.flavour == "npm":
        return InstallCommand(
            ["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], {}
        )
    assert tool is not None, "yarn and pnpm run from a fetched release"
    if manager.flavour == "yarn-classic":
        return InstallCommand(
            tool.argv(
                "install", "--frozen-lockfile", "--ignore-scripts",
                "--non-interactive", "--no-progress",
                "--cache-folder", str(cache_root / "yarn-classic"),
            ),
            # A yarn-path in .yarnrc would run a release from the repository.
            {"YARN_IGNORE_PATH": "1"},
        )  # fmt: skip
    if manager.flavour == "yarn-berry":
        return InstallCommand(
            tool.argv("install", "--immutable"),
            {
                "YARN_IGNORE_PATH": "1",
                "YARN_ENABLE_SCRIPTS": "0",
                # Plug'n'Play needs its loader in every Node process the
                # suite starts; a node_modules tree works with plain Node.
                "YARN_NODE_LINKER": "node-modules",
                "YARN_ENABLE_GLOBAL_CACHE": "1",
                "YARN_GLOBAL_FOLDER": str(cache_root / "yarn-berry"),
                "YARN_ENABLE_TELEMETRY": "0",
                "YARN_ENABLE_PROGRESS_BARS": "0",
                "YARN_ENABLE_COLORS": "0",
                "YARN_ENABLE_HYPERLINKS": "0",
            },
        )
    # XXX: a lockfile made with a .pnpmfile.cjs that rewrites packages may
    # not install without it (pnpm checks pnpmfileChecksum); running the
    # pnpmfile means running the suite's code here, so it is refused.
    return InstallCommand(
        tool.argv(
            "install", "--frozen-lockfile", "--ignore-scripts", "--ignore-pnpmfile",
            "--reporter=append-only",
            f"--store-dir={cache_root / 'pnpm-store'}",
            # Its command shims would otherwise hold this machine's paths.
            "--config.extend-node-path=false",
            "--config.confirm-modules-purge=false",
            "--config.manage-package-manager-versions=false",
        ),
        {},
    )  # fmt: skip


def installer_reason(output: str) -> str:
    """The lines of an install's output that say why it failed."""
    lines = redact_text(output).splitlines()
    picked = []
    for line in lines:
        text = line.strip()
        if text.startswith(("npm error", "npm ERR!")):
            text = text.removeprefix("npm error").removeprefix("npm ERR!").strip()
            if text and not text.startswith(("A complete log", 'Run "npm')):
                picked.append(text)
        elif text.startswith(("error ", "ERR_PNPM", " ERR_PNPM")) or "YN0028" in text:
            picked.append(text)
        elif re.match(r"➤ YN\d{4}: .*(error|Error|fail|modified|not found)", text):
            picked.append(text.removeprefix("➤ "))
    return " ".join(picked)[:1500] or redact_text(output.strip())[-1500:]


def rewrite_yarnrc(path: Path) -> None:
    """Drop what would load code from the repository into yarn berry.

    ``yarnPath`` runs a release committed to the repository and ``plugins``
    load JavaScript from it; the rest (registries, scopes) is kept.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise SourceError(f".yarnrc.yml is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        return
    kept = {k: v for k, v in data.items() if k not in ("yarnPath", "plugins")}
    path.write_text(yaml.safe_dump(kept, sort_keys=False), encoding="utf-8")
