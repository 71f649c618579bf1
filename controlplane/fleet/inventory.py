"""The on-prem inventory: the SSH hosts a ``static`` fleet may lease to runs.

A YAML or TOML file lists the hosts, each with its address, port, user,
the path of the private key the control plane logs in with (the operator
put its public half in the host's ``authorized_keys``), the host's own
public key, pinned (it is the only key accepted from that host), and how
many shards it may run at once. ``defaults`` gives values every host
shares. The file is checked whole when the control plane starts, and every
flaw is reported with its place in the file.
"""

from __future__ import annotations

import re
import stat
import tomllib
from pathlib import Path
from typing import Any

import asyncssh
import attrs
import cattrs
import yaml

from controlplane.errors import TraceLoomError

DEFAULT_WORK_ROOT = "/opt/traceloom/work"
MAX_SLOTS = 64

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
_USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}\Z")
_ADDRESS = re.compile(r"[A-Za-z0-9.:\[\]_-]{1,253}\Z")


class InventoryError(TraceLoomError, ValueError):
    """The inventory file cannot be used; the message names every flaw."""


@attrs.frozen(kw_only=True)
class _Defaults:
    port: int | None = None
    user: str | None = None
    key: str | None = None
    slots: int | None = None
    work_root: str | None = None
    deps_root: str | None = None


@attrs.frozen(kw_only=True)
class _HostEntry(_Defaults):
    name: str
    address: str
    host_key: str


@attrs.frozen(kw_only=True)
class _File:
    hosts: list[_HostEntry]
    defaults: _Defaults = _Defaults()


@attrs.frozen(kw_only=True)
class InventoryHost:
    """One machine of the inventory, checked and with its keys loaded."""

    name: str
    address: str
    port: int
    user: str
    key_path: Path
    client_key: asyncssh.SSHKey
    host_key: asyncssh.SSHKey
    slots: int
    work_root: str
    deps_root: str


@attrs.frozen
class Inventory:
    source: Path
    hosts: list[InventoryHost]

    @property
    def total_slots(self) -> int:
        return sum(h.slots for h in self.hosts)


def _converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)

    def strict_int(value: Any, _type: type) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError("must be a whole number")
        return value

    def strict_str(value: Any, _type: type) -> str:
        if not isinstance(value, str):
            raise TypeError("must be a string")
        return value

    converter.register_structure_hook(int, strict_int)
    converter.register_structure_hook(str, strict_str)
    return converter


def _read(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InventoryError(f"cannot read the inventory {path}: {exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            return tomllib.loads(text)
        return yaml.safe_load(text)
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise InventoryError(f"inventory {path} is not valid: {exc}") from None


def load_inventory(path: Path) -> Inventory:
    """Read and check the inventory at ``path`` (``.toml``, else YAML)."""
    path = path.expanduser().resolve()
    data = _read(path)
    if not isinstance(data, dict):
        raise InventoryError(f"inventory {path}: must be a mapping with 'hosts'")
    try:
        parsed = _converter().structure(data, _File)
    except Exception as exc:  # cattrs groups every flaw; transform_error lists them
        flaws = cattrs.transform_error(exc, path="inventory")
        raise InventoryError(f"inventory {path}: " + "; ".join(flaws)) from None
    problems: list[str] = []
    hosts = [
        host
        for index, entry in enumerate(parsed.hosts)
        if (host := _host(entry, parsed.defaults, path.parent, index, problems))
    ]
    names = [h.name for h in parsed.hosts]
    for name in sorted({n for n in names if names.count(n) > 1}):
        problems.append(f"host name {name!r} is used more than once")
    if not parsed.hosts:
        problems.append("hosts: lists no host")
    if problems:
        raise InventoryError(f"inventory {path}: " + "; ".join(problems))
    return Inventory(path, hosts)


def _host(
    entry: _HostEntry,
    defaults: _Defaults,
    base: Path,
    index: int,
    problems: list[str],
) -> InventoryHost | None:
    where = f"hosts[{index}]"
    before = len(problems)

    def pick(field: str, fallback: Any) -> Any:
        value = getattr(entry, field)
        value = getattr(defaults, field) if value is None else value
        return fallback if value is None else value

    if not _NAME.match(entry.name):
        problems.append(f"{where}.name: use letters, digits, '.', '_' and '-'")
    if not _ADDRESS.match(entry.address):
        problems.append(f"{where}.address: {entry.address!r} is not a host name or IP")
    port = pick("port", 22)
    if not 1 <= port <= 65535:
        problems.append(f"{where}.port: must be between 1 and 65535")
    user = pick("user", "runner")
    if not _USER.match(user):
        problems.append(f"{where}.user: {user!r} is not a user name")
    slots = pick("slots", 1)
    if not 1 <= slots <= MAX_SLOTS:
        problems.append(f"{where}.slots: must be between 1 and {MAX_SLOTS}")
    work_root = pick("work_root", DEFAULT_WORK_ROOT)
    deps_root = pick("deps_root", f"{work_root.rstrip('/')}/deps")
    for field, value in (("work_root", work_root), ("deps_root", deps_root)):
        if not value.startswith("/") or "\n" in value:
            problems.append(f"{where}.{field}: must be an absolute path")
    host_key = _public_key(entry.host_key, f"{where}.host_key", problems)
    key = pick("key", None)
    if key is None:
        problems.append(f"{where}.key: is required (here or in defaults)")
        return None
    key_path = (base / Path(key).expanduser()).resolve()
    client_key = _private_key(key_path, f"{where}.key", problems)
    if len(problems) > before or host_key is None or client_key is None:
        return None
    return InventoryHost(
        name=entry.name,
        address=entry.address.strip("[]"),
        port=port,
        user=user,
        key_path=key_path,
        client_key=client_key,
        host_key=host_key,
        slots=slots,
        work_root=work_root.rstrip("/") or "/",
        deps_root=deps_root.rstrip("/") or "/",
    )


def _public_key(text: str, where: str, problems: list[str]) -> asyncssh.SSHKey | None:
    try:
        return asyncssh.import_public_key(text.strip())
    except (asyncssh.KeyImportError, ValueError) as exc:
        problems.append(
            f"{where}: not an OpenSSH public key ({exc}); use the host's"
            " /etc/ssh/ssh_host_ed25519_key.pub"
        )
        return None


def _private_key(path: Path, where: str, problems: list[str]) -> asyncssh.SSHKey | None:
    try:
        info = path.stat()
        data = path.read_bytes()
    except OSError as exc:
        problems.append(f"{where}: cannot read {path}: {exc.strerror or exc}")
        return None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        problems.append(
            f"{where}: {path} is open to other users (mode"
            f" {stat.S_IMODE(info.st_mode):o}); chmod 600 it"
        )
        return None
    try:
        return asyncssh.import_private_key(data)
    except (asyncssh.KeyImportError, ValueError) as exc:
        problems.append(
            f"{where}: {path} is not an unencrypted OpenSSH private key ({exc})"
        )
        return None
