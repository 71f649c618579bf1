"""The artifact store in S3: the local store's keys, as objects of one bucket.

Keys are the same relative paths as in the local store
(``<run>/shard-<n>/batch-<m>/test-results/...``), below an optional
prefix. Runners never hold AWS credentials: for each batch the control
plane signs one upload policy (a presigned POST) that accepts objects under
that batch's prefix only, up to a size, for a few minutes, and the runner
posts its files with it. Readers get presigned links that expire as soon.
"""

from __future__ import annotations

import mimetypes
import time
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, TypeAlias

import attrs
from botocore.exceptions import BotoCoreError, ClientError

from controlplane.aws import Aws, describe_error
from controlplane.logs import get_logger
from controlplane.storage.artifacts import LocalArtifactStore, UnsafeArtifactPath

if TYPE_CHECKING:
    from aiobotocore.response import StreamingBody
    from types_aiobotocore_s3.type_defs import ObjectIdentifierTypeDef

log = get_logger(__name__)

_CHUNK = 1 << 20


def _safe_key(key: str) -> str:
    pure = PurePosixPath(key)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts or "\\" in key:
        raise UnsafeArtifactPath(f"unsafe artifact key: {key!r}")
    return str(pure)


def _config_quote(value: str) -> str:
    """``value`` as a double-quoted string of curl's configuration syntax."""
    if "\n" in value or "\r" in value:
        raise ValueError("a curl configuration value cannot hold a line break")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@attrs.frozen(kw_only=True)
class UploadGrant:
    """A signed upload policy for the objects under ``key_prefix``.

    ``fields`` are the form fields every upload must carry (the policy, its
    signature and the signing scope: no secret key); the uploader adds
    ``key`` (starting with ``key_prefix``) and ``file``.
    """

    url: str
    fields: dict[str, str]
    key_prefix: str
    expires_at: float

    def curl_config(self) -> str:
        """One upload's options in curl's ``--config`` syntax, file left out.

        Kept in a file rather than on a command line, so that other users
        of the host cannot read the signed policy from the process list.
        """
        lines = [f"url = {_config_quote(self.url)}"]
        lines += [
            f"form-string = {_config_quote(f'{name}={value}')}"
            for name, value in sorted(self.fields.items())
        ]
        return "\n".join(lines) + "\n"


class S3ArtifactStore:
    """Artifacts as objects in ``bucket``, below ``prefix``."""

    def __init__(
        self,
        aws: Aws,
        *,
        bucket: str,
        prefix: str = "",
        link_expires_s: int = 300,
        upload_expires_s: int = 900,
        upload_max_bytes: int = 1 << 30,
    ) -> None:
        self.aws = aws
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.link_expires_s = link_expires_s
        self.upload_expires_s = upload_expires_s
        self.upload_max_bytes = upload_max_bytes

    def object_key(self, key: str) -> str:
        """The S3 object behind ``key``; refuses keys that climb out."""
        return self.prefix + _safe_key(key)

    async def upload_grant(self, key_prefix: str) -> UploadGrant:
        """A presigned POST for objects under ``key_prefix`` only."""
        prefix = self.object_key(key_prefix) + "/"
        s3 = await self.aws.s3()
        # A key ending in ${filename} makes botocore require the prefix
        # ("starts-with") instead of one exact key.
        post = await s3.generate_presigned_post(
            Bucket=self.bucket,
            Key=prefix + "${filename}",
            Conditions=[["content-length-range", 0, self.upload_max_bytes]],
            ExpiresIn=self.upload_expires_s,
        )
        fields = {k: str(v) for k, v in post["fields"].items() if k != "key"}
        return UploadGrant(
            url=post["url"],
            fields=fields,
            key_prefix=prefix,
            expires_at=time.time() + self.upload_expires_s,
        )

    async def link(self, key: str) -> str:
        """A presigned GET of ``key``, valid ``link_expires_s`` seconds."""
        s3 = await self.aws.s3()
        content_type = mimetypes.guess_type(key)[0] or "application/octet-stream"
        return await s3.generate_presigned_url(
            "get_object",
            Params={
                "Bucket": self.bucket,
                "Key": self.object_key(key),
                "ResponseContentType": content_type,
            },
            ExpiresIn=self.link_expires_s,
        )

    async def exists(self, key: str) -> bool:
        s3 = await self.aws.s3()
        try:
            await s3.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey"):
                return False
            raise
        return True

    async def keys(self, prefix: str) -> list[str]:
        """Every key below ``prefix``, sorted."""
        s3 = await self.aws.s3()
        below = self.object_key(prefix) + "/"
        found: list[str] = []
        paginator = s3.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=below):
            found += [o["Key"][len(self.prefix) :] for o in page.get("Contents", [])]
        return sorted(found)

    async def put_file(self, key: str, source: Path) -> None:
        """Upload the local file ``source`` as ``key`` (the control plane's own)."""
        s3 = await self.aws.s3()
        await s3.upload_file(str(source), self.bucket, self.object_key(key))

    async def open(self, key: str) -> tuple[StreamingBody, int]:
        """The object's body to read (and close) and its size in bytes."""
        s3 = await self.aws.s3()
        answer = await s3.get_object(Bucket=self.bucket, Key=self.object_key(key))
        return answer["Body"], answer["ContentLength"]

    async def download(self, key: str, target: Path) -> None:
        """Copy ``key`` into the local file ``target``."""
        s3 = await self.aws.s3()
        answer = await s3.get_object(Bucket=self.bucket, Key=self.object_key(key))
        body = answer["Body"]
        try:
            with target.open("wb") as sink:
                while chunk := await body.read(_CHUNK):
                    sink.write(chunk)
        finally:
            body.close()

    async def delete_prefix(self, prefix: str) -> None:
        s3 = await self.aws.s3()
        keys = await self.keys(prefix)
        for start in range(0, len(keys), 1000):
            batch: list[ObjectIdentifierTypeDef] = [
                {"Key": self.object_key(k)} for k in keys[start : start + 1000]
            ]
            await s3.delete_objects(Bucket=self.bucket, Delete={"Objects": batch})

    async def check(self) -> str | None:
        """None when the bucket answers, else why not (for readiness)."""
        s3 = await self.aws.s3()
        try:
            await s3.head_bucket(Bucket=self.bucket)
        except (ClientError, BotoCoreError) as exc:
            log.warning("ready.store_failed", bucket=self.bucket, error=repr(exc))
            return f"bucket {self.bucket}: {describe_error(exc)}"
        return None


ArtifactStore: TypeAlias = LocalArtifactStore | S3ArtifactStore
