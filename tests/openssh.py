"""Real OpenSSH servers on loopback ports, each for its own unprivileged user.

A host is prepared the way an operator prepares an on-prem machine, as far
as a shared test machine allows: ``runner-image/provision.sh``'s ``user``
step makes the account and installs the control plane's public key (with
``restrict``: no forwarding, no terminal), its ``harness`` step puts the
harness and the work folder under a prefix of the test's own. Debian's
``sshd`` then runs with a configuration of the test's own (the provision
``ssh`` step edits the machine's sshd, which tests must not touch) with
the same hardening: keys only, no root, one allowed user. Everything is
removed afterwards: the server, every process of the user, the user.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import attrs

from tests.conftest import CHROMIUM, REPO_ROOT

PROVISION = REPO_ROOT / "runner-image" / "provision.sh"
SSHD = "/usr/sbin/sshd"


@attrs.frozen
class OpenSshHost:
    name: str
    user: str
    uid: int
    port: int
    host_key: str
    prefix: Path
    work_root: Path
    process: subprocess.Popen[bytes]

    def processes(self) -> list[int]:
        """Pids of every process running as this host's user."""
        return user_processes(self.uid)

    def inventory_entry(self, key: Path, **extra: object) -> dict[str, object]:
        return {
            "name": self.name,
            "address": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "key": str(key),
            "host_key": self.host_key,
            "work_root": str(self.work_root),
            **extra,
        }


def user_processes(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if entry.stat().st_uid == uid:
                    found.append(int(entry.name))
    return found


def wait_until_gone(uid: int, timeout_s: float = 30) -> list[int]:
    """Wait for the user's processes to end; return those still there."""
    deadline = time.monotonic() + timeout_s
    while (left := user_processes(uid)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def client_key(folder: Path) -> tuple[Path, str]:
    """The control plane's long-lived key: private file (0600) and public line."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = folder / "traceloom_ed25519"
    path.write_bytes(key.export_private_key())
    path.chmod(0o600)
    return path, key.export_public_key().decode().strip()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _provision(step: str, **env: str) -> None:
    done = subprocess.run(
        ["bash", str(PROVISION), step],
        env={"PATH": os.environ["PATH"], "PROVISION_MODE": "onprem", **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"provision.sh {step}: {done.stderr}"


def _wait_for_banner(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"sshd exited with {process.returncode}")
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=2) as conn,
        ):
            if conn.recv(8).startswith(b"SSH-2.0"):
                return
        time.sleep(0.1)
    raise AssertionError(f"sshd on port {port} did not answer")


@contextlib.contextmanager
def openssh_host(name: str, public_key: str) -> Iterator[OpenSshHost]:
    """An sshd on 127.0.0.1 for a new user that accepts ``public_key`` only."""
    user = f"tl{uuid.uuid4().hex[:10]}"
    root = Path(tempfile.mkdtemp(prefix="traceloom-openssh-"))
    root.chmod(0o755)
    process: subprocess.Popen[bytes] | None = None
    try:
        _provision(
            "user", TRACELOOM_USER=user, RUNNER_AUTHORIZED_KEY=f"restrict {public_key}"
        )
        prefix = root / "opt"
        _provision(
            "harness",
            TRACELOOM_USER=user,
            TRACELOOM_PREFIX=str(prefix),
            HARNESS_SRC=str(REPO_ROOT / "controlplane" / "harness"),
        )
        host_key = asyncssh.generate_private_key("ssh-ed25519")
        secret = root / "sshd"
        secret.mkdir(mode=0o700)
        host_key.write_private_key(str(secret / "host_key"))
        (secret / "host_key").chmod(0o600)
        port = _free_port()
        config = secret / "sshd_config"
        config.write_text(
            f"ListenAddress 127.0.0.1\nPort {port}\n"
            f"HostKey {secret / 'host_key'}\nPidFile {secret / 'sshd.pid'}\n"
            # Debian's own sshd uses PAM; it also lets in accounts whose
            # password is locked, as useradd leaves them.
            "UsePAM yes\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PermitRootLogin no\nPubkeyAuthentication yes\nX11Forwarding no\n"
            "AuthorizedKeysFile .ssh/authorized_keys\n"
            f"AllowUsers {user}\n"
            # What an operator would put in the host's /etc/environment (which
            # tests must not edit): the Chromium the harness points Playwright at.
            + (f"SetEnv TRACELOOM_CHROMIUM_PATH={CHROMIUM}\n" if CHROMIUM else "")
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with (secret / "sshd.log").open("wb") as sshd_log:
            process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=sshd_log,
            )
        _wait_for_banner(port, process)
        yield OpenSshHost(
            name=name,
            user=user,
            uid=pwd.getpwnam(user).pw_uid,
            port=port,
            host_key=host_key.export_public_key().decode().strip(),
            prefix=prefix,
            work_root=prefix / "work",
            process=process,
        )
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)
        with contextlib.suppress(KeyError):
            uid = pwd.getpwnam(user).pw_uid
            # Whatever a failed test left running as the user, by pid.
            for pid in user_processes(uid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            wait_until_gone(uid, timeout_s=10)
        subprocess.run(["userdel", "--remove", user], capture_output=True, check=False)
        subprocess.run(["rm", "-rf", str(root)], check=False)
