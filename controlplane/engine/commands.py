"""Running a local tool (git, npm, tar) with a deadline and nothing left over.

Each command runs in a session of its own; on timeout or cancellation its
whole process group is killed, so a helper it started (git's
``git-remote-http``, npm's scripts) cannot keep the pipes, and the run,
waiting forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping
from pathlib import Path

import attrs


@attrs.frozen
class Output:
    returncode: int
    stdout: bytes
    stderr: bytes


def _kill_group(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)


async def run_command(
    argv: list[str],
    *,
    timeout_s: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    merge_stderr: bool = False,
) -> Output:
    """Run ``argv``; raise TimeoutError (after killing it all) past the deadline."""
    process = await asyncio.create_subprocess_exec(
        *argv,
        cwd=cwd,
        env=dict(env) if env is not None else None,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT if merge_stderr else asyncio.subprocess.PIPE,
        start_new_session=True,
    )
    try:
        stdout, stderr = await asyncio.wait_for(process.communicate(), timeout_s)
    except (TimeoutError, asyncio.CancelledError):
        _kill_group(process)
        # The pipes close once every member of the group is gone.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), 10)
        raise
    finally:
        # A grandchild that outlived its parent is not left running either.
        _kill_group(process)
    return Output(process.returncode or 0, stdout or b"", stderr or b"")
