"""Running one shard on one host: ship, start detached, follow, collect.

Everything goes over the host's SSH connection: the harness, the suite's
dependencies (only when the host lacks them), the repository, then
``traceloom-harness.sh start``, which detaches Playwright from the session.
Progress is read by polling the shard's event file from the last offset, so
a dropped connection loses nothing that was already written. Each poll waits
on the host while the shard's state stays the same (a long poll): its end is
seen at once, yet a host is asked only every ``poll_interval_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import re
import secrets
import shlex
import tarfile
import tempfile
import time
import zipfile
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs

from controlplane.domain import ShardStatus
from controlplane.engine.deps import Dependencies
from controlplane.engine.results import ShardResults, shard_verdict
from controlplane.errors import BatchNotStarted, HostError
from controlplane.fleet.base import Host
from controlplane.logs import SECRET_VALUES, get_logger, redact_text
from controlplane.remote.ssh import HostConnection, quote
from controlplane.storage.artifacts import LocalArtifactStore
from controlplane.storage.s3 import ArtifactStore, S3ArtifactStore

log = get_logger(__name__)

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_STOP_TIMEOUT_S = 30.0
_POLL_TIMEOUT_S = 60.0
# The most event bytes one poll returns (the harness's head -c).
_POLL_CAP = 4 << 20
# The longest a poll waits on the host: well inside SSH keepalives.
_MAX_WAIT_MS = 10_000
_UPLOAD_TIMEOUT_S = 900.0
_SETUP_OUTPUT_CHARS = 8000
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
    # traceloom.yml's setup steps as a script for the harness, if any.
    setup_script: str | None = None
    setup_commands: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class ShardJob:
    run_id: str
    index: int
    files: list[str]
    timeout_s: int
    env: dict[str, str]
    # What Playwright is given: a file, or a file, a tab and a test's line.
    selectors: list[str]
    # "run" the tests; "list" them (after the setup steps) or only run the
    # "setup" steps, to get a host ready while the first one lists.
    mode: str = "run"
    # Playwright projects to run; None for every project of the config.
    projects: list[str] | None = None
    # The run's secrets as variables; written to the host for this job only.
    secrets: dict[str, str] = attrs.field(factory=dict, repr=False)
    # Whether to read back how the host's setup steps went.
    report_setup: bool = False
    # Whether a run that finds no test passes (Playwright's own flag).
    pass_with_no_tests: bool = False


@attrs.frozen(kw_only=True)
class SetupReport:
    """How a host's setup steps went: status, the step at fault, the output."""

    host: str
    ok: bool
    exit_code: int | None
    # 1-based number of the last step that started.
    step: int | None
    timed_out: bool
    duration_s: float | None
    output: str

    def to_json(self) -> dict[str, object]:
        return {
            "host": self.host,
            "status": "passed" if self.ok else "failed",
            "exitCode": self.exit_code,
            "step": self.step,
            "timedOut": self.timed_out,
            "durationS": self.duration_s,
            "output": self.output,
        }


@attrs.define(kw_only=True)
class ShardOutcome:
    status: ShardStatus
    reason: str | None
    results: ShardResults
    started_at: float
    finished_at: float
    # When the host had everything and the harness was started (None when
    # only followed after a restart).
    dispatched_at: float | None = None
    # What browsers.cjs found on the host (list jobs), and the setup report.
    browsers: dict[str, Any] | None = None
    setup: SetupReport | None = None


ProgressCallback = Callable[[ShardResults], Awaitable[None]]


def env_script(env: dict[str, str]) -> str:
    """Shell lines exporting ``env``; names are checked, values quoted."""
    lines = []
    for name, value in sorted(env.items()):
        if not _ENV_NAME.match(name):
            raise ValueError(f"invalid environment variable name: {name!r}")
        lines.append(f"export {name}={shlex.quote(value)}")
    return "\n".join(lines) + "\n"


