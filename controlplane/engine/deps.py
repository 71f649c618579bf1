"""The suite's dependencies: installed once per lockfile, reused after.

An install runs on the control plane in a copy of only what the package
manager reads (the lockfile, the workspace's ``package.json`` files, its
configuration and patches), frozen to the lockfile, without install scripts
and without Playwright's browser download. The cache key is a hash of those
files, the package manager release and the Node major version.

An entry holds ``tree/``, the install's results at their places in the
package (every ``node_modules`` folder of a workspace, yarn berry's install
state), ``place.list`` naming them, ``pm/`` and ``bin/`` (the yarn or pnpm
release and its commands, for setup steps and web servers on hosts), and
``deps.tar`` of it all, which the dispatcher ships to hosts that lack it.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import attrs

from controlplane.engine import packagemanagers
from controlplane.engine.commands import run_command
from controlplane.engine.packagemanagers import PackageManager, Tool, ToolCache
from controlplane.engine.suite import in_workspace, workspace_patterns
from controlplane.errors import SourceError
from controlplane.logs import get_logger

log = get_logger(__name__)

# Bumped when the layout of an entry changes, so old entries are not reused.
_FORMAT = "deps-v2"
_SKIPPED = frozenset({".git", "node_modules"})
_PLACED_FILES = (".yarn/install-state.gz",)
_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
# Variables that would change what the installer runs: never from a suite.
_UNSAFE_PREFIXES = ("NPM_CONFIG_", "YARN_", "PNPM_", "NODE_", "COREPACK_")
_UNSAFE_NAMES = frozenset({"PATH", "HOME", "SHELL", "LD_PRELOAD", "LD_LIBRARY_PATH"})


@attrs.frozen
class Dependencies:
    key: str
    # The package's own node_modules in the entry (its workspace root's).
    node_modules: Path
    archive: Path
    # The entry's folder: tree/, place.list, pm/, bin/.
    entry: Path | None = None


async def _output(
    *argv: str,
    cwd: Path | None = None,
    timeout_s: float = 60,
    env: Mapping[str, str] | None = None,
) -> str:
    try:
        done = await run_command(
            list(argv),
            cwd=cwd,
            env={
                **os.environ,
                "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1",
                "CI": "1",
                **(env or {}),
            },
            timeout_s=timeout_s,
            merge_stderr=True,
        )
    except TimeoutError:
        raise SourceError(f"{_shown(argv)} took over {timeout_s:.0f}s") from None
    text = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise SourceError(
            f"{_shown(argv)} failed: {packagemanagers.installer_reason(text)}"
        )
    return text


def _shown(argv: tuple[str, ...]) -> str:
    """``npm ci``, ``pnpm install``: the command as a user would type it."""
    if argv and argv[0] == "node" and len(argv) > 2:
        tool = "pnpm" if "pnpm" in argv[1] else "yarn"
        return f"{tool} {argv[2]}"
    return " ".join(argv[:2])


def skeleton(package_dir: Path, manager: PackageManager) -> list[str]:
    """What the install reads, relative to ``package_dir``, sorted.

    XXX: a ``file:`` dependency on a folder, or a pnpm workspace package
    marked ``injected``, needs that folder's sources, which are not copied
    (and would make the cache key change with every source edit); such an
    install fails with the manager's reason. Copying the named folders into
    the skeleton, and hashing them, would support them.
    """
    members = _member_folders(package_dir, manager)
    files = [manager.lockfile, *(f"{m}/package.json" if m else "package.json"
                                 for m in members)]  # fmt: skip
    files += [n for n in packagemanagers.CONFIG_FILES if (package_dir / n).is_file()]
    for folder in packagemanagers.PATCH_FOLDERS:
        base = package_dir / folder
        if base.is_dir():
            files += [
                p.relative_to(package_dir).as_posix()
                for p in base.rglob("*")
                if p.is_file() and not p.is_symlink()
            ]
    return sorted(set(files), key=lambda f: f.encode())


def _member_folders(package_dir: Path, manager: PackageManager) -> list[str]:
    """The workspace's package folders ("" for the root), when it has any."""
    patterns = workspace_patterns(package_dir, manager.name)
    if not patterns:
        return [""]
    members = [""]
    for folder, dirs, files in os.walk(package_dir):
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED)
        rel = Path(folder).relative_to(package_dir).as_posix()
        if (
            rel != "."
            and "package.json" in files
            and in_workspace(package_dir, manager.name, rel)
        ):
            members.append(rel)
    return members


