"""Running one shard on one host: ship, start detached, follow, collect.

Everything goes over the host's SSH connection: the harness, the suite's
dependencies (only when the host lacks them), the repository, then
``traceloom-harness.sh start``, which detaches Playwright from the session.
Progress is read by polling the shard's event file from the last offset, so
a dropped connection loses nothing that was already written.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import shlex
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import attrs

from controlplane.domain import ShardStatus
from controlplane.engine.deps import Dependencies
from controlplane.engine.results import ShardResults, shard_verdict
from controlplane.errors import HostError
from controlplane.fleet.base import Host
from controlplane.logs import get_logger, redact_text
from controlplane.remote.ssh import HostConnection, quote
from controlplane.storage.artifacts import LocalArtifactStore

log = get_logger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_STOP_TIMEOUT_S = 30.0
# How long past its own timeout a shard may take to report before the
# control plane stops it from here (the host's watchdog should act first).
_DEADLINE_GRACE_S = 30.0


@attrs.frozen(kw_only=True)
class Payload:
    """What every shard of a run ships: harness, dependencies and suite."""

    harness_key: str
    harness_archive: Path
    deps: Dependencies
    suite_archive: Path
    config_dir: str
    package_dir: str


@attrs.frozen(kw_only=True)
class ShardJob:
    run_id: str
    index: int
    files: list[str]
    timeout_s: int
    env: dict[str, str]
    # What Playwright is given: a file, or a file, a tab and a test's line.
    selectors: list[str]


@attrs.define(kw_only=True)
class ShardOutcome:
    status: ShardStatus
    reason: str | None
    results: ShardResults
    started_at: float
    finished_at: float


ProgressCallback = Callable[[ShardResults], Awaitable[None]]


def env_script(env: dict[str, str]) -> str:
    """Shell lines exporting ``env``; names are checked, values quoted."""
    lines = []
    for name, value in sorted(env.items()):
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


class Dispatcher:
    def __init__(self, store: LocalArtifactStore, *, poll_interval_s: float) -> None:
        self.store = store
        self.poll_interval_s = poll_interval_s

    async def run_shard(
        self,
        host: Host,
        payload: Payload,
        job: ShardJob,
        results: ShardResults,
        on_progress: ProgressCallback,
    ) -> ShardOutcome:
        """Run ``job`` on ``host``; ``results`` fills in as events arrive.

        Raises HostError when the host cannot be used or is lost; what it
        reported until then stays in ``results``.
        """
        return await self._drive(host, payload, job, results, on_progress, start=True)

    async def attach(
        self,
        host: Host,
        payload: Payload,
        job: ShardJob,
        results: ShardResults,
        on_progress: ProgressCallback,
    ) -> ShardOutcome:
        """Follow a shard started earlier (by a previous control plane process).

        Its events are read again from the beginning, so ``results`` ends up
        as complete as if it had been followed all along.
        """
        return await self._drive(host, payload, job, results, on_progress, start=False)

    async def _drive(
        self,
        host: Host,
        payload: Payload,
        job: ShardJob,
        results: ShardResults,
        on_progress: ProgressCallback,
        *,
        start: bool,
    ) -> ShardOutcome:
        started_at = time.time()
        conn = await HostConnection.open(host)
        shard_dir = f"{host.work_root}/runs/{job.run_id}/shard-{job.index}"
        harness = f"{host.work_root}/harness/{payload.harness_key}/traceloom-harness.sh"
        started = not start
        try:
            if start:
                await self._prepare(conn, host, payload, job, shard_dir)
                await conn.run(
                    quote("sh", harness, "start", shard_dir, str(job.timeout_s))
                )
                started = True
                log.info("shard.dispatched", host=host.name, files=len(job.files))
            exit_code, timed_out, notice = await self._follow(
                conn, harness, shard_dir, job, results, on_progress
            )
            log_tail = await self._log_tail(conn, shard_dir)
            await self._collect(conn, harness, shard_dir, results)
            if notice:
                # What it reported and attached is kept; the rest is the lost
                # host's unfinished work, moved to another host.
                raise HostError(await self._notice(conn, shard_dir))
            await conn.run(quote("rm", "-rf", shard_dir), check=False)
        except asyncio.CancelledError:
            if started:
                await self._stop_quietly(conn, harness, shard_dir)
            raise
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
        status, reason = shard_verdict(
            results, exit_code=exit_code, timed_out=timed_out, log_tail=log_tail
        )
        return ShardOutcome(
            status=status,
            reason=reason,
            results=results,
            started_at=started_at,
            finished_at=time.time(),
        )

    async def _prepare(
        self,
        conn: HostConnection,
        host: Host,
        payload: Payload,
        job: ShardJob,
        shard_dir: str,
    ) -> None:
        harness_dir = f"{host.work_root}/harness/{payload.harness_key}"
        check = await conn.run(
            quote("test", "-f", f"{harness_dir}/.complete"), check=False
        )
        if check.exit_status != 0:
            quoted = shlex.quote(harness_dir)
            await conn.send_file(
                f"mkdir -p {quoted} && tar -x -C {quoted} && touch {quoted}/.complete",
                payload.harness_archive,
            )
        harness = f"{harness_dir}/traceloom-harness.sh"
        deps_dir = f"{host.deps_root}/{payload.deps.key}"
        has = await conn.run(quote("sh", harness, "deps-has", deps_dir), check=False)
        if has.exit_status != 0:
            log.info("deps.shipping", host=host.name, key=payload.deps.key)
            await conn.send_file(
                quote("sh", harness, "deps-put", deps_dir), payload.deps.archive
            )
        # One copy of the repository per host and run, at the same path on
        # every remote host; shards keep their outputs in their own folders.
        suite = f"{host.work_root}/runs/{job.run_id}/suite"
        has_suite = await conn.run(
            quote("test", "-f", f"{suite}.complete"), check=False
        )
        if has_suite.exit_status != 0:
            await conn.send_file(
                quote("sh", harness, "suite-put", suite, deps_dir, payload.package_dir),
                payload.suite_archive,
            )
        await conn.run(quote("rm", "-rf", shard_dir))
        await conn.run(quote("mkdir", "-p", shard_dir))
        files = {
            "args": "".join(f"{s}\n" for s in job.selectors),
            "suite_path": suite + "\n",
            "index": f"{job.index}\n",
            "workdir": (payload.config_dir or ".") + "\n",
            "env.sh": env_script(job.env),
            "token": secrets.token_hex(16) + "\n",
        }
        for name, text in files.items():
            await conn.run(
                f"cat > {shlex.quote(f'{shard_dir}/{name}')}", stdin=text.encode()
            )

    async def _follow(
        self,
        conn: HostConnection,
        harness: str,
        shard_dir: str,
        job: ShardJob,
        results: ShardResults,
        on_progress: ProgressCallback,
    ) -> tuple[int | None, bool, bool]:
        """Feed events until the shard is done: exit code, timed out, notice."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + job.timeout_s + _DEADLINE_GRACE_S
        offset = 0
        stopped_here = False
        while True:
            polled = await conn.run(
                quote("sh", harness, "poll", shard_dir, str(offset))
            )
            header, _, chunk = polled.stdout.partition(b"\n")
            fields = dict(
                item.split("=", 1) for item in header.decode().split() if "=" in item
            )
            started = fields.get("started", "-")
            if started.isdigit():
                results.started_ms = int(started)
            if chunk:
                results.feed(chunk)
                offset += len(chunk)
                await on_progress(results)
            if fields.get("state") == "done" and not chunk:
                code = fields.get("exit", "-")
                exit_code = int(code) if code.lstrip("-").isdigit() else None
                return (
                    exit_code,
                    stopped_here or fields.get("timed_out") == "yes",
                    fields.get("notice") == "yes",
                )
            if fields.get("state") == "missing":
                raise HostError(f"shard folder vanished on {conn.host.name}")
            if loop.time() > deadline and not stopped_here:
                log.warning("shard.deadline", host=conn.host.name)
                await conn.run(
                    quote("sh", harness, "stop", shard_dir), timeout_s=_STOP_TIMEOUT_S
                )
                stopped_here = True
            if not chunk:
                await asyncio.sleep(self.poll_interval_s)

    async def _notice(self, conn: HostConnection, shard_dir: str) -> str:
        """Why the host stopped the shard: its instance's notice, in one line."""
        text = await conn.run(
            quote("head", "-c", "500", f"{shard_dir}/notice"), check=False
        )
        notice = " ".join(text.stdout.decode(errors="replace").split())
        log.warning("host.notice", host=conn.host.name, notice=notice)
        return f"{conn.host.name} is going away ({notice or 'instance notice'})"

    async def _log_tail(self, conn: HostConnection, shard_dir: str) -> str:
        tail = await conn.run(
            quote("tail", "-c", "1500", f"{shard_dir}/playwright.log"), check=False
        )
        return redact_text(tail.stdout.decode(errors="replace").strip())

    async def _collect(
        self, conn: HostConnection, harness: str, shard_dir: str, results: ShardResults
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="traceloom-pack-") as tmp:
            archive = Path(tmp) / "attachments.tar"
            await conn.receive_file(quote("sh", harness, "pack", shard_dir), archive)
            if archive.stat().st_size:
                await asyncio.to_thread(
                    self.store.unpack_tar, archive, results.artifact_prefix
                )

    async def _stop_quietly(
        self, conn: HostConnection, harness: str, shard_dir: str
    ) -> None:
        try:
            await asyncio.shield(
                conn.run(
                    quote("sh", harness, "stop", shard_dir), timeout_s=_STOP_TIMEOUT_S
                )
            )
        except (HostError, asyncio.CancelledError) as exc:
            log.warning("shard.stop_failed", error=str(exc))
