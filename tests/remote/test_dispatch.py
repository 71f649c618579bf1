"""The dispatcher against a real loopback SSH host."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from controlplane.engine.deps import Dependencies
from controlplane.engine.prepare import harness_archive
from controlplane.engine.results import ShardResults
from controlplane.errors import BatchNotStarted
from controlplane.fleet.base import Host
from controlplane.fleet.local import LocalProvider
from controlplane.remote.dispatch import Dispatcher, Payload, ShardJob
from controlplane.remote.ssh import HostConnection, quote
from controlplane.storage.artifacts import LocalArtifactStore

RUN = "run_dispatch_test"


@pytest.fixture
async def host(tmp_path: Path) -> AsyncIterator[Host]:
    provider = LocalProvider(
        hosts_dir=tmp_path / "hosts", deps_dir=tmp_path / "deps", max_hosts=1
    )
    [started] = await provider.acquire(RUN, 1)
    yield started
    await provider.close()


def _payload(tmp_path: Path) -> Payload:
    key, archive = harness_archive(tmp_path / "harness")
    return Payload(
        harness_key=key,
        harness_archive=archive,
        deps=Dependencies("k", tmp_path / "nm", tmp_path / "deps.tar"),
        suite_archive=tmp_path / "suite.tar",
        config_dir="",
        package_dir="",
    )


def _job(index: int) -> ShardJob:
    return ShardJob(
        run_id=RUN, index=index, files=["a.spec.ts"], timeout_s=60, env={},
        selectors=["a.spec.ts"],
    )  # fmt: skip


async def _nothing(_results: ShardResults) -> None:
    return None


@pytest.mark.parametrize("prepared", [False, True], ids=["bare-host", "not-begun"])
async def test_following_a_batch_that_never_began_says_so(
    host: Host, tmp_path: Path, prepared: bool
) -> None:
    """A batch recorded before a restart but never started is not a lost host."""
    payload = _payload(tmp_path)
    if prepared:
        folder = f"{host.work_root}/harness/{payload.harness_key}"
        conn = await HostConnection.open(host)
        await conn.send_file(
            f"mkdir -p {folder} && tar -x -C {folder}", payload.harness_archive
        )
        shard = f"{host.work_root}/runs/{RUN}/shard-3"
        # Prepared (its token written) but stopped before the harness began.
        await conn.run(f"mkdir -p {quote(shard)} && echo t > {quote(shard + '/token')}")
        await conn.close()
    results = ShardResults(run_id=RUN, shard_index=0, artifact_prefix=f"{RUN}/x")
    dispatcher = Dispatcher(LocalArtifactStore(tmp_path / "store"), poll_interval_s=0.1)

    with pytest.raises(BatchNotStarted, match="batch 3 never started"):
        await dispatcher.attach(host, payload, _job(3), results, _nothing)
