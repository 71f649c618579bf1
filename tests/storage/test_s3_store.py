"""The S3 artifact store against moto, behind a proxy that enforces policies.

The harness's ``upload`` runs here as a host runs it (sh and curl), with
the grant the control plane would send it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from controlplane.aws import Aws, AwsConfig
from controlplane.harness import HARNESS_DIR
from controlplane.logs import SECRET_VALUES
from controlplane.remote.dispatch import redact_uploaded
from controlplane.storage.artifacts import UnsafeArtifactPath
from controlplane.storage.s3 import S3ArtifactStore, UploadGrant
from tests.conftest import AWS_TEST_SECRET as SECRET
from tests.conftest import NewBucket
from tests.s3policy import policy_checking_proxy

PREFIX = "run_1/shard-0/batch-2"


@pytest.fixture
async def endpoint(moto_endpoint: str, aws_env: None) -> AsyncIterator[str]:
    async with policy_checking_proxy(moto_endpoint, SECRET) as url:
        yield url


@pytest.fixture
async def aws(endpoint: str) -> AsyncIterator[Aws]:
    client = Aws(AwsConfig(region="eu-west-1", endpoint_url=endpoint))
    yield client
    await client.close()


@pytest.fixture
async def store(aws: Aws, new_bucket: NewBucket) -> S3ArtifactStore:
    return S3ArtifactStore(aws, bucket=await new_bucket(), prefix="artifacts")


def _shard(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A shard folder as the harness leaves it: files and attachments.list."""
    shard = tmp_path / "shard"
    for name, data in files.items():
        (shard / name).parent.mkdir(parents=True, exist_ok=True)
        (shard / name).write_bytes(data)
    listed = [n for n in files if not n.startswith("blob/")]
    (shard / "attachments.list").write_bytes(
        b"".join(n.encode() + b"\0" for n in listed)
    )
    return shard


