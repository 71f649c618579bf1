"""The artifact store: traces, screenshots and reports under a per-run prefix.

Keys are relative POSIX paths such as ``<run>/shard-0/test-results/...``.
The local store keeps them in a folder; the S3 store (``storage.s3``) keeps
the same keys as objects.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from controlplane.errors import TraceLoomError


class UnsafeArtifactPath(TraceLoomError, ValueError):
    """A key or archive entry would land outside the store."""


class LocalArtifactStore:
    """Artifacts as files below one root folder."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        """The file behind ``key``; refuses keys that climb out of the root."""
        pure = PurePosixPath(key)
        if pure.is_absolute() or ".." in pure.parts or not pure.parts:
            raise UnsafeArtifactPath(f"unsafe artifact key: {key!r}")
        return self.root.joinpath(*pure.parts)

    def exists(self, key: str) -> bool:
        return self.path_for(key).is_file()

    def unpack_tar(self, archive: Path, prefix: str) -> list[str]:
        """Unpack a host's tar of results below ``prefix``; return the keys.

        Only regular files and folders are taken; links, devices and entries
        that would escape the prefix are skipped.
        """
        target = self.path_for(prefix)
        target.mkdir(parents=True, exist_ok=True)
        keys: list[str] = []
        with tarfile.open(archive) as tar:
            members = [m for m in tar.getmembers() if m.isfile() or m.isdir()]
            safe = []
            for member in members:
                pure = PurePosixPath(member.name)
                if pure.is_absolute() or ".." in pure.parts:
                    continue
                safe.append(member)
                if member.isfile():
                    keys.append(str(PurePosixPath(prefix, *pure.parts)))
            tar.extractall(target, members=safe, filter="data")
        return sorted(set(keys))

    def delete_prefix(self, prefix: str) -> None:
        shutil.rmtree(self.path_for(prefix), ignore_errors=True)

    async def check(self) -> str | None:
        """None when the root folder is writable, else why not (for readiness)."""
        root = self.root
        writable = await asyncio.to_thread(
            lambda: root.is_dir() and os.access(root, os.W_OK | os.X_OK)
        )
        return None if writable else "not writable"
