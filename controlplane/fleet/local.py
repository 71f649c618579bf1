"""The embedded default: SSH hosts on 127.0.0.1, started per run.

Each host is a ``localhost_server`` process with its own folder, its own
host key (made here, so it is known before the first connection) and a
per-run client key. The dispatcher reaches them through the same asyncssh
client as any other host. Every host process is stopped when its run ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import asyncssh
import attrs

from controlplane.errors import HostError
from controlplane.fleet.base import Host
from controlplane.fleet.procs import kill_marked
from controlplane.logs import get_logger

log = get_logger(__name__)

_START_TIMEOUT_S = 20.0


def detect_netns() -> str:
    """Which kind of network namespace this machine lets us make, or "off"."""
    candidates = ["root"] if os.geteuid() == 0 else []
    candidates.append("user")
    for mode in candidates:
        prefix = (
            ["unshare", "--net"]
            if mode == "root"
            else ["unshare", "--user", "--map-root-user", "--net"]
        )
        try:
            probe = subprocess.run(
                [*prefix, "--", "sh", "-c", "ip link set lo up"],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return mode
    return "off"


def detect_private_mounts(netns: str) -> bool:
    """Whether commands in ``netns`` mode can also bind folders privately."""
    if netns not in ("root", "user"):
        return False
    from controlplane.fleet.localhost_server import netns_prefix

    with tempfile.TemporaryDirectory(prefix="traceloom-mounts-") as tmp:
        source, target = Path(tmp, "a"), Path(tmp, "b")
        source.mkdir()
        target.mkdir()
        (source / "probe").touch()
        try:
            probe = subprocess.run(
                [
                    *netns_prefix(netns, mounts=True),
                    *("sh", "-c", 'mount --bind "$0" "$1" && test -f "$1/probe"'),
                    *(str(source), str(target)),
                ],
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
    return probe.returncode == 0


def _server_alive(pid: int) -> bool:
    """Whether ``pid`` is a live (not zombie) local host server."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and b"controlplane.fleet.localhost_server" in cmdline


def _lane_of(suite_path: str) -> int | None:
    """The lane in a suite path made by ``_suite_path``; None for no lane."""
    name = suite_path.rsplit("/", 1)[-1]
    number = name.removeprefix("suite-")
    if not name.startswith("suite-") or not number.isdecimal():
        return None
    return int(number)


async def _first_line(process: asyncio.subprocess.Process) -> bytes:
    """The host server's first line (``listening PORT``), b"" if none in time."""
    assert process.stdout is not None
    try:
        return await asyncio.wait_for(process.stdout.readline(), _START_TIMEOUT_S)
    except TimeoutError:
        return b""


async def _discard(process: asyncio.subprocess.Process | None, folder: Path) -> None:
    """Stop a host that never became one of a run's, and remove its folder."""
    if process is not None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
    await asyncio.to_thread(shutil.rmtree, folder, True)


@attrs.define
class _LocalHostProcess:
    host: Host
    folder: Path
    # None for a host adopted after a control plane restart: not our child.
    process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        return self.process.pid if self.process else int(self.host.handle)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.returncode is None
        return _server_alive(self.pid)


