"""runner-image/files/traceloom-boot.sh against a fake IMDSv2 on loopback.

The boot script runs as root on a runner before sshd. Here it runs as root
too, but pointed at a temporary SSH folder, a throwaway user and a small
metadata server on 127.0.0.1 that answers only with an IMDSv2 token, so
nothing on this machine changes.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from terraform_model import REPO_ROOT

BOOT_SCRIPT = REPO_ROOT / "runner-image" / "files" / "traceloom-boot.sh"
TOKEN = "fake-imds-token"


@dataclass
class FakeImds:
    """What the fake metadata server serves and what it was asked."""

    user_data: bytes = b""
    requests: list[tuple[str, str]] = field(default_factory=list)
    url: str = ""


def _handler(state: FakeImds) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            state.requests.append(("PUT", self.path))
            ttl = self.headers.get("X-aws-ec2-metadata-token-ttl-seconds")
            if self.path == "/latest/api/token" and ttl:
                self._answer(200, TOKEN.encode())
            else:
                self._answer(400, b"")

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path))
            if self.headers.get("X-aws-ec2-metadata-token") != TOKEN:
                self._answer(401, b"")
            elif self.path == "/latest/user-data":
                self._answer(200, state.user_data)
            else:
                self._answer(404, b"")

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Keep the test output quiet."""

    return Handler


@pytest.fixture
def imds() -> Iterator[FakeImds]:
    """A token-only metadata server on a free loopback port."""
    state = FakeImds()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class Runner:
    """A throwaway runner user and an SSH folder standing in for /etc/ssh."""

    user: str
    uid: int
    home: Path
    ssh_dir: Path


@pytest.fixture
def runner() -> Iterator[Runner]:
    """Create the user with a home in a temporary folder; remove both after."""
    if os.geteuid() != 0:
        pytest.fail(
            "the boot script test creates a user and needs root (CI runs as root)"
        )
    root = Path(tempfile.mkdtemp(prefix="traceloom-boot-test-"))
    user = f"tlboot{uuid.uuid4().hex[:8]}"
    home = root / "home"
    subprocess.run(
        [
            "useradd",
            "--create-home",
            "--home-dir",
            str(home),
            "--shell",
            "/bin/bash",
            user,
        ],
        check=True,
        capture_output=True,
    )
    try:
        ssh_dir = root / "ssh"
        ssh_dir.mkdir()
        for old in ("ssh_host_rsa_key", "ssh_host_ecdsa_key"):
            (ssh_dir / old).write_text("old key\n", encoding="utf-8")
            (ssh_dir / f"{old}.pub").write_text("old pub\n", encoding="utf-8")
        yield Runner(user, pwd.getpwnam(user).pw_uid, home, ssh_dir)
    finally:
        subprocess.run(["userdel", user], check=False, capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def make_key(directory: Path, kind: str = "ed25519") -> tuple[str, str]:
    """A new key pair made by ssh-keygen: (private key, public key line)."""
    path = directory / f"key-{uuid.uuid4().hex[:6]}"
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-t",
            kind,
            "-N",
            "",
            "-C",
            "traceloom-test",
            "-f",
            str(path),
        ],
        check=True,
        capture_output=True,
    )
    return path.read_text(encoding="utf-8"), path.with_suffix(".pub").read_text(
        encoding="utf-8"
    ).strip()