def registry_env(package_dir: Path, available: Mapping[str, str]) -> dict[str, str]:
    """Variables a ``.npmrc`` or ``.yarnrc.yml`` names as ``${NAME}``.

    A private registry's token reaches the installer this way (from the
    run's secrets), and nothing else the suite sets does: variables that
    change what the installer runs are never passed.
    """
    wanted: set[str] = set()
    for name in (".npmrc", ".yarnrc.yml"):
        path = package_dir / name
        if path.is_file():
            wanted.update(_REFERENCE.findall(path.read_text(errors="replace")))
    return {
        name: available[name]
        for name in sorted(wanted)
        if name in available
        and not name.upper().startswith(_UNSAFE_PREFIXES)
        and name not in _UNSAFE_NAMES
    }


def _copy_skeleton(package_dir: Path, files: list[str], dest: Path) -> None:
    for rel in files:
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(package_dir / rel, target)


def _collect(work: Path, tree: Path) -> list[str]:
    """Move what the install made into ``tree``; return the moved paths."""
    placed: list[str] = []
    for folder, dirs, _files in os.walk(work):
        here = Path(folder).relative_to(work)
        if "node_modules" in dirs:
            placed.append((here / "node_modules").as_posix())
        dirs[:] = sorted(d for d in dirs if d not in _SKIPPED)
    placed += [f for f in _PLACED_FILES if (work / f).is_file()]
    for rel in placed:
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).rename(tree / rel)
        _relative_links(tree / rel, work / rel, work)
    return sorted(p.removeprefix("./") for p in placed)


def _relative_links(moved: Path, was: Path, work: Path) -> None:
    """Absolute links into the install folder ``work`` become relative ones.

    The tree is copied into each host's copy of the repository, where only
    relative links point at the right files.
    """
    if not moved.is_dir():
        return
    for folder, dirs, files in os.walk(moved):
        for name in [*dirs, *files]:
            path = Path(folder) / name
            if not path.is_symlink():
                continue
            target = os.readlink(path)
            if not os.path.isabs(target) or not target.startswith(f"{work}/"):
                continue
            # Where the link was before the move, relative to the install.
            old_place = was / path.relative_to(moved)
            path.unlink()
            path.symlink_to(os.path.relpath(target, old_place.parent))


_WRAPPER = """#!/bin/sh
{exports}exec node "$(dirname "$0")/../pm/{entry}" "$@"
"""


def _install_tool(tool: Tool, staging: Path) -> None:
    """The release and its commands, for setup steps and web servers."""
    shutil.copytree(tool.folder, staging / "pm", symlinks=True)
    (staging / "bin").mkdir()
    flavour = tool.manager.flavour
    names = ["pnpm"] if flavour == "pnpm" else ["yarn", "yarnpkg"]
    exports = ""
    if flavour == "yarn-berry":
        exports = (
            "export YARN_IGNORE_PATH=1 YARN_NODE_LINKER=node-modules"
            " YARN_ENABLE_TELEMETRY=0\n"
        )
    elif flavour == "yarn-classic":
        exports = "export YARN_IGNORE_PATH=1\n"
    for name in names:
        path = staging / "bin" / name
        path.write_text(_WRAPPER.format(exports=exports, entry=tool.entry))
        path.chmod(0o755)


def _publish(staging: Path, entry: Path) -> None:
    (staging / ".complete").touch()
    shutil.rmtree(entry, ignore_errors=True)
    staging.rename(entry)


