"""Control plane settings: defaults, environment variables and CLI flags."""

from __future__ import annotations

import os
from pathlib import Path

import attrs

ENV_PREFIX = "TRACELOOM_"


@attrs.frozen(kw_only=True)
class Settings:
    """Everything the control plane is configured with.

    Every field can be set with ``TRACELOOM_<FIELD>`` in the environment;
    the CLI's flags win over the environment.
    """

    data_dir: Path = Path(".traceloom")
    cache_dir: Path | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    public_url: str = ""
    fleet: str = "local"
    local_max_hosts: int = 8
    # A local host whose control plane is silent this long stops by itself.
    local_idle_timeout_s: float = 120.0
    max_server_count: int = 8
    chromium_path: str = ""
    # Whether gitRepo may be a path on the control plane's own disk. Handy on
    # one machine; turn it off where API users must not read local folders.
    allow_local_repos: bool = True
    log_format: str = "console"
    log_level: str = "info"
    poll_interval_s: float = 0.5
    clone_timeout_s: float = 300.0
    install_timeout_s: float = 900.0
    # The EC2 Spot fleet (fleet = "ec2"). The Terraform package sets these
    # from its outputs; see the README's "Pointing TraceLoom at AWS".
    launch_template_id: str = ""
    # Comma-separated: CreateFleet gets one override per type and subnet.
    subnet_ids: str = ""
    instance_types: str = ""
    # Runner instances alive at once in the account, over every run.
    max_instances: int = 20
    # Launch on-demand instances for what Spot cannot give, and only that.
    on_demand_fill: bool = False
    # How long Spot capacity is retried (with backoff) before going on.
    capacity_wait_s: float = 120.0
    # An instance's expiry tag: the reaper terminates it after this long.
    instance_lifetime_s: float = 14400.0
    ssh_ready_timeout_s: float = 300.0
    reap_interval_s: float = 60.0
    # Tags instances, so that the reaper only touches this deployment's.
    deployment_name: str = "traceloom"

    @property
    def db_path(self) -> Path:
        return self.data_dir / "traceloom.sqlite3"

    @property
    def artifacts_dir(self) -> Path:
        return self.data_dir / "artifacts"

    @property
    def work_dir(self) -> Path:
        return self.data_dir / "work"

    @property
    def deps_dir(self) -> Path:
        """Installed dependencies, shareable between control planes."""
        return (self.cache_dir or self.data_dir / "cache") / "deps"

    @property
    def host_deps_dir(self) -> Path:
        """Where local hosts keep the dependencies shipped to them."""
        return (self.cache_dir or self.data_dir / "cache") / "host-deps"

    @property
    def hosts_dir(self) -> Path:
        return self.data_dir / "hosts"

    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"


def settings_from_env(
    environ: dict[str, str] | None = None, **overrides: object
) -> Settings:
    """Build settings from ``TRACELOOM_*`` variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in attrs.fields(Settings):
        raw = env.get(ENV_PREFIX + field.name.upper())
        if raw is not None and raw != "":
            values[field.name] = _convert(field.type, raw)
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name in ("data_dir", "cache_dir"):
        if values.get(name) is not None:
            values[name] = Path(str(values[name]))
    return Settings(**values)  # type: ignore[arg-type]


def _convert(kind: object, raw: str) -> object:
    if kind in (bool, "bool"):
        if raw.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"not a boolean: {raw!r}")
        return raw.lower() in ("1", "true", "yes")
    if kind in (int, "int"):
        return int(raw)
    if kind in (float, "float"):
        return float(raw)
    if kind in (Path, "Path", Path | None, "Path | None"):
        return Path(raw)
    return raw