def boot(imds: FakeImds, runner: Runner) -> subprocess.CompletedProcess[str]:
    """Run the boot script against the fake metadata server and folders."""
    env = {
        **os.environ,
        "TRACELOOM_IMDS_URL": imds.url,
        "TRACELOOM_SSH_DIR": str(runner.ssh_dir),
        "TRACELOOM_USER": runner.user,
        "TRACELOOM_BLOCK_IMDS": "0",
    }
    return subprocess.run(
        ["bash", str(BOOT_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


class TestValidUserData:
    """With good user data the instance's keys are put in place."""

    @pytest.fixture
    def keys(
        self, imds: FakeImds, runner: Runner, tmp_path: Path
    ) -> tuple[str, str, str]:
        """Serve fresh keys; give (host private, host public, client public)."""
        host_private, host_public = make_key(tmp_path)
        _, client_public = make_key(tmp_path)
        imds.user_data = json.dumps(
            {"hostKey": host_private, "authorizedKey": client_public}
        ).encode()
        return host_private, host_public, client_public

    def test_host_key_is_installed_as_the_only_one(
        self, imds: FakeImds, runner: Runner, keys: tuple[str, str, str]
    ) -> None:
        """The ed25519 host key lands with mode 600; older host keys are gone."""
        host_private, host_public, _ = keys

        result = boot(imds, runner)

        key = runner.ssh_dir / "ssh_host_ed25519_key"
        assert result.returncode == 0, result.stderr
        assert key.read_text(encoding="utf-8") == host_private
        assert _mode(key) == 0o600
        assert key.stat().st_uid == 0
        pub = (runner.ssh_dir / "ssh_host_ed25519_key.pub").read_text(encoding="utf-8")
        assert pub.split()[:2] == host_public.split()[:2]
        assert sorted(p.name for p in runner.ssh_dir.glob("ssh_host_*")) == [
            "ssh_host_ed25519_key",
            "ssh_host_ed25519_key.pub",
        ]

    def test_sshd_is_told_to_offer_only_that_key(
        self, imds: FakeImds, runner: Runner, keys: tuple[str, str, str]
    ) -> None:
        """A drop-in names the one HostKey and the ed25519 algorithm."""
        result = boot(imds, runner)

        drop_in = runner.ssh_dir / "sshd_config.d" / "05-traceloom-hostkey.conf"
        settings = [
            line
            for line in drop_in.read_text(encoding="utf-8").splitlines()
            if not line.startswith("#")
        ]
        assert result.returncode == 0, result.stderr
        assert settings == [
            f"HostKey {runner.ssh_dir}/ssh_host_ed25519_key",
            "HostKeyAlgorithms ssh-ed25519",
        ]

    def test_client_key_is_the_runners_only_authorized_key(
        self, imds: FakeImds, runner: Runner, keys: tuple[str, str, str]
    ) -> None:
        """authorized_keys is the client key alone: 600, in a 700 folder, the user's."""
        _, _, client_public = keys
        ssh = runner.home / ".ssh"
        ssh.mkdir(mode=0o700)
        (ssh / "authorized_keys").write_text(
            "ssh-ed25519 AAAAold stale\n", encoding="utf-8"
        )

        result = boot(imds, runner)

        authorized = ssh / "authorized_keys"
        assert result.returncode == 0, result.stderr
        assert authorized.read_text(encoding="utf-8") == client_public + "\n"
        assert (_mode(ssh), _mode(authorized)) == (0o700, 0o600)
        assert {ssh.stat().st_uid, authorized.stat().st_uid} == {runner.uid}
        assert sorted(p.name for p in ssh.iterdir()) == ["authorized_keys"]

    def test_user_data_is_read_with_an_imdsv2_token(
        self, imds: FakeImds, runner: Runner, keys: tuple[str, str, str]
    ) -> None:
        """The script asks for a token first, then reads user data with it."""
        result = boot(imds, runner)

        assert result.returncode == 0, result.stderr
        assert imds.requests == [
            ("PUT", "/latest/api/token"),
            ("GET", "/latest/user-data"),
        ]


def _rsa_host_key(tmp_path: Path) -> dict[str, str]:
    return {
        "hostKey": make_key(tmp_path, "rsa")[0],
        "authorizedKey": make_key(tmp_path)[1],
    }


def _two_line_client_key(tmp_path: Path) -> dict[str, str]:
    client = make_key(tmp_path)[1]
    return {"hostKey": make_key(tmp_path)[0], "authorizedKey": f"{client}\n{client}"}


def _rsa_client_key(tmp_path: Path) -> dict[str, str]:
    return {
        "hostKey": make_key(tmp_path)[0],
        "authorizedKey": make_key(tmp_path, "rsa")[1],
    }


def _no_client_key(tmp_path: Path) -> dict[str, str]:
    return {"hostKey": make_key(tmp_path)[0]}


def _garbage_host_key(tmp_path: Path) -> dict[str, str]:
    return {"hostKey": "not a key", "authorizedKey": make_key(tmp_path)[1]}


@pytest.mark.parametrize(
    ("make_user_data", "message"),
    [
        (lambda _: "#cloud-config\n", "not a JSON object"),
        (lambda _: "[1, 2]", "not a JSON object"),
        (_garbage_host_key, "not an unencrypted OpenSSH private key"),
        (_rsa_host_key, "not an ed25519 key"),
        (_no_client_key, 'no "authorizedKey" string'),
        (_two_line_client_key, "single line"),
        (_rsa_client_key, "not an ssh-ed25519 public key"),
    ],
    ids=[
        "not-json",
        "json-list",
        "garbage-host-key",
        "rsa-host-key",
        "no-client-key",
        "two-line-client-key",
        "rsa-client-key",
    ],
)
def test_bad_user_data_fails_the_boot(
    imds: FakeImds,
    runner: Runner,
    tmp_path: Path,
    make_user_data: Callable[[Path], str | dict[str, str]],
    message: str,
) -> None:
    """Bad user data stops the boot (and so sshd) with a reason."""
    data = make_user_data(tmp_path)
    imds.user_data = (data if isinstance(data, str) else json.dumps(data)).encode()

    result = boot(imds, runner)

    assert result.returncode == 1
    assert message in result.stderr
    assert not (runner.home / ".ssh" / "authorized_keys").exists()


def test_a_garbage_host_key_leaves_the_old_keys(
    imds: FakeImds, runner: Runner, tmp_path: Path
) -> None:
    """A rejected host key removes nothing and leaves no staged file behind."""
    imds.user_data = json.dumps(_garbage_host_key(tmp_path)).encode()
    before = sorted(p.name for p in runner.ssh_dir.iterdir())

    result = boot(imds, runner)

    assert result.returncode == 1
    assert sorted(p.name for p in runner.ssh_dir.iterdir()) == before
