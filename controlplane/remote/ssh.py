"""The one SSH path to every host: pinned host keys, commands, file streams."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path
from typing import Self

import asyncssh
import attrs

from controlplane.errors import HostError, RemoteCommandError
from controlplane.fleet.base import Host

_CHUNK = 1 << 16
_TAIL_CHARS = 2000


@attrs.frozen
class Completed:
    exit_status: int | None
    stdout: bytes
    stderr: bytes


def quote(*words: str) -> str:
    return " ".join(shlex.quote(w) for w in words)


def _bytes(output: bytes | str | None) -> bytes:
    if output is None:
        return b""
    return output.encode() if isinstance(output, str) else bytes(output)


class HostConnection:
    """An SSH connection to one host; verifies the host key it was given."""

    def __init__(self, host: Host, conn: asyncssh.SSHClientConnection) -> None:
        self.host = host
        self._conn = conn

    @classmethod
    async def open(cls, host: Host, *, timeout_s: float = 30.0) -> Self:
        try:
            conn = await asyncssh.connect(
                host.address,
                host.port,
                username=host.username,
                client_keys=[host.client_key],
                known_hosts=([host.host_key], [], []),
                agent_path=None,
                connect_timeout=timeout_s,
                keepalive_interval=10,
                keepalive_count_max=3,
            )
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise HostError(f"cannot reach host {host.name}: {exc}") from exc
        return cls(host, conn)

    async def close(self) -> None:
        self._conn.close()
        await self._conn.wait_closed()

    async def run(
        self,
        command: str,
        *,
        stdin: bytes | None = None,
        check: bool = True,
        timeout_s: float = 60.0,
    ) -> Completed:
        """Run ``command``; raise RemoteCommandError on a non-zero exit."""
        try:
            result = await asyncio.wait_for(
                self._conn.run(command, input=stdin, encoding=None, check=False),
                timeout_s,
            )
        except TimeoutError as exc:
            # Before OSError, of which TimeoutError is a kind.
            raise HostError(
                f"{command!r} on {self.host.name} took over {timeout_s:.0f}s"
            ) from exc
        except (OSError, asyncssh.Error) as exc:
            raise HostError(f"lost host {self.host.name}: {exc}") from exc
        done = Completed(
            result.exit_status, _bytes(result.stdout), _bytes(result.stderr)
        )
        if check and done.exit_status != 0:
            raise self._error(command, done)
        return done

    def _error(self, command: str, done: Completed) -> RemoteCommandError:
        output = (done.stderr or done.stdout).decode(errors="replace")
        return RemoteCommandError(
            host=self.host.name,
            command=command,
            exit_status=done.exit_status,
            output_tail=output[-_TAIL_CHARS:].strip(),
        )

    async def send_file(
        self, command: str, source: Path, *, timeout_s: float = 600.0
    ) -> None:
        """Stream the local file ``source`` into ``command``'s standard input."""

        async def transfer() -> Completed:
            process = await self._conn.create_process(command, encoding=None)
            with source.open("rb") as handle:
                while chunk := handle.read(_CHUNK):
                    process.stdin.write(chunk)
                    await process.stdin.drain()
            process.stdin.write_eof()
            stdout, stderr = await asyncio.gather(
                process.stdout.read(), process.stderr.read()
            )
            await process.wait_closed()
            return Completed(process.exit_status, stdout, stderr)

        done = await self._guard(command, transfer(), timeout_s)
        if done.exit_status != 0:
            raise self._error(command, done)

    async def receive_file(
        self, command: str, target: Path, *, timeout_s: float = 600.0
    ) -> None:
        """Stream ``command``'s standard output into the local file ``target``."""

        async def transfer() -> Completed:
            process = await self._conn.create_process(command, encoding=None)
            process.stdin.write_eof()
            with target.open("wb") as handle:
                while chunk := await process.stdout.read(_CHUNK):
                    handle.write(chunk)
            stderr = await process.stderr.read()
            await process.wait_closed()
            return Completed(process.exit_status, b"", stderr)

        done = await self._guard(command, transfer(), timeout_s)
        if done.exit_status != 0:
            raise self._error(command, done)

    async def _guard(
        self, command: str, transfer: object, timeout_s: float
    ) -> Completed:
        try:
            return await asyncio.wait_for(transfer, timeout_s)  # type: ignore[arg-type]
        except TimeoutError as exc:
            # Before OSError, of which TimeoutError is a kind.
            raise HostError(
                f"{command!r} on {self.host.name} took over {timeout_s:.0f}s"
            ) from exc
        except (OSError, asyncssh.Error) as exc:
            raise HostError(f"lost host {self.host.name}: {exc}") from exc
