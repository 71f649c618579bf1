"""The dispatcher against a real loopback SSH host."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

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


async def _put_harness(conn: HostConnection, host: Host, payload: Payload) -> str:
    """Unpack the harness on the host; return the path of its script."""
    folder = f"{host.work_root}/harness/{payload.harness_key}"
    await conn.send_file(
        f"mkdir -p {quote(folder)} && tar -x -C {quote(folder)}",
        payload.harness_archive,
    )
    return f"{folder}/traceloom-harness.sh"


async def _put_playwright(conn: HostConnection, suite: str, script: str) -> None:
    """Put ``script`` where the harness looks for the suite's Playwright."""
    target = quote(suite + "/node_modules/.bin/playwright")
    await conn.run(
        f"mkdir -p {quote(suite + '/node_modules/.bin')}"
        f" && cat > {target} && chmod +x {target}",
        stdin=script.encode(),
    )


@pytest.mark.parametrize("prepared", [False, True], ids=["bare-host", "not-begun"])
async def test_following_a_batch_that_never_began_says_so(
    host: Host, tmp_path: Path, prepared: bool
) -> None:
    """A batch recorded before a restart but never started is not a lost host."""
    payload = _payload(tmp_path)
    if prepared:
        conn = await HostConnection.open(host)
        await _put_harness(conn, host, payload)
        shard = f"{host.work_root}/runs/{RUN}/shard-3"
        # Prepared (its token written) but stopped before the harness began.
        await conn.run(f"mkdir -p {quote(shard)} && echo t > {quote(shard + '/token')}")
        await conn.close()
    results = ShardResults(run_id=RUN, shard_index=0, artifact_prefix=f"{RUN}/x")
    dispatcher = Dispatcher(LocalArtifactStore(tmp_path / "store"), poll_interval_s=0.1)

    with pytest.raises(BatchNotStarted, match="batch 3 never started"):
        await dispatcher.attach(host, payload, _job(3), results, _nothing)


@pytest.mark.parametrize(("leaves_child", "checks"), [(True, 1), (False, 0)])
async def test_what_a_shard_leaves_running_is_stopped_at_the_first_look(
    host: Host, tmp_path: Path, leaves_child: bool, checks: int
) -> None:
    """The harness's last stop ends a leftover child and sees at once it is gone.

    Its own looking (the commands that read /proc) is not part of the shard:
    when it was, every shard waited out the whole grace before it ended. A
    Playwright that leaves nothing needs no look at all: the watchdogs'
    sleeps end with them, so the stop finds nothing to wait for.
    """
    payload = _payload(tmp_path)
    conn = await HostConnection.open(host)
    try:
        harness = await _put_harness(conn, host, payload)
        suite = host.suite_dir(RUN)
        shard = f"{host.work_root}/runs/{RUN}/shard-0"
        # A stand-in for Playwright: it leaves a child behind and exits 0.
        fake = '#!/bin/sh\nsleep 300 &\necho $! > "$TRACELOOM_SHARD_DIR/leftover"\n'
        if not leaves_child:
            fake = '#!/bin/sh\necho 999999999 > "$TRACELOOM_SHARD_DIR/leftover"\n'
        await _put_playwright(conn, suite, fake)
        await conn.run(quote("mkdir", "-p", shard))
        for name, text in {
            "token": "leftover-test\n",
            "suite_path": suite + "\n",
            "args": "a.spec.ts\n",
            "mode": "run\n",
        }.items():
            await conn.run(f"cat > {quote(shard + '/' + name)}", stdin=text.encode())

        await conn.run(quote("sh", harness, "start", shard, "60"))
        for _ in range(300):
            state = await conn.run(quote("cat", f"{shard}/state"))
            if state.stdout.strip() == b"done":
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the shard did not end")
        log = (await conn.run(quote("cat", f"{shard}/harness.log"))).stdout.decode()
        leftover = (await conn.run(quote("cat", f"{shard}/leftover"))).stdout.strip()
        alive = await conn.run(quote("kill", "-0", leftover.decode()), check=False)
    finally:
        await conn.close()

    assert f"leftovers stopped after {checks} checks" in log, log
    assert alive.exit_status != 0


