"""Control plane settings: defaults, environment variables and CLI flags."""

from __future__ import annotations

import math
import os
from pathlib import Path

import attrs

from controlplane.errors import TraceLoomError

ENV_PREFIX = "TRACELOOM_"
# Settings that must be above zero; anything else is a mistake to refuse at
# start, not a surprise later (a cap of 0 hosts would queue every run).
_POSITIVE = (
    "local_max_hosts",
    "local_idle_timeout_s",
    "max_server_count",
    "max_preparing_runs",
    "poll_interval_s",
    "clone_timeout_s",
    "install_timeout_s",
)
# A host's progress unseen for longer than this is no interval but an outage.
_MAX_POLL_INTERVAL_S = 60.0
_CHOICES = {"log_format": ("console", "json"), "shutdown": ("suspend", "stop")}


class SettingsError(TraceLoomError, ValueError):
    """A setting has a value the control plane cannot work with."""


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
    # Runs whose source is fetched and dependencies installed at one time;
    # the others wait in "queued".
    max_preparing_runs: int = 4
    chromium_path: str = ""
    # Whether gitRepo may be a path on the control plane's own disk. Handy on
    # one machine; turn it off where API users must not read local folders.
    allow_local_repos: bool = True
    # What stopping the control plane does to runs in flight: "suspend"
    # leaves them and their hosts for the next process to resume (a restart
    # or redeploy loses no run); "stop" ends them errored, hosts released.
    shutdown: str = "suspend"
    log_format: str = "console"
    log_level: str = "info"
    # How often a host is asked for its shard's new events. The host itself
    # watches for the shard's end (a long poll), which is seen within 0.1 s.
    poll_interval_s: float = 0.5
    clone_timeout_s: float = 300.0
    install_timeout_s: float = 900.0
    # -- on-prem hosts (fleet "static") --
    # The inventory file (YAML or TOML) of the hosts runs may lease.
    inventory: str = ""
    # -- AWS (S3 sources and artifacts) --
    # Empty: botocore's own resolution (AWS_REGION, the instance's metadata).
    aws_region: str = ""
    # An S3-compatible endpoint instead of AWS's own (MinIO, a test server).
    aws_endpoint_url: str = ""
    # Where CI uploads zipped suites; when set, the only bucket S3 sources
    # may name. Empty: any bucket the control plane's credentials can read.
    sources_bucket: str = ""
    source_zip_max_bytes: int = 512 * 1024 * 1024
    source_unpacked_max_bytes: int = 2 * 1024 * 1024 * 1024
    source_max_entries: int = 100_000
    # When set, artifacts are kept in this bucket instead of the data folder.
    artifacts_bucket: str = ""
    artifacts_prefix: str = ""
    # Lifetimes of the presigned links the API hands out and of the
    # presigned uploads a runner gets for one batch's artifacts.
    artifact_link_expires_s: int = 300
    artifact_upload_expires_s: int = 900
    artifact_upload_max_bytes: int = 1024 * 1024 * 1024
    # -- reports, dashboard, schedules, notifications ----------------------
    # The longest a run's merge of blob reports into one HTML report may take.
    report_timeout_s: float = 300.0
    # Dashboard sign-in: an API key always works; this password, when set,
    # signs in as the operator with every scope. Only a hash is kept.
    operator_password: str = attrs.field(default="", repr=False)
    # A dashboard session ends this long after sign-in.
    session_ttl_s: float = 43200.0
    # A schedule's slot missed while the control plane was down still fires
    # (once, late) when it comes back at most this long after the slot.
    schedule_misfire_grace_s: float = 3600.0
    # A YAML file listing webhooks (see controlplane/notify/config.py).
    webhooks_file: Path | None = None
    webhook_max_attempts: int = 6
    webhook_retry_base_s: float = 5.0
    # A token that may write commit statuses: runs given a commitSha of a
    # GitHub repository get a status when they finish.
    github_token: str = attrs.field(default="", repr=False)
    # GitHub's REST API base URL; GitHub Enterprise has its own. The tests
    # point it at a small HTTP server on loopback standing in for GitHub,
    # which this machine cannot reach.
    github_api_url: str = "https://api.github.com"
    # The host in git URLs whose repositories get statuses.
    github_host: str = "github.com"
    github_status_context: str = "traceloom"
    # The key that encrypts stored secrets; keep it apart from the database.
    secrets_key_file: Path | None = None
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

    @property
    def secrets_key_path(self) -> Path:
        return self.secrets_key_file or self.data_dir / "secrets.key"

    def base_url(self) -> str:
        return self.public_url.rstrip("/") or f"http://{self.host}:{self.port}"


def settings_from_env(
    environ: dict[str, str] | None = None, **overrides: object
) -> Settings:
    """Build settings from ``TRACELOOM_*`` variables, then explicit overrides."""
    env = os.environ if environ is None else environ
    values: dict[str, object] = {}
    for field in attrs.fields(Settings):
        variable = ENV_PREFIX + field.name.upper()
        raw = env.get(variable)
        if raw is not None and raw != "":
            try:
                values[field.name] = _convert(field.type, raw)
            except ValueError:
                raise SettingsError(
                    f"{variable}={raw!r} is not a valid {_kind(field.type)}"
                ) from None
    values.update({k: v for k, v in overrides.items() if v is not None})
    for name in ("data_dir", "cache_dir", "webhooks_file", "secrets_key_file"):
        if values.get(name) is not None:
            values[name] = Path(str(values[name]))
    settings = Settings(**values)  # type: ignore[arg-type]
    check(settings)
    return settings


def check(settings: Settings) -> None:
    """Refuse values no control plane can work with, naming the variable."""
    for name in _POSITIVE:
        value = getattr(settings, name)
        # "not above" refuses nan too; inf is no timeout or interval either.
        if not value > 0 or math.isinf(value):
            raise SettingsError(f"{ENV_PREFIX}{name.upper()} must be above 0")
    if settings.poll_interval_s > _MAX_POLL_INTERVAL_S:
        raise SettingsError(
            f"{ENV_PREFIX}POLL_INTERVAL_S must be at most {_MAX_POLL_INTERVAL_S:.0f}"
            " (seconds between looks at a host's progress)"
        )
    if not 0 <= settings.port <= 65535:
        raise SettingsError(f"{ENV_PREFIX}PORT must be between 0 and 65535")
    for name, allowed in _CHOICES.items():
        if getattr(settings, name) not in allowed:
            raise SettingsError(
                f"{ENV_PREFIX}{name.upper()} must be one of {', '.join(allowed)}"
            )


def _kind(kind: object) -> str:
    names = {bool: "boolean", int: "whole number", float: "number"}
    for python_type, name in names.items():
        if kind in (python_type, python_type.__name__):
            return name
    return "value"


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
