"""One local host: an asyncssh server on 127.0.0.1 that runs commands.

Started by the local provider as its own process:

    python -m controlplane.fleet.localhost_server --dir HOST_DIR [--netns MODE]

With ``--work-root DIR`` (an empty folder, the same for every local host)
and a namespace mode, each command also sees HOST_DIR bound at DIR and
starts there, so every local host keeps its files at one absolute path.

HOST_DIR holds ``host_key`` (this host's private key) and
``authorized_keys`` (the one client key it accepts). The server prints
``listening PORT`` once ready. Every command runs with HOST_DIR as home and
working folder, marked with ``TRACELOOM_HOST=<name>`` in its environment,
and, with ``--netns``, in a network namespace of its own so that suites
whose web server uses a fixed port can run on several local hosts at once.
The server exits on SIGTERM, or when no command came for ``--idle-timeout``
seconds (its control plane died and did not come back to adopt it), and
then stops every process it started. A control plane that restarts within
that time finds its hosts still running and resumes its runs on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import time
from pathlib import Path

import asyncssh

from controlplane.fleet.procs import kill_marked

_OUTPUT_GRACE_S = 2.0
_CHUNK = 65536


def netns_prefix(mode: str, *, mounts: bool = False) -> list[str]:
    """The argv prefix that runs a command in a fresh network namespace.

    With ``mounts``, the command also gets a mount namespace of its own
    (private propagation: nothing it mounts is seen outside).
    """
    extra = ["--mount", "--propagation", "private"] if mounts else []
    if mode == "root":
        return ["unshare", "--net", *extra, "--"]
    if mode == "user":
        return ["unshare", "--user", "--map-root-user", "--net", *extra, "--"]
    return []


_NETNS_SHELL = 'ip link set lo up 2>/dev/null || true; exec sh -c "$1"'
# With a fixed work root, the command's namespace gets a private mount table
# too, in which this host's folder is bound at the work root: every local
# host then sees its own files at one absolute path, as remote hosts do (and
# as Playwright's merge of the shards' blob reports requires).
_FIXED_ROOT_SHELL = (
    "ip link set lo up 2>/dev/null || true;"
    ' mount --bind "$2" "$3" || { echo "cannot bind $2 at $3" >&2; exit 125; };'
    ' cd "$3" && exec sh -c "$1"'
)


class _Server(asyncssh.SSHServer):
    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False


async def _pump_in(src: asyncssh.SSHReader[bytes], dst: asyncio.StreamWriter) -> None:
    try:
        while chunk := await src.read(_CHUNK):
            dst.write(chunk)
            await dst.drain()
    except (ConnectionError, asyncssh.Error):
        pass
    finally:
        with contextlib.suppress(Exception):
            dst.close()


async def _pump_out(src: asyncio.StreamReader, dst: asyncssh.SSHWriter[bytes]) -> None:
    with contextlib.suppress(ConnectionError, asyncssh.Error, BrokenPipeError):
        while chunk := await src.read(_CHUNK):
            dst.write(chunk)
            await dst.drain()


class LocalHost:
    def __init__(
        self, host_dir: Path, name: str, netns: str, work_root: Path | None = None
    ) -> None:
        self.host_dir = host_dir
        self.name = name
        self.netns = netns
        # Only namespaced commands can see the folder at the fixed work root.
        self.work_root = work_root if netns in ("root", "user") else None
        self.last_command_at = time.monotonic()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.work_root or host_dir),
            "LANG": "C.UTF-8",
            "TRACELOOM_HOST": name,
        }
        for key in ("TRACELOOM_CHROMIUM_PATH", "TRACELOOM_NOTICE_FILE", "TMPDIR"):
            if os.environ.get(key):
                self.env[key] = os.environ[key]

    def argv(self, command: str) -> list[str]:
        if self.work_root is not None:
            return [
                *netns_prefix(self.netns, mounts=True),
                *("sh", "-c", _FIXED_ROOT_SHELL, "sh", command),
                *(str(self.host_dir), str(self.work_root)),
            ]
        if self.netns in ("root", "user"):
            return [*netns_prefix(self.netns), "sh", "-c", _NETNS_SHELL, "sh", command]
        return ["sh", "-c", command]

    async def handle(self, process: asyncssh.SSHServerProcess[bytes]) -> None:
        self.last_command_at = time.monotonic()
        command = process.command
        if not command:
            process.stderr.write(b"this host runs commands only, no shell\n")
            process.exit(1)
            return
        proc = await asyncio.create_subprocess_exec(
            *self.argv(command),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            cwd=self.host_dir,
            env=self.env,
        )
        assert proc.stdin is not None
        assert proc.stdout is not None
        assert proc.stderr is not None
        feeder = asyncio.create_task(_pump_in(process.stdin, proc.stdin))
        outputs = [
            asyncio.create_task(_pump_out(proc.stdout, process.stdout)),
            asyncio.create_task(_pump_out(proc.stderr, process.stderr)),
        ]
        try:
            status = await proc.wait()
            # A background child that kept stdout open must not hold the
            # session forever: give the output a moment, then close.
            _done, pending = await asyncio.wait(outputs, timeout=_OUTPUT_GRACE_S)
            for task in pending:
                task.cancel()
        finally:
            feeder.cancel()
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        process.exit(status)

    def stop_everything(self) -> None:
        """Kill every process that carries this host's mark."""
        kill_marked(f"TRACELOOM_HOST={self.name}")


async def serve(
    host_dir: Path,
    name: str,
    netns: str,
    idle_timeout_s: float,
    work_root: Path | None = None,
) -> None:
    host = LocalHost(host_dir, name, netns, work_root)
    server = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_factory=_Server,
        server_host_keys=[str(host_dir / "host_key")],
        authorized_client_keys=str(host_dir / "authorized_keys"),
        process_factory=host.handle,
        encoding=None,
        allow_scp=False,
        agent_forwarding=False,
        x11_forwarding=False,
    )
    port = server.sockets[0].getsockname()[1]
    (host_dir / "port").write_text(f"{port}\n")
    print(f"listening {port}", flush=True)

    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stopped.set)
    loop.add_signal_handler(signal.SIGINT, stopped.set)

    async def dead_mans_switch() -> None:
        # No command for this long means no control plane follows this host
        # (it crashed and did not come back): stop rather than run forever.
        while not stopped.is_set():
            await asyncio.sleep(min(idle_timeout_s / 4, 5.0))
            if time.monotonic() - host.last_command_at > idle_timeout_s:
                stopped.set()

    watcher = asyncio.create_task(dead_mans_switch())
    await stopped.wait()
    watcher.cancel()
    server.close()
    host.stop_everything()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--netns", choices=["root", "user", "off"], default="off")
    parser.add_argument("--idle-timeout", type=float, default=120.0)
    parser.add_argument(
        "--work-root",
        type=Path,
        help="an empty folder at which namespaced commands see HOST_DIR",
    )
    args = parser.parse_args()
    asyncio.run(
        serve(
            args.dir.resolve(),
            args.name,
            args.netns,
            args.idle_timeout,
            args.work_root.resolve() if args.work_root else None,
        )
    )


if __name__ == "__main__":
    main()
