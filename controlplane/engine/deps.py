"""The suite's npm dependencies: installed once per lockfile, reused after.

The cache key is a hash of the lockfile, ``package.json`` and the Node major
version. An entry is a folder with ``node_modules`` and a tar of it that the
dispatcher ships to hosts that lack it. Installs run with the lockfile
frozen (``npm ci``) and without downloading Playwright's own browsers.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import os
import shutil
import tempfile
from pathlib import Path

import attrs

from controlplane.engine.commands import run_command
from controlplane.errors import SourceError
from controlplane.logs import get_logger, redact_text

log = get_logger(__name__)


@attrs.frozen
class Dependencies:
    key: str
    node_modules: Path
    archive: Path


async def _output(*argv: str, cwd: Path | None = None, timeout_s: float = 60) -> str:
    try:
        done = await run_command(
            list(argv),
            cwd=cwd,
            env={**os.environ, "PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD": "1", "CI": "1"},
            timeout_s=timeout_s,
            merge_stderr=True,
        )
    except TimeoutError:
        raise SourceError(f"{' '.join(argv[:2])} took over {timeout_s:.0f}s") from None
    text = done.stdout.decode(errors="replace")
    if done.returncode != 0:
        raise SourceError(f"{' '.join(argv[:2])} failed: {_npm_reason(text)}")
    return text


def _npm_reason(output: str) -> str:
    """npm's error lines (``npm error ...``), without its usage text."""
    lines = redact_text(output).splitlines()
    errors = [
        line.removeprefix("npm error").removeprefix("npm ERR!").strip()
        for line in lines
        if line.startswith(("npm error", "npm ERR!"))
    ]
    errors = [
        e for e in errors if e and not e.startswith(("A complete log", 'Run "npm'))
    ]
    return " ".join(errors)[:1500] or redact_text(output.strip())[-1500:]


def _publish(staging: Path, entry: Path) -> None:
    (staging / ".complete").touch()
    shutil.rmtree(entry, ignore_errors=True)
    staging.rename(entry)


class DependencyCache:
    """Folders of installed ``node_modules`` keyed by lockfile."""

    def __init__(self, root: Path, *, install_timeout_s: float) -> None:
        self.root = root.resolve()
        self.install_timeout_s = install_timeout_s
        self._locks: dict[str, asyncio.Lock] = {}
        self._node_major: str | None = None

    async def node_major(self) -> str:
        if self._node_major is None:
            version = (await _output("node", "--version")).strip()
            self._node_major = version.lstrip("v").split(".")[0]
        return self._node_major

    async def key_for(self, package_dir: Path, lockfile: str) -> str:
        digest = hashlib.sha256()
        for name in (lockfile, "package.json"):
            digest.update(name.encode() + b"\0")
            digest.update((package_dir / name).read_bytes() + b"\0")
        digest.update(f"node{await self.node_major()}".encode())
        return digest.hexdigest()[:32]

    async def ensure(self, package_dir: Path, lockfile: str) -> Dependencies:
        """Install (or find) the dependencies of ``package_dir``."""
        key = await self.key_for(package_dir, lockfile)
        entry = self.root / key
        deps = Dependencies(key, entry / "node_modules", entry / "node_modules.tar")
        if (entry / ".complete").is_file():
            log.info("deps.cached", key=key)
            return deps
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            self.root.mkdir(parents=True, exist_ok=True)
            with (self.root / f"{key}.lock").open("w") as lock_file:
                await asyncio.to_thread(fcntl.flock, lock_file, fcntl.LOCK_EX)
                try:
                    if not (entry / ".complete").is_file():
                        await self._install(package_dir, lockfile, entry)
                finally:
                    fcntl.flock(lock_file, fcntl.LOCK_UN)
        return deps

    async def _install(self, package_dir: Path, lockfile: str, entry: Path) -> None:
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=self.root))
        try:
            for name in (lockfile, "package.json", ".npmrc"):
                if (package_dir / name).is_file():
                    shutil.copy2(package_dir / name, staging / name)
            loop = asyncio.get_running_loop()
            started = loop.time()
            # XXX: install scripts are not run on the control plane (they are
            # the suite's code); packages that need a postinstall step will
            # need it run on the hosts instead.
            await _output(
                "npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund",
                cwd=staging, timeout_s=self.install_timeout_s,
            )  # fmt: skip
            if not (staging / "node_modules").is_dir():
                (staging / "node_modules").mkdir()
            await _output(
                "tar", "-c", "-f", "node_modules.tar", "node_modules", cwd=staging
            )
            await asyncio.to_thread(_publish, staging, entry)
            log.info(
                "deps.installed",
                key=entry.name,
                duration_s=round(loop.time() - started, 2),
            )
        finally:
            shutil.rmtree(staging, ignore_errors=True)