async def test_a_poll_waits_on_the_host_for_the_state_to_change(
    host: Host, tmp_path: Path
) -> None:
    """A long poll returns as soon as the state is not the one the caller saw.

    It returns at once when the state already differs, waits out its time
    when nothing changes, and cuts the wait short on a change, so a shard's
    end is seen at once without asking the host ten times a second.
    """
    payload = _payload(tmp_path)
    conn = await HostConnection.open(host)
    loop = asyncio.get_running_loop()
    try:
        harness = await _put_harness(conn, host, payload)
        shard = f"{host.work_root}/runs/{RUN}/shard-0"
        await conn.run(
            f"mkdir -p {quote(shard)} && echo running > {quote(shard + '/state')}"
            f" && printf '{{}}\\n' > {quote(shard + '/events.jsonl')}"
        )

        async def poll(wait_ms: int, seen: str) -> tuple[str, float]:
            began = loop.time()
            done = await conn.run(
                quote("sh", harness, "poll", shard, "0", str(wait_ms), seen)
            )
            return done.stdout.decode(), loop.time() - began

        changed, changed_s = await poll(20_000, "starting")
        unchanged, unchanged_s = await poll(600, "running")
        # The state changes while a poll with a long wait is under way.
        await conn.run(
            f"(sleep 1; echo done > {quote(shard + '/state')}) >/dev/null 2>&1 &"
        )
        ended, ended_s = await poll(20_000, "running")
    finally:
        await conn.close()

    assert changed.startswith("state=running ")
    assert changed.endswith("{}\n")
    assert changed_s < 10, changed_s
    assert unchanged.startswith("state=running ")
    assert unchanged_s >= 0.6
    assert ended.startswith("state=done "), ended
    assert 1.0 <= ended_s < 10, ended_s


@pytest.mark.parametrize("after_s", [0.0, 0.003, 0.01, 0.02, 0.05, 0.1])
async def test_a_cancel_while_a_shard_starts_leaves_nothing_running(
    host: Host, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, after_s: float
) -> None:
    """A cancel that lands while the shard starts still stops it.

    The start command goes on on the host whatever the control plane does,
    and a stop can reach the harness before it has started Playwright: the
    stop must still keep Playwright from running.
    """
    payload = _payload(tmp_path)
    suite = host.suite_dir(RUN)
    shard = f"{host.work_root}/runs/{RUN}/shard-0"
    conn = await HostConnection.open(host)
    try:
        await _put_harness(conn, host, payload)
        # A stand-in for Playwright that would run for minutes.
        fake = '#!/bin/sh\necho $$ > "$TRACELOOM_SHARD_DIR/pw.pid"\nexec sleep 300\n'
        await _put_playwright(conn, suite, fake)
    finally:
        await conn.close()

    async def already_there(*_args: object) -> None:
        return None

    sent = asyncio.Event()
    real_run = HostConnection.run

    async def run(self: HostConnection, command: str, **kwargs: Any) -> Any:
        if " start " in command:
            sent.set()
        return await real_run(self, command, **kwargs)

    monkeypatch.setattr(Dispatcher, "_prepare", already_there)
    monkeypatch.setattr(HostConnection, "run", run)
    dispatcher = Dispatcher(LocalArtifactStore(tmp_path / "store"), poll_interval_s=0.1)
    results = ShardResults(run_id=RUN, shard_index=0, artifact_prefix=f"{RUN}/x")
    task = asyncio.create_task(
        dispatcher.run_shard(host, payload, _job(0), results, _nothing)
    )
    await asyncio.wait_for(sent.wait(), 30)
    await asyncio.sleep(after_s)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    monkeypatch.undo()

    conn = await HostConnection.open(host)
    try:
        # Whatever began must be gone; give a late start its moment first.
        await asyncio.sleep(1.0)
        check = await conn.run(
            f"[ -f {quote(shard + '/pw.pid')} ] || exit 0;"
            f' kill -0 "$(cat {quote(shard + "/pw.pid")})" 2>/dev/null && echo alive;'
            " exit 0"
        )
    finally:
        await conn.close()
    assert check.stdout.strip() == b"", "the shard's Playwright is still running"
