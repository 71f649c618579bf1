"""Fetching a run's tests from S3: one zip, downloaded once, unpacked safely.

The control plane downloads the object with its own credentials, bounded
in size, and unpacks it with the rules of ``engine.unzip``; hosts get the
unpacked suite over SSH like a cloned repository, never the credentials.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError

from controlplane.aws import Aws, describe_error
from controlplane.domain import S3Source
from controlplane.engine.unzip import ZipLimits, unpack_zip
from controlplane.errors import SourceError
from controlplane.logs import get_logger

log = get_logger(__name__)

_CHUNK = 1 << 20


def source_id(source: S3Source) -> str:
    """How runs of the same suite are recognised: its S3 URL."""
    return f"s3://{source.bucket}/{source.key}"


class S3SuiteSource:
    """Downloads and unpacks zipped suites for runs of type ``s3``."""

    def __init__(
        self,
        aws: Aws,
        *,
        limits: ZipLimits,
        max_zip_bytes: int,
        allowed_bucket: str = "",
    ) -> None:
        self.aws = aws
        self.limits = limits
        self.max_zip_bytes = max_zip_bytes
        self.allowed_bucket = allowed_bucket

    async def fetch(self, source: S3Source, dest: Path, *, timeout_s: float) -> str:
        """Unpack ``source`` into ``dest``; return the object's version or ETag.

        Raises SourceError with the reason: no such bucket or key, access
        denied, too large, not a zip, or an unsafe entry.
        """
        # XXX: a resumed or rerun S3 run downloads the key's current object,
        # which CI may have replaced since; the first run's VersionId (the
        # return value) kept with the run and asked for here would pin it.
        url = source_id(source)
        if self.allowed_bucket and source.bucket != self.allowed_bucket:
            raise SourceError(f"{url}: this control plane reads suites from"
                              f" s3://{self.allowed_bucket} only")  # fmt: skip
        with tempfile.TemporaryDirectory(prefix="traceloom-zip-") as tmp:
            archive = Path(tmp) / "suite.zip"
            try:
                async with asyncio.timeout(timeout_s):
                    revision = await self._download(source, archive)
            except TimeoutError:
                raise SourceError(
                    f"downloading {url} took over {timeout_s:.0f}s"
                ) from None
            except (ClientError, BotoCoreError) as exc:
                raise SourceError(
                    f"cannot download {url}: {describe_error(exc)}"
                ) from None
            try:
                files = await asyncio.to_thread(unpack_zip, archive, dest, self.limits)
            except SourceError as exc:
                raise SourceError(f"{url}: {exc}") from None
        log.info("source.unpacked", source=url, files=files, revision=revision)
        return revision

    async def _download(self, source: S3Source, archive: Path) -> str:
        s3 = await self.aws.s3()
        answer = await s3.get_object(Bucket=source.bucket, Key=source.key)
        body = answer["Body"]
        try:
            size = answer.get("ContentLength", 0)
            if size > self.max_zip_bytes:
                raise SourceError(
                    f"{source_id(source)} is {size} bytes, more than the"
                    f" {self.max_zip_bytes} allowed"
                )
            received = 0
            with archive.open("wb") as sink:
                while chunk := await body.read(_CHUNK):
                    received += len(chunk)
                    if received > self.max_zip_bytes:
                        raise SourceError(
                            f"{source_id(source)} is more than the"
                            f" {self.max_zip_bytes} bytes allowed"
                        )
                    await asyncio.to_thread(sink.write, chunk)
        finally:
            body.close()
        return str(answer.get("VersionId") or answer.get("ETag", "").strip('"'))