def setup_failure(setup: SetupReport, job: ShardJob, payload: Payload) -> str:
    """The reason a run gives when a host's setup steps failed."""
    what = "setup"
    if setup.step and setup.step <= len(payload.setup_commands):
        what = f"setup step {setup.step} ({payload.setup_commands[setup.step - 1]!r})"
    how = (
        f"ran past its {job.timeout_s}s timeout"
        if setup.timed_out
        else f"failed with exit code {setup.exit_code}"
    )
    lines = [line for line in setup.output.splitlines() if line.strip()]
    tail = "\n".join(lines[-15:])
    return f"traceloom.yml {what} {how} on {setup.host}:\n{tail}".strip()


def redact_artifacts(store: LocalArtifactStore, keys: list[str]) -> None:
    """Redact the secrets of runs in flight from stored attachments.

    Text attachments (Playwright's error-context.md, logs) and the entries
    of zip files (traces: network and console events) are rewritten with
    every secret value replaced; pixels (screenshots, videos) cannot hold
    the text of a value and are left as they are.
    """
    if not SECRET_VALUES.active:
        return
    for key in keys:
        redact_file(store.path_for(key))


def redact_file(path: Path) -> bool:
    """Rewrite ``path`` with secret values replaced; return whether it changed."""
    if zipfile.is_zipfile(path):
        redacted = _redact_zip(path)
        if redacted is None:
            return False
        path.write_bytes(redacted)
        return True
    data = path.read_bytes()
    clean = SECRET_VALUES.redact_bytes(data)
    if clean == data:
        return False
    path.write_bytes(clean)
    return True


async def redact_uploaded(store: S3ArtifactStore, prefix: str) -> None:
    """Redact what a host uploaded to S3 itself, as the local store is.

    The host posts its files straight to the bucket, so they are read back,
    redacted here and put again; an unredacted copy exists for as long as
    that takes.
    """
    if not SECRET_VALUES.active:
        return
    with tempfile.TemporaryDirectory(prefix="traceloom-redact-") as tmp:
        local = Path(tmp) / "object"
        for key in await store.keys(prefix):
            await store.download(key, local)
            if await asyncio.to_thread(redact_file, local):
                await store.put_file(key, local)