class DependencyCache:
    """Installed dependencies keyed by what the install reads."""

    def __init__(self, root: Path, *, install_timeout_s: float) -> None:
        self.root = root.resolve()
        self.install_timeout_s = install_timeout_s
        # Package manager releases and their download caches sit beside.
        self.tools = ToolCache(self.root.parent / "tools")
        self.pm_cache = self.root.parent / "pm-cache"
        self._locks: dict[str, asyncio.Lock] = {}
        self._node_major: str | None = None

    async def node_major(self) -> str:
        if self._node_major is None:
            version = (await _output("node", "--version")).strip()
            self._node_major = version.lstrip("v").split(".")[0]
        return self._node_major

    async def key_for(self, package_dir: Path, manager: PackageManager) -> str:
        files = await asyncio.to_thread(skeleton, package_dir, manager)
        digest = hashlib.sha256(f"{_FORMAT}\0{manager.label}\0".encode())
        for name in files:
            digest.update(name.encode() + b"\0")
            digest.update((package_dir / name).read_bytes() + b"\0")
        digest.update(f"node{await self.node_major()}".encode())
        return digest.hexdigest()[:32]

    async def ensure(
        self,
        package_dir: Path,
        manager: PackageManager,
        *,
        env: Mapping[str, str] | None = None,
    ) -> Dependencies:
        """Install (or find) the dependencies of the package at ``package_dir``.

        ``env`` holds the run's variables; only those the registry
        configuration names reach the installer (see ``registry_env``).
        """
        key = await self.key_for(package_dir, manager)
        entry = self.root / key
        deps = Dependencies(
            key, entry / "tree" / "node_modules", entry / "deps.tar", entry
        )
        if (entry / ".complete").is_file():
            log.info("deps.cached", key=key, manager=manager.label)
            return deps
        tool = await self.tools.get(manager)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            self.root.mkdir(parents=True, exist_ok=True)
            with (self.root / f"{key}.lock").open("w") as lock_file:
                await asyncio.to_thread(fcntl.flock, lock_file, fcntl.LOCK_EX)
                try:
                    if not (entry / ".complete").is_file():
                        extra = registry_env(package_dir, env or {})
                        await self._install(package_dir, manager, tool, entry, extra)
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)
        return deps

    async def _install(
        self,
        package_dir: Path,
        manager: PackageManager,
        tool: Tool | None,
        entry: Path,
        extra_env: dict[str, str],
    ) -> None:
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        work = staging / "work"
        try:
            files = await asyncio.to_thread(skeleton, package_dir, manager)
            await asyncio.to_thread(_copy_skeleton, package_dir, files, work)
            if manager.flavour == "yarn-berry" and (work / ".yarnrc.yml").is_file():
                packagemanagers.rewrite_yarnrc(work / ".yarnrc.yml")
            command = packagemanagers.install_command(manager, tool, self.pm_cache)
            loop = asyncio.get_running_loop()
            started = loop.time()
            # Install scripts are the suite's code: they never run here. A
            # dependency that needs its script gets it from a setup step on
            # the hosts (`npm rebuild NAME`, see the README).
            await _output(
                *command.argv,
                cwd=work,
                timeout_s=self.install_timeout_s,
                env={**command.env, **extra_env},
            )
            tree = staging / "tree"
            tree.mkdir()
            placed = await asyncio.to_thread(_collect, work, tree)
            if "node_modules" not in placed:
                (tree / "node_modules").mkdir()
                placed.insert(0, "node_modules")
            (staging / "place.list").write_text("".join(f"{p}\n" for p in placed))
            if tool is not None:
                await asyncio.to_thread(_install_tool, tool, staging)
            shutil.rmtree(work)
            contents = sorted(await asyncio.to_thread(os.listdir, staging))
            await _output("tar", "-c", "-f", "deps.tar", *contents, cwd=staging)
            await asyncio.to_thread(_publish, staging, entry)
            log.info(
                "deps.installed",
                key=entry.name,
                manager=manager.label,
                folders=len(placed),
                duration_s=round(loop.time() - started, 2),
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
