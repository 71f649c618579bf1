"""Finding and stopping processes by a marker in their environment.

Everything a host or shard starts inherits a ``NAME=value`` marker, and
``/proc/PID/environ`` keeps the environment a process was started with, so
a process tree is found even after its members moved to sessions or
process groups of their own.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path


def marked_pids(marker: str) -> list[int]:
    """Pids (other than ours) whose environment holds ``marker`` exactly."""
    wanted = marker.encode()
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if wanted in environ.split(b"\0"):
            found.append(int(entry.name))
    return found


def kill_marked(marker: str, *, rounds: int = 20, pause_s: float = 0.1) -> int:
    """SIGKILL every process carrying ``marker`` until none is left."""
    killed = 0
    for _ in range(rounds):
        pids = marked_pids(marker)
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
                killed += 1
        time.sleep(pause_s)
    return killed