def _redact_zip(path: Path) -> bytes | None:
    """The zip at ``path`` with secrets redacted in its entries, None if none."""
    changed = False
    out = io.BytesIO()
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            clean = SECRET_VALUES.redact_bytes(data)
            changed = changed or clean != data
            target.writestr(info, clean, compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue() if changed else None


def setup_script(steps: list[tuple[str, str]]) -> str | None:
    """The harness script of ``(folder, command)`` setup steps, None if none."""
    if not steps:
        return None
    lines = ["# traceloom.yml setup steps; traceloom_step is the harness's"]
    for number, (folder, command) in enumerate(steps, 1):
        lines.append(
            f"traceloom_step {number} {shlex.quote(folder or '.')}"
            f" {shlex.quote(command)} || exit $?"
        )
    return "\n".join(lines) + "\n"


async def _nothing() -> None:
    return None


@contextlib.asynccontextmanager
async def _together() -> AsyncIterator[asyncio.TaskGroup]:
    """A task group whose first failure stops the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            yield group
    except BaseExceptionGroup as failed:
        raise failed.exceptions[0] from None


class Dispatcher:
    def __init__(self, store: ArtifactStore, *, poll_interval_s: float) -> None:
        self.store = store
        self.poll_interval_s = poll_interval_s
        # Set while the control plane stops with runs to resume later.
        self.suspending = False

    async def run_shard(
        self,
        host: Host,
        payload: Payload,
        job: ShardJob,
        results: ShardResults,
        on_progress: ProgressCallback,
        *,
        stop: asyncio.Event | None = None,
    ) -> ShardOutcome:
        """Run ``job`` on ``host``; ``results`` fills in as events arrive.

        Raises HostError when the host cannot be used or is lost; what it
        reported until then stays in ``results``. Once ``stop`` is set, the
        shard is stopped on its host (within a poll) and followed to its end.
        """
        return await self._drive(
            host, payload, job, results, on_progress, start=True, stop=stop
        )

    async def attach(
        self,
        host: Host,
        payload: Payload,
        job: ShardJob,
        results: ShardResults,
        on_progress: ProgressCallback,
        *,
        stop: asyncio.Event | None = None,
    ) -> ShardOutcome:
        """Follow a shard started earlier (by a previous control plane process).

        Its events are read again from the beginning, so ``results`` ends up
        as complete as if it had been followed all along. ``stop`` as for
        ``run_shard``.
        """
        return await self._drive(
            host, payload, job, results, on_progress, start=False, stop=stop
        )

    async def _drive(
        self,
        host: Host,
        payload: Payload,
        job: ShardJob,
        results: ShardResults,
        on_progress: ProgressCallback,
        *,
        start: bool,
        stop: asyncio.Event | None = None,
    ) -> ShardOutcome:
        started_at = time.time()
        conn = await HostConnection.open(host)
        shard_dir = f"{host.work_root}/runs/{job.run_id}/shard-{job.index}"
        harness = f"{host.work_root}/harness/{payload.harness_key}/traceloom-harness.sh"
        started = not start
        dispatched_at = None
        try:
            if not start:
                # The harness and the shard's folder come before its start:
                # without them the batch never began (a restart came first).
                ready = await conn.run(
                    f"test -f {shlex.quote(harness)}"
                    f" && test -f {shlex.quote(shard_dir + '/token')}",
                    check=False,
                )
                if ready.exit_status != 0:
                    raise BatchNotStarted(
                        f"batch {job.index} never started on {host.name}"
                    )
            if start:
                await self._prepare(conn, host, payload, job)
                # The shard's folder and its start in one command.
                folder = shlex.quote(shard_dir)
                starting = asyncio.ensure_future(
                    conn.run(
                        f"rm -rf {folder} && mkdir -p {folder}"
                        f" && (umask 077 && tar -x -m -C {folder}) && "
                        + quote("sh", harness, "start", shard_dir, str(job.timeout_s)),
                        stdin=self._job_archive(host, payload, job),
                    )
                )
                # From here a cancel stops the shard. The command goes on on
                # the host whatever happens here, so a cancel first lets it
                # end: a stop sent meanwhile would miss what it starts.
                started = True
                try:
                    await asyncio.shield(starting)
                except asyncio.CancelledError:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(starting, _STOP_TIMEOUT_S)
                    raise
                dispatched_at = time.time()
                log.info(
                    "shard.dispatched",
                    host=host.name,
                    files=len(job.files),
                    mode=job.mode,
                )
            exit_code, timed_out, setup_state, notice = await self._follow(
                conn,
                harness,
                shard_dir,
                job,
                results,
                on_progress,
                dispatched=start,
                stop=stop,
            )
            # What is left to read, at once over the one connection.
            wants_setup = setup_state == "failed" or (
                job.report_setup and setup_state == "ok"
            )
            async with _together() as group:
                excerpt = group.create_task(self._log_excerpt(conn, shard_dir))
                setup_read = group.create_task(
                    self._setup_report(conn, job) if wants_setup else _nothing()
                )
                found = group.create_task(self._browsers(conn, shard_dir))
                if job.mode == "run":
                    group.create_task(self._collect(conn, harness, shard_dir, results))
            log_tail, setup, browsers = (
                excerpt.result(),
                setup_read.result(),
                found.result(),
            )
            if notice:
                # What it reported and attached is kept; the rest is the lost
                # host's unfinished work, moved to another host.
                raise HostError(await self._notice(conn, shard_dir))
            await conn.run(quote("rm", "-rf", shard_dir), check=False)
        except asyncio.CancelledError:
            # A control plane that suspends leaves the shard running for the
            # next process to follow; any other cancellation stops it.
            if started and not self.suspending:
                await self._stop_quietly(conn, harness, shard_dir)
            raise
        finally:
            with contextlib.suppress(Exception):
                await conn.close()
        status: ShardStatus
        reason: str | None
        if setup is not None and not setup.ok:
            status, reason = ShardStatus.ERRORED, setup_failure(setup, job, payload)
        else:
            status, reason = shard_verdict(
                results, exit_code=exit_code, timed_out=timed_out, log_tail=log_tail
            )
        return ShardOutcome(
            status=status,
            reason=reason,
            results=results,
            started_at=started_at,
            finished_at=time.time(),
            dispatched_at=dispatched_at,
            browsers=browsers,
            setup=setup,
        )

    async def _prepare(
        self,
        conn: HostConnection,
        host: Host,
        payload: Payload,
        job: ShardJob,
    ) -> None:
        harness_dir = f"{host.work_root}/harness/{payload.harness_key}"
        deps_dir = f"{host.deps_root}/{payload.deps.key}"
        suite = host.suite_dir(job.run_id)
        # One command asks what the host has already: harness, deps, suite.
        markers = (
            f"{harness_dir}/.complete",
            f"{deps_dir}/.complete",
            f"{suite}.complete",
        )
        found = await conn.run(
            "for f in "
            + quote(*markers)
            + '; do test -f "$f" && printf 1 || printf 0; done'
        )
        answer = found.stdout.decode(errors="replace").strip()[-3:].rjust(3, "0")
        has_harness, has_deps, has_suite = (answer[i] == "1" for i in range(3))
        if not has_harness:
            # Unpacked aside and moved in whole: shards starting at once on
            # one host (a static host's slots) never see a half-written one.
            quoted = shlex.quote(harness_dir)
            await conn.send_file(
                f"mkdir -p {quoted}.parts && tmp=$(mktemp -d {quoted}.parts/XXXXXX)"
                f' && tar -x -C "$tmp" && touch "$tmp/.complete"'
                f' && {{ mv -T "$tmp" {quoted} 2>/dev/null || rm -rf "$tmp"; }}'
                f" && test -f {quoted}/.complete",
                payload.harness_archive,
            )
        harness = f"{harness_dir}/traceloom-harness.sh"
        if not has_deps:
            log.info("deps.shipping", host=host.name, key=payload.deps.key)
            await conn.send_file(
                quote("sh", harness, "deps-put", deps_dir), payload.deps.archive
            )
        # One copy of the repository per host and run, at the same path on
        # every host of the run (see Host.suite_dir); shards keep their
        # outputs in their own folders.
        if not has_suite:
            if payload.setup_script is not None:
                await conn.run(
                    f"mkdir -p {shlex.quote(str(Path(suite).parent))}"
                    f" && cat > {shlex.quote(f'{suite}.setup.sh')}",
                    stdin=payload.setup_script.encode(),
                )
            await conn.send_file(
                quote("sh", harness, "suite-put", suite, deps_dir, payload.package_dir),
                payload.suite_archive,
            )

    def _job_archive(self, host: Host, payload: Payload, job: ShardJob) -> bytes:
        """The shard folder's files as one tar, readable by their owner only."""
        suite = host.suite_dir(job.run_id)
        deps_dir = f"{host.deps_root}/{payload.deps.key}"
        files = {
            "args": "".join(f"{s}\n" for s in job.selectors),
            "suite_path": suite + "\n",
            "deps_path": deps_dir + "\n",
            "index": f"{job.index}\n",
            "workdir": (payload.config_dir or ".") + "\n",
            "mode": job.mode + "\n",
            "env.sh": env_script(job.env),
            "token": secrets.token_hex(16) + "\n",
        }
        if job.projects is not None:
            files["projects"] = "".join(f"{p}\n" for p in job.projects)
        if job.pass_with_no_tests:
            files["pass_with_no_tests"] = ""
        if job.secrets:
            # Deleted by the harness as soon as Playwright has read it.
            files["secrets.sh"] = env_script(job.secrets)
        buffer = io.BytesIO()
        now = time.time()
        with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o600
                info.mtime = int(now)
                tar.addfile(info, io.BytesIO(data))
        return buffer.getvalue()

    async def _follow(
        self,
        conn: HostConnection,
        harness: str,
        shard_dir: str,
        job: ShardJob,
        results: ShardResults,
        on_progress: ProgressCallback,
        *,
        dispatched: bool,
        stop: asyncio.Event | None = None,
    ) -> tuple[int | None, bool, str, bool]:
        """Feed events until the shard is done.

        Returns its exit code, whether it timed out, the state of its setup
        steps and whether its instance gave notice (Spot interruption).
        ``dispatched`` is False when following a batch an earlier process
        recorded: a folder missing at once means it never began.
        """
        attached = dispatched
        loop = asyncio.get_running_loop()
        # Setup steps get their own timeout before Playwright's starts.
        deadline = loop.time() + job.timeout_s + _DEADLINE_GRACE_S
        running = False
        offset = 0
        stopped_here = False
        stopped_early = False
        # The host waits for a change of state (a long poll), so "done" is
        # seen within a tenth of a second; new events come at least this often.
        wait_ms = min(max(int(self.poll_interval_s * 1000), 0), _MAX_WAIT_MS)
        seen = ""
        chunk = b""
        while True:
            # No wait when the state is final or events are left to drain.
            drain = seen in ("done", "missing") or len(chunk) >= _POLL_CAP
            waiting = 0 if drain else wait_ms
            asked, began = seen, loop.time()
            polled = await conn.run(
                quote(
                    "sh", harness, "poll", shard_dir, str(offset), str(waiting), seen
                ),
                timeout_s=_POLL_TIMEOUT_S + waiting / 1000,
            )
            header, _, chunk = polled.stdout.partition(b"\n")
            fields = dict(
                item.split("=", 1) for item in header.decode().split() if "=" in item
            )
            seen = fields.get("state", "")
            # A host that did not wait (its sleep takes whole seconds only)
            # is not asked again at once: no tight loop over SSH.
            hurried = seen == asked and loop.time() - began < waiting / 2000
            started = fields.get("started", "-")
            if started.isdigit():
                results.started_ms = int(started)
            if fields.get("state") == "running" and not running:
                running = True
                deadline = loop.time() + job.timeout_s + _DEADLINE_GRACE_S
            if chunk:
                results.feed(chunk)
                offset += len(chunk)
                await on_progress(results)
            if fields.get("state") == "done" and not chunk:
                code = fields.get("exit", "-")
                exit_code = int(code) if code.lstrip("-").isdigit() else None
                timed_out = stopped_here or fields.get("timed_out") == "yes"
                return (
                    exit_code,
                    timed_out,
                    fields.get("setup", "none"),
                    fields.get("notice") == "yes",
                )
            if fields.get("state") == "missing":
                if not attached:
                    # Followed again after a restart, but it never began.
                    raise BatchNotStarted(
                        f"batch {job.index} never started on {conn.host.name}"
                    )
                raise HostError(f"shard folder vanished on {conn.host.name}")
            attached = True
            if stop is not None and stop.is_set() and not stopped_early:
                log.info("shard.stopping", host=conn.host.name, batch=job.index)
                await conn.run(
                    quote("sh", harness, "stop", shard_dir), timeout_s=_STOP_TIMEOUT_S
                )
                stopped_early = True
            if loop.time() > deadline and not stopped_here:
                log.warning("shard.deadline", host=conn.host.name)
                await conn.run(
                    quote("sh", harness, "stop", shard_dir), timeout_s=_STOP_TIMEOUT_S
                )
                stopped_here = True
            if not chunk and (not waiting or hurried):
                await asyncio.sleep(max(self.poll_interval_s, 0.05))

    async def _notice(self, conn: HostConnection, shard_dir: str) -> str:
        """Why the host stopped the shard: its instance's notice, in one line."""
        text = await conn.run(
            quote("head", "-c", "500", f"{shard_dir}/notice"), check=False
        )
        notice = " ".join(text.stdout.decode(errors="replace").split())
        log.warning("host.notice", host=conn.host.name, notice=notice)
        return f"{conn.host.name} is going away ({notice or 'instance notice'})"

    async def _log_excerpt(self, conn: HostConnection, shard_dir: str) -> str:
        """Playwright's output, its start and its end when it is long.

        The start holds the error (a config that does not load names its
        message and line there); the end holds what it did last.
        """
        log_file = shlex.quote(f"{shard_dir}/playwright.log")
        text = await conn.run(
            f"[ -f {log_file} ] || exit 0; size=$(wc -c < {log_file});"
            f' if [ "$size" -le 2000 ]; then cat {log_file};'
            f" else head -c 1300 {log_file}; printf '\\n[...]\\n';"
            f" tail -c 600 {log_file}; fi",
            check=False,
        )
        return redact_text(text.stdout.decode(errors="replace").strip())

    async def _setup_report(self, conn: HostConnection, job: ShardJob) -> SetupReport:
        """Read back how the setup steps went on this host."""
        suite = conn.host.suite_dir(job.run_id)
        names = ("setup-failed", "setup-step", "setup-ms", "setup-timed-out")
        values: dict[str, str] = {}
        for name in names:
            done = await conn.run(quote("cat", f"{suite}.{name}"), check=False)
            if done.exit_status == 0:
                values[name] = done.stdout.decode(errors="replace").strip()
        tail = await conn.run(
            quote("tail", "-c", str(_SETUP_OUTPUT_CHARS), f"{suite}.setup.log"),
            check=False,
        )
        exit_text = values.get("setup-failed", "0")
        step = values.get("setup-step", "")
        ms = values.get("setup-ms", "")
        return SetupReport(
            host=conn.host.name,
            ok="setup-failed" not in values,
            exit_code=int(exit_text) if exit_text.lstrip("-").isdigit() else None,
            step=int(step) if step.isdigit() else None,
            timed_out="setup-timed-out" in values,
            duration_s=round(int(ms) / 1000, 3) if ms.isdigit() else None,
            output=redact_text(tail.stdout.decode(errors="replace")),
        )

    async def _browsers(
        self, conn: HostConnection, shard_dir: str
    ) -> dict[str, Any] | None:
        """What browsers.cjs found on the host, or None if it said nothing."""
        done = await conn.run(quote("cat", f"{shard_dir}/browsers.json"), check=False)
        try:
            found = json.loads(done.stdout) if done.exit_status == 0 else None
        except ValueError:
            return None
        return found if isinstance(found, dict) else None

    async def _collect(
        self, conn: HostConnection, harness: str, shard_dir: str, results: ShardResults
    ) -> None:
        if isinstance(self.store, S3ArtifactStore):
            await self._upload(conn, harness, shard_dir, results)
            return
        with tempfile.TemporaryDirectory(prefix="traceloom-pack-") as tmp:
            archive = Path(tmp) / "attachments.tar"
            await conn.receive_file(quote("sh", harness, "pack", shard_dir), archive)
            if archive.stat().st_size:
                keys = await asyncio.to_thread(
                    self.store.unpack_tar, archive, results.artifact_prefix
                )
                await asyncio.to_thread(redact_artifacts, self.store, keys)

    async def _upload(
        self, conn: HostConnection, harness: str, shard_dir: str, results: ShardResults
    ) -> None:
        """Have the host post its attachments to S3 under the batch's prefix.

        The host gets a presigned upload limited to that prefix, never a
        credential. A failed upload loses artifacts, not results: it is
        logged, and the batch's verdict stands.
        """
        assert isinstance(self.store, S3ArtifactStore)
        grant = await self.store.upload_grant(results.artifact_prefix)
        await conn.run(
            f"umask 077 && cat > {shlex.quote(f'{shard_dir}/upload.curl')}",
            stdin=grant.curl_config().encode(),
        )
        done = await conn.run(
            quote("sh", harness, "upload", shard_dir, grant.key_prefix),
            check=False,
            timeout_s=_UPLOAD_TIMEOUT_S,
        )
        summary = redact_text((done.stdout or done.stderr).decode(errors="replace"))
        if done.exit_status != 0:
            log.warning(
                "artifacts.upload_failed",
                host=conn.host.name,
                prefix=results.artifact_prefix,
                output=summary.strip()[-1500:],
            )
            return
        log.info(
            "artifacts.uploaded",
            prefix=results.artifact_prefix,
            summary=summary.strip(),
        )
        await redact_uploaded(self.store, results.artifact_prefix)

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