class LocalProvider:
    """Starts ``count`` loopback SSH hosts per run, at most ``max_hosts`` live."""

    def __init__(
        self,
        *,
        hosts_dir: Path,
        deps_dir: Path,
        max_hosts: int,
        chromium_path: str = "",
        netns: str | None = None,
        idle_timeout_s: float = 120.0,
    ) -> None:
        self.idle_timeout_s = idle_timeout_s
        self.hosts_dir = hosts_dir.resolve()
        self.deps_dir = deps_dir.resolve()
        self.max_hosts = max_hosts
        self.chromium_path = chromium_path
        self.netns = detect_netns() if netns is None else netns
        # Every host sees its own folder at this one path, when the machine
        # allows private mounts: shards then run from the same absolute
        # folder everywhere, which Playwright's merge of blob reports needs.
        self.shared_work_root: Path | None = None
        if detect_private_mounts(self.netns):
            self.shared_work_root = self.hosts_dir / "work"
            self.shared_work_root.mkdir(parents=True, exist_ok=True)
        self._live: dict[str, list[_LocalHostProcess]] = {}
        # Each run's suite folder (see _suite_path); None: a folder per run.
        self._lanes: dict[str, int | None] = {}
        self._starting = 0
        self._next_index: dict[str, int] = {}
        self._capacity = asyncio.Condition()
        if self.netns == "off":
            log.warning(
                "local.netns_unavailable",
                detail="local hosts share one network; a suite whose web server"
                " uses a fixed port can run on one local host at a time",
            )
        if self.shared_work_root is None:
            # XXX: without private mounts local hosts keep different folders and
            # a run over several of them gets no merged report; a fixed path per
            # host slot (one run at a time) would remove this.
            log.warning(
                "local.no_shared_work_root",
                detail="local hosts keep their files at different paths; the"
                " merged Playwright report of a run over several hosts fails",
            )

    @property
    def live_count(self) -> int:
        """Hosts running or being started, over every run."""
        return sum(len(hosts) for hosts in self._live.values()) + self._starting

    async def acquire(self, run_id: str, count: int) -> list[Host]:
        if count > self.max_hosts:
            raise HostError(
                f"serverCount {count} exceeds the local provider's cap of"
                f" {self.max_hosts} hosts (TRACELOOM_LOCAL_MAX_HOSTS)"
            )
        await self._prune_dead(run_id)
        async with self._capacity:
            await self._capacity.wait_for(
                lambda: self.live_count + count <= self.max_hosts
            )
            # Claimed now, before any host is up, so that runs asking at the
            # same moment cannot all pass the check.
            self._starting += count
            self._live.setdefault(run_id, [])
            if run_id not in self._lanes:
                # No await between the claim above and the try below: a
                # cancel here would leave the claim counted for good.
                self._lanes[run_id] = self._free_lane()
            first = self._next_index.get(run_id, 0)
            self._next_index[run_id] = first + count
        client_key = asyncssh.generate_private_key("ssh-ed25519")
        try:
            starts = [self._start(run_id, first + i, client_key) for i in range(count)]
            results = await asyncio.gather(*starts, return_exceptions=True)
        finally:
            # Started hosts are in _live now; failed ones are not anywhere.
            self._starting -= count
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            await self.release(run_id)
            raise failures[0]
        return [h for h in results if isinstance(h, Host)]

    def _free_lane(self) -> int | None:
        """The lowest suite folder no run in flight uses, or None.

        A run keeps its repository at ``<work root>/suite-<lane>``, a path
        that names no run, so the next run given the lane finds Playwright's
        transform cache warm. Two runs at once never share a lane: Playwright
        keeps one cache entry per path and would delete the other run's
        compiled file (and its source map) under it. A lane is in use while
        a run of this process holds it, or while a host server started with
        it is alive (a run an earlier process left, not yet taken up).
        """
        if self.shared_work_root is None:
            return None
        busy = {lane for lane in self._lanes.values() if lane is not None}
        for mark in self.hosts_dir.glob("*/lane"):
            with contextlib.suppress(OSError, ValueError):
                lane, pid = (int(part) for part in mark.read_text().split())
                if _server_alive(pid):
                    busy.add(lane)
        return next(n for n in range(len(busy) + 1) if n not in busy)

    def _suite_path(self, run_id: str) -> str:
        lane = self._lanes.get(run_id)
        if lane is None or self.shared_work_root is None:
            return ""
        return f"{self.shared_work_root}/suite-{lane}"

    async def _start(
        self, run_id: str, index: int, client_key: asyncssh.SSHKey
    ) -> Host:
        name = f"{run_id}-h{index}"
        folder = self.hosts_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        host_key.write_private_key(str(folder / "host_key"))
        os.chmod(folder / "host_key", 0o600)
        client_key.write_public_key(str(folder / "authorized_keys"))
        env = {k: v for k, v in os.environ.items() if not k.startswith("TRACELOOM_")}
        if self.chromium_path:
            env["TRACELOOM_CHROMIUM_PATH"] = self.chromium_path
        process: asyncio.subprocess.Process | None = None
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "controlplane.fleet.localhost_server",
                "--dir",
                str(folder),
                "--name",
                name,
                "--netns",
                self.netns,
                "--idle-timeout",
                str(self.idle_timeout_s),
                *(
                    ("--work-root", str(self.shared_work_root))
                    if self.shared_work_root
                    else ()
                ),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                env=env,
                # A Ctrl-C meant for the control plane must not stop its
                # hosts: a run goes on when the control plane comes back.
                start_new_session=True,
            )
            suite_path = self._suite_path(run_id)
            if suite_path:
                (folder / "lane").write_text(f"{self._lanes[run_id]} {process.pid}\n")
            line = await _first_line(process)
        except BaseException:
            # Cancelled while the host starts (the run was cancelled): the
            # process is in no list yet, so nothing else would stop it.
            await asyncio.shield(_discard(process, folder))
            raise
        if not line.startswith(b"listening "):
            await _discard(process, folder)
            raise HostError(f"local host {name} did not start")
        port = int(line.split()[1])
        host = Host(
            name=name,
            address="127.0.0.1",
            port=port,
            username="traceloom",
            host_key=host_key.convert_to_public(),
            client_key=client_key,
            work_root=str(self.shared_work_root or folder),
            suite_path=suite_path,
            deps_root=str(self.deps_dir),
            handle=str(process.pid),
        )
        self._live[run_id].append(_LocalHostProcess(host, folder, process))
        log.info("host.started", host=name, port=port, netns=self.netns)
        return host

    async def _prune_dead(self, run_id: str) -> None:
        """Clean up hosts of ``run_id`` that died, freeing their capacity."""
        hosts = self._live.get(run_id, [])
        dead = [h for h in hosts if not h.alive()]
        if not dead:
            return
        self._live[run_id] = [h for h in hosts if h not in dead]
        await asyncio.gather(*(self._stop(h) for h in dead))

    async def release(self, run_id: str) -> None:
        hosts = self._live.pop(run_id, [])
        self._next_index.pop(run_id, None)
        self._lanes.pop(run_id, None)
        await asyncio.gather(*(self._stop(h) for h in hosts))
        async with self._capacity:
            self._capacity.notify_all()

    async def _stop(self, local: _LocalHostProcess) -> None:
        if local.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(local.pid, signal.SIGTERM)
            if not await self._exited(local, 15):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(local.pid, signal.SIGKILL)
                await self._exited(local, 5)
        # A host that died (or was killed) cannot clean up after itself.
        await asyncio.to_thread(kill_marked, f"TRACELOOM_HOST={local.host.name}")
        shutil.rmtree(local.folder, ignore_errors=True)
        log.info("host.stopped", host=local.host.name)

    async def _exited(self, local: _LocalHostProcess, timeout_s: float) -> bool:
        if local.process is not None:
            try:
                await asyncio.wait_for(local.process.wait(), timeout_s)
            except TimeoutError:
                return False
            return True
        for _ in range(int(timeout_s * 10)):
            if not local.alive():
                return True
            await asyncio.sleep(0.1)
        return False

    def adopt(self, run_id: str, hosts: list[Host]) -> None:
        """Take back hosts started by an earlier process of the control plane."""
        adopted = self._live.setdefault(run_id, [])
        for host in hosts:
            adopted.append(_LocalHostProcess(host, self.hosts_dir / host.name))
            log.info("host.adopted", host=host.name, alive=adopted[-1].alive())
            index = int(host.name.rsplit("-h", 1)[-1])
            self._next_index[run_id] = max(self._next_index.get(run_id, 0), index + 1)
        # A host started for the run from now on keeps its suite where the
        # adopted ones do (no lane for a record from before lanes), so that
        # the run's blob reports still merge.
        paths = {host.suite_path for host in hosts}
        lanes = [_lane_of(path) for path in paths]
        self._lanes.setdefault(run_id, lanes[0] if len(lanes) == 1 else None)

    def forget(self, run_id: str) -> None:
        """Leave ``run_id``'s hosts running for the next control plane process.

        They stop by themselves if none adopts them within their idle timeout.
        """
        for local in self._live.pop(run_id, []):
            log.info("host.left_running", host=local.host.name)
        self._next_index.pop(run_id, None)
        self._lanes.pop(run_id, None)

    async def close(self) -> None:
        for run_id in list(self._live):
            await self.release(run_id)