def _upload(shard: Path, grant: UploadGrant) -> subprocess.CompletedProcess[str]:
    (shard / "upload.curl").write_text(grant.curl_config())
    return subprocess.run(
        ["sh", str(HARNESS_DIR / "traceloom-harness.sh"), "upload", str(shard),
         grant.key_prefix],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _policy(grant: UploadGrant) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(base64.b64decode(grant.fields["policy"]))
    return loaded


async def _post(grant: UploadGrant, key: str, data: bytes) -> int:
    form = aiohttp.FormData()
    for name, value in grant.fields.items():
        form.add_field(name, value)
    form.add_field("key", key)
    form.add_field("file", data, filename="x")
    async with (
        aiohttp.ClientSession() as session,
        session.post(grant.url, data=form) as answer,
    ):
        return answer.status


async def test_the_grant_accepts_only_its_prefix_and_holds_no_secret(
    store: S3ArtifactStore,
) -> None:
    """The signed policy names the bucket, the batch's prefix and a size cap."""
    grant = await store.upload_grant(PREFIX)

    conditions = _policy(grant)["conditions"]
    assert isinstance(conditions, list)
    assert grant.key_prefix == f"artifacts/{PREFIX}/"
    assert ["starts-with", "$key", f"artifacts/{PREFIX}/"] in conditions
    assert {"bucket": store.bucket} in conditions
    assert ["content-length-range", 0, store.upload_max_bytes] in conditions
    assert SECRET not in grant.curl_config()
    assert "key" not in grant.fields


async def test_harness_posts_every_attachment_under_the_prefix(
    store: S3ArtifactStore, tmp_path: Path
) -> None:
    """Traces, screenshots and the blob report land under the batch's keys."""
    files = {
        "test-results/a-chromium/trace.zip": b"PK\x03\x04trace",
        "test-results/a-chromium/test-failed-1.png": b"\x89PNG shot",
        'test-results/odd "name" \\ here/x.txt': b"odd",
        "blob/report-2.zip": b"PK blob",
    }
    shard = _shard(tmp_path, files)

    # In a thread: the proxy it posts to runs on this test's event loop.
    done = await asyncio.to_thread(_upload, shard, await store.upload_grant(PREFIX))

    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "uploaded=4 files=4"
    assert await store.keys(PREFIX) == sorted(f"{PREFIX}/{name}" for name in files)
    fetched = tmp_path / "fetched"
    await store.download(f"{PREFIX}/test-results/a-chromium/trace.zip", fetched)
    assert fetched.read_bytes() == b"PK\x03\x04trace"
    assert not (shard / "upload.curl").exists()


async def test_a_key_outside_the_prefix_is_refused(store: S3ArtifactStore) -> None:
    """The same grant cannot write another batch's or another run's objects."""
    grant = await store.upload_grant(PREFIX)

    inside = await _post(grant, f"artifacts/{PREFIX}/ok.txt", b"ok")
    other_batch = await _post(grant, "artifacts/run_1/shard-0/batch-3/x.txt", b"no")
    other_run = await _post(grant, "artifacts/run_2/shard-0/batch-2/x.txt", b"no")

    assert (inside, other_batch, other_run) == (204, 403, 403)
    assert await store.keys("run_1") == [f"{PREFIX}/ok.txt"]
    assert await store.keys("run_2") == []


async def test_an_expired_or_altered_grant_is_refused(
    aws: Aws, new_bucket: NewBucket
) -> None:
    """Past its lifetime, or with its policy edited, a grant writes nothing."""
    store = S3ArtifactStore(aws, bucket=await new_bucket(), upload_expires_s=1)
    grant = await store.upload_grant(PREFIX)
    widened = UploadGrant(
        url=grant.url,
        fields={
            **grant.fields,
            "policy": base64.b64encode(
                base64.b64decode(grant.fields["policy"]).replace(
                    f"{PREFIX}/".encode(), b"run_"
                )
            ).decode(),
        },
        key_prefix="run_",
        expires_at=grant.expires_at,
    )

    altered = await _post(widened, "run_2/x.txt", b"no")
    # What is awaited is the clock itself: the policy's second has passed.
    await asyncio.sleep(max(0.0, grant.expires_at + 1.5 - time.time()))
    expired = await _post(grant, f"{PREFIX}/late.txt", b"late")

    assert (altered, expired) == (403, 403)
    assert await store.keys("run_2") == []
    assert await store.keys(PREFIX.split("/")[0]) == []


async def test_links_are_short_lived_signed_urls(
    store: S3ArtifactStore, tmp_path: Path
) -> None:
    """A link serves the object with its content type and expires in minutes."""
    source = tmp_path / "shot.png"
    source.write_bytes(b"\x89PNG data")
    await store.put_file(f"{PREFIX}/shot.png", source)

    link = await store.link(f"{PREFIX}/shot.png")
    async with aiohttp.ClientSession() as session, session.get(link) as answer:
        body = await answer.read()
        content_type = answer.headers["Content-Type"]

    query = parse_qs(urlsplit(link).query)
    assert body == b"\x89PNG data"
    assert content_type == "image/png"
    assert query["X-Amz-Expires"] == [str(store.link_expires_s)]
    assert "X-Amz-Signature" in query
    assert urlsplit(link).path.endswith(f"/artifacts/{PREFIX}/shot.png")


async def test_keys_that_climb_out_are_refused(store: S3ArtifactStore) -> None:
    """No key may leave the store's prefix, for links as for uploads."""
    for key in ("../other/x", "/abs", "a/../../b", "a\\b"):
        with pytest.raises(UnsafeArtifactPath):
            await store.link(key)


async def test_delete_and_readiness(
    store: S3ArtifactStore, aws: Aws, tmp_path: Path
) -> None:
    """A run's prefix can be deleted; a missing bucket makes the store not ready."""
    source = tmp_path / "f"
    source.write_bytes(b"x")
    for name in ("a", "b/c"):
        await store.put_file(f"run_9/{name}", source)
    await store.delete_prefix("run_9")
    missing = S3ArtifactStore(aws, bucket="tl-no-such-bucket-here")

    assert await store.keys("run_9") == []
    assert await store.check() is None
    assert "tl-no-such-bucket-here" in (await missing.check() or "")


async def test_uploaded_attachments_lose_the_secrets_of_runs_in_flight(
    store: S3ArtifactStore, tmp_path: Path
) -> None:
    """What a host put in S3 itself is redacted as the local store is."""
    secret = "sk_live_s3cr3t_v4lu3"
    text, other = tmp_path / "log.txt", tmp_path / "clean.txt"
    text.write_text(f"token={secret} end\n")
    other.write_text("nothing to hide\n")
    await store.put_file(f"{PREFIX}/log.txt", text)
    await store.put_file(f"{PREFIX}/clean.txt", other)
    SECRET_VALUES.add([secret])
    try:
        await redact_uploaded(store, PREFIX)
    finally:
        SECRET_VALUES.remove([secret])
    back, kept = tmp_path / "back.txt", tmp_path / "kept.txt"
    await store.download(f"{PREFIX}/log.txt", back)
    await store.download(f"{PREFIX}/clean.txt", kept)

    assert secret not in back.read_text()
    assert back.read_text().startswith("token=")
    assert back.read_text().endswith(" end\n")
    assert kept.read_text() == "nothing to hide\n"
