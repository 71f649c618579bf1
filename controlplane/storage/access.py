"""What readers of artifacts need from either store, local folder or S3.

The two stores keep the same keys; these functions hide where the bytes
live, so that the report builder and the dashboard work over both.
"""

from __future__ import annotations

import asyncio
import mimetypes
import shutil
import tarfile
import tempfile
from pathlib import Path

from aiohttp import web
from botocore.exceptions import ClientError

from controlplane.errors import NotFound
from controlplane.storage.artifacts import LocalArtifactStore, UnsafeArtifactPath
from controlplane.storage.s3 import ArtifactStore, S3ArtifactStore

_CHUNK = 1 << 20


async def exists(store: ArtifactStore, key: str) -> bool:
    """Whether ``key`` is stored; an unsafe key is simply not there."""
    try:
        if isinstance(store, S3ArtifactStore):
            return await store.exists(key)
        return await asyncio.to_thread(store.exists, key)
    except UnsafeArtifactPath:
        return False


async def fetch(store: ArtifactStore, key: str, target: Path) -> None:
    """Copy the stored ``key`` into the local file ``target``."""
    if isinstance(store, S3ArtifactStore):
        await store.download(key, target)
    else:
        await asyncio.to_thread(shutil.copyfile, store.path_for(key), target)


async def publish_folder(store: ArtifactStore, folder: Path, prefix: str) -> None:
    """Replace everything below ``prefix`` with the files of ``folder``."""
    if isinstance(store, S3ArtifactStore):
        await store.delete_prefix(prefix)
        for path in await asyncio.to_thread(_files_below, folder):
            await store.put_file(
                f"{prefix}/{path.relative_to(folder).as_posix()}", path
            )
        return
    await asyncio.to_thread(_replace_local, store, folder, prefix)


def _files_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _replace_local(store: LocalArtifactStore, folder: Path, prefix: str) -> None:
    with tempfile.TemporaryDirectory(prefix="traceloom-publish-") as tmp:
        archive = Path(tmp) / "folder.tar"
        with tarfile.open(archive, "w") as tar:
            for child in sorted(folder.iterdir()):
                tar.add(child, arcname=child.name)
        store.delete_prefix(prefix)
        store.unpack_tar(archive, prefix)


async def respond(
    request: web.Request,
    store: ArtifactStore,
    key: str,
    *,
    headers: dict[str, str] | None = None,
) -> web.StreamResponse:
    """An answer carrying the stored ``key`` (and ``headers``); else NotFound.

    The local store sends the file; the S3 store's object is streamed through
    the control plane, so that pages which load their neighbours by relative
    links (the merged report, its trace viewer) keep working.
    """
    if isinstance(store, LocalArtifactStore):
        try:
            path = store.path_for(key)
        except UnsafeArtifactPath:
            raise NotFound("no such file") from None
        if not path.is_file():
            raise NotFound("no such file")
        return web.FileResponse(path, headers=headers)
    try:
        body, size = await store.open(key)
    except UnsafeArtifactPath:
        raise NotFound("no such file") from None
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
            raise NotFound("no such file") from None
        raise
    response = web.StreamResponse(
        headers={
            **(headers or {}),
            "Content-Type": mimetypes.guess_type(key)[0] or "application/octet-stream",
        }
    )
    response.content_length = size
    try:
        await response.prepare(request)
        while chunk := await body.read(_CHUNK):
            await response.write(chunk)
    finally:
        body.close()
    await response.write_eof()
    return response
