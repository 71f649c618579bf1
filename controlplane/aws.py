"""The one way the control plane reaches AWS: an aioboto3 session and clients.

Credentials come from botocore's usual chain (the instance role on AWS, the
environment or a profile elsewhere) and never leave the control plane.
``endpoint_url`` points the clients at an S3-compatible server instead of
AWS (MinIO on-prem, moto's server in the tests).
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING, Any

import aioboto3
import attrs
from aiobotocore.config import AioConfig
from botocore.exceptions import ClientError, NoCredentialsError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client

    from controlplane.settings import Settings


@attrs.frozen(kw_only=True)
class AwsConfig:
    region: str = ""
    endpoint_url: str = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> AwsConfig:
        return cls(region=settings.aws_region, endpoint_url=settings.aws_endpoint_url)


class Aws:
    """One aioboto3 session and the long-lived clients opened from it.

    A client is opened on first use and kept until ``close``: opening one
    loads botocore's service model, too slow to repeat per request.
    """

    def __init__(self, config: AwsConfig) -> None:
        self.config = config
        self.session = aioboto3.Session(region_name=config.region or None)
        self._stack = AsyncExitStack()
        self._s3: S3Client | None = None
        self._lock = asyncio.Lock()

    async def s3(self) -> S3Client:
        """The S3 client; path-style addressing when the endpoint is not AWS's."""
        async with self._lock:
            if self._s3 is None:
                options: dict[str, Any] = {
                    "signature_version": "s3v4",
                    "retries": {"mode": "standard", "max_attempts": 4},
                }
                if self.config.endpoint_url:
                    options["s3"] = {"addressing_style": "path"}
                client = await self._stack.enter_async_context(
                    self.session.client(
                        "s3",
                        endpoint_url=self.config.endpoint_url or None,
                        config=AioConfig(**options),
                    )
                )
                self._s3 = client
            return self._s3

    async def close(self) -> None:
        """Close every client opened so far."""
        async with self._lock:
            self._s3 = None
            await self._stack.aclose()


def describe_error(exc: BaseException) -> str:
    """A short reason for an AWS failure: the service's code and message."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = error.get("Code", "Error")
        message = error.get("Message") or _STATUS_TEXT.get(code, "")
        return f"{code}: {message}".rstrip(": ")
    if isinstance(exc, NoCredentialsError):
        return "no AWS credentials found (instance role, environment or profile)"
    return str(exc) or type(exc).__name__


# Errors S3 answers to HEAD requests come without a body, so without text.
_STATUS_TEXT = {
    "404": "not found",
    "403": "access denied",
    "NoSuchKey": "no such key",
    "NoSuchBucket": "no such bucket",
}
