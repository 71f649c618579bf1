"""The on-prem inventory file: YAML or TOML, defaults, every flaw named."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import asyncssh
import pytest
import yaml

from controlplane.fleet.inventory import InventoryError, load_inventory

HOST_KEY = (
    asyncssh.generate_private_key("ssh-ed25519").export_public_key().decode().strip()
)


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "id_ed25519"
    path.parent.mkdir()
    path.write_bytes(asyncssh.generate_private_key("ssh-ed25519").export_private_key())
    path.chmod(0o600)
    return path


def _write(tmp_path: Path, data: dict[str, Any], suffix: str = ".yaml") -> Path:
    path = tmp_path / f"inventory{suffix}"
    path.write_text(yaml.safe_dump(data))
    return path


def test_yaml_and_toml_say_the_same(tmp_path: Path, key: Path) -> None:
    """Both formats give the same hosts; defaults fill what a host leaves out."""
    yaml_path = _write(
        tmp_path,
        {
            "defaults": {"user": "runner", "key": "keys/id_ed25519", "slots": 2},
            "hosts": [
                {"name": "rack-01", "address": "10.0.0.11", "host_key": HOST_KEY},
                {
                    "name": "rack-02",
                    "address": "10.0.0.12",
                    "port": 2222,
                    "slots": 4,
                    "host_key": HOST_KEY,
                    "work_root": "/srv/traceloom/",
                },
            ],
        },
    )
    toml_path = tmp_path / "inventory.toml"
    toml_path.write_text(
        '[defaults]\nuser = "runner"\nkey = "keys/id_ed25519"\nslots = 2\n\n'
        f'[[hosts]]\nname = "rack-01"\naddress = "10.0.0.11"\nhost_key = "{HOST_KEY}"\n'
        f'\n[[hosts]]\nname = "rack-02"\naddress = "10.0.0.12"\nport = 2222\n'
        f'slots = 4\nhost_key = "{HOST_KEY}"\nwork_root = "/srv/traceloom/"\n'
    )

    from_yaml = load_inventory(yaml_path)
    from_toml = load_inventory(toml_path)

    def summary(path: Path) -> list[tuple[Any, ...]]:
        return [
            (h.name, h.address, h.port, h.user, h.slots, h.work_root, h.deps_root)
            for h in load_inventory(path).hosts
        ]

    assert summary(yaml_path) == summary(toml_path) == [
        ("rack-01", "10.0.0.11", 22, "runner", 2, "/opt/traceloom/work",
         "/opt/traceloom/work/deps"),
        ("rack-02", "10.0.0.12", 2222, "runner", 4, "/srv/traceloom",
         "/srv/traceloom/deps"),
    ]  # fmt: skip
    assert from_yaml.total_slots == from_toml.total_slots == 6
    assert from_yaml.hosts[0].key_path == key
    assert from_yaml.hosts[0].host_key.export_public_key().decode().strip() == (
        HOST_KEY
    )


@pytest.mark.parametrize(
    ("change", "flaw"),
    [
        ({"port": 70000}, "hosts[0].port: must be between 1 and 65535"),
        ({"port": "22"}, "expected int | None @ inventory.hosts[0].port"),
        ({"slots": 0}, "hosts[0].slots: must be between 1 and 64"),
        ({"name": "bad name"}, "hosts[0].name: use letters"),
        ({"user": "root; rm"}, "hosts[0].user: 'root; rm' is not a user name"),
        ({"host_key": "not a key"}, "hosts[0].host_key: not an OpenSSH public key"),
        ({"work_root": "relative"}, "hosts[0].work_root: must be an absolute path"),
        ({"key": "missing"}, "hosts[0].key: cannot read"),
        ({"colour": "blue"}, "extra fields found (colour) @ inventory.hosts[0]"),
    ],
    ids=[
        "port",
        "port-type",
        "slots",
        "name",
        "user",
        "host-key",
        "work-root",
        "key-missing",
        "unknown",
    ],
)
def test_each_flaw_is_named_with_its_place(
    tmp_path: Path, key: Path, change: dict[str, Any], flaw: str
) -> None:
    """A wrong field fails the whole file, saying which host and field."""
    host = {
        "name": "rack-01",
        "address": "10.0.0.11",
        "host_key": HOST_KEY,
        "key": str(key),
        **change,
    }

    with pytest.raises(InventoryError) as caught:
        load_inventory(_write(tmp_path, {"hosts": [host]}))

    assert flaw in str(caught.value)


def test_every_flaw_is_reported_at_once(tmp_path: Path, key: Path) -> None:
    """Two bad hosts and a duplicate name: one error lists all of them."""
    hosts = [
        {"name": "a", "address": "h1", "host_key": HOST_KEY, "key": str(key)},
        {"name": "a", "address": "h2", "host_key": HOST_KEY, "key": str(key)},
        {"name": "b", "address": "h3", "host_key": "x", "key": str(key), "slots": 0},
    ]

    with pytest.raises(InventoryError) as caught:
        load_inventory(_write(tmp_path, {"hosts": hosts}))

    message = str(caught.value)
    assert "host name 'a' is used more than once" in message
    assert "hosts[2].host_key" in message
    assert "hosts[2].slots" in message


def test_a_key_open_to_others_is_refused(tmp_path: Path, key: Path) -> None:
    """Like ssh, a private key readable by other users is not used."""
    key.chmod(0o644)
    host = {"name": "a", "address": "h", "host_key": HOST_KEY, "key": str(key)}

    with pytest.raises(InventoryError, match=r"open to other users .*chmod 600"):
        load_inventory(_write(tmp_path, {"hosts": [host]}))


def test_an_encrypted_key_is_refused_with_the_reason(tmp_path: Path) -> None:
    """A key with a passphrase cannot be used unattended; the error says so."""
    path = tmp_path / "locked"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    host = {"name": "a", "address": "h", "host_key": HOST_KEY, "key": str(path)}

    with pytest.raises(InventoryError, match="not an unencrypted OpenSSH private key"):
        load_inventory(_write(tmp_path, {"hosts": [host]}))


@pytest.mark.parametrize(
    ("text", "flaw"),
    [
        ("hosts: [", "is not valid"),
        ("- just a list", "must be a mapping with 'hosts'"),
        ("hosts: []", "lists no host"),
    ],
    ids=["syntax", "not-a-mapping", "empty"],
)
def test_unusable_files_are_clear_errors(tmp_path: Path, text: str, flaw: str) -> None:
    """Broken YAML, a list, or no hosts at all: an error naming the file."""
    path = tmp_path / "inventory.yaml"
    path.write_text(text)

    with pytest.raises(InventoryError) as caught:
        load_inventory(path)

    assert flaw in str(caught.value)
    assert str(path) in str(caught.value)
