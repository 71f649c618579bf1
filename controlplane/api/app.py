"""The aiohttp application, built by one keyword-only factory."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from controlplane import dashboard
from controlplane.api import health, keys, middleware, runs
from controlplane.api import secrets as secrets_api
from controlplane.api.appkeys import (
    AWS,
    DB,
    ENGINE,
    METRICS,
    NOTIFIER,
    SCHEDULES,
    SECRETS,
    SESSIONS,
    SETTINGS,
    STORE,
)
from controlplane.aws import Aws, AwsConfig
from controlplane.dashboard.auth import dashboard_auth
from controlplane.dashboard.sessions import SessionStore
from controlplane.engine.runs import RunEngine
from controlplane.errors import TraceLoomError
from controlplane.fleet.base import FleetProvider
from controlplane.fleet.ec2 import Ec2Config, Ec2Provider
from controlplane.fleet.ec2_reaper import Ec2Reaper
from controlplane.fleet.inventory import load_inventory
from controlplane.fleet.local import LocalProvider
from controlplane.fleet.static import StaticProvider
from controlplane.logs import get_logger
from controlplane.metrics import Metrics
from controlplane.notify.config import load_webhooks
from controlplane.notify.service import GitHubSettings, Notifier, RetryPolicy
from controlplane.remote.dispatch import Dispatcher
from controlplane.reports import api as reports_api
from controlplane.reports.merge import ReportBuilder
from controlplane.reports.store import ReportStore
from controlplane.schedules import api as schedules_api
from controlplane.schedules.service import ScheduleService
from controlplane.settings import Settings
from controlplane.storage.artifacts import LocalArtifactStore
from controlplane.storage.db import Database
from controlplane.storage.s3 import ArtifactStore, S3ArtifactStore
from controlplane.storage.sealing import Sealer
from controlplane.storage.secrets import SecretStore, load_or_create_key

log = get_logger(__name__)


def make_provider(
    settings: Settings, *, db: Database | None = None, aws: Aws | None = None
) -> FleetProvider:
    """The fleet provider the settings name; ``db`` records cloud instance use.

    The EC2 provider shares ``aws``'s session (one credential chain for S3 and
    EC2).
    """
    if settings.fleet == "ec2":
        return Ec2Provider(
            config=Ec2Config.from_settings(settings),
            usage=db,
            session=aws.session if aws is not None else None,
        )
    if settings.fleet == "local":
        return LocalProvider(
            hosts_dir=settings.hosts_dir,
            deps_dir=settings.host_deps_dir,
            max_hosts=settings.local_max_hosts,
            chromium_path=settings.chromium_path,
            idle_timeout_s=settings.local_idle_timeout_s,
        )
    if settings.fleet == "static":
        if not settings.inventory:
            raise TraceLoomError(
                "the static fleet needs an inventory file (TRACELOOM_INVENTORY)"
            )
        return StaticProvider(load_inventory(Path(settings.inventory)))
    raise TraceLoomError(
        f"unknown fleet provider {settings.fleet!r}; use 'local', 'static' or 'ec2'"
    )


def make_store(settings: Settings, aws: Aws) -> ArtifactStore:
    """The S3 store when a bucket is configured, else the local folder."""
    if settings.artifacts_bucket:
        return S3ArtifactStore(
            aws,
            bucket=settings.artifacts_bucket,
            prefix=settings.artifacts_prefix,
            link_expires_s=settings.artifact_link_expires_s,
            upload_expires_s=settings.artifact_upload_expires_s,
            upload_max_bytes=settings.artifact_upload_max_bytes,
        )
    return LocalArtifactStore(settings.artifacts_dir)


def make_app(
    *,
    settings: Settings,
    provider: FleetProvider | None = None,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """The control plane's application; resources open and close with it.

    ``clock`` is what schedules take as the time (tests move it).
    """
    app = web.Application(
        middlewares=[
            middleware.request_context,
            middleware.errors,
            middleware.auth,
            dashboard_auth,
        ],
        client_max_size=1024 * 1024,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()
    # Read at once, so that a wrong webhooks file stops the start.
    webhooks = load_webhooks(settings.webhooks_file)

    async def resources(app: web.Application) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        aws = Aws(AwsConfig.from_settings(settings))
        app[AWS] = aws
        secrets_key = load_or_create_key(settings.secrets_key_path)
        # Git credentials in the database are sealed with the same key.
        async with Database.open(settings.db_path, sealer=Sealer(secrets_key)) as db:
            app[DB] = db
            app[STORE] = make_store(settings, aws)
            app[SECRETS] = SecretStore(db, secrets_key)
            app[SESSIONS] = SessionStore(
                db,
                ttl_s=settings.session_ttl_s,
                operator_password=settings.operator_password,
            )
            notifier = make_notifier(settings, db, webhooks)
            app[NOTIFIER] = notifier
            fleet = provider or make_provider(settings, db=db, aws=aws)
            engine = RunEngine(
                settings=settings,
                db=db,
                provider=fleet,
                dispatcher=Dispatcher(
                    app[STORE], poll_interval_s=settings.poll_interval_s
                ),
                aws=aws,
                secrets=app[SECRETS],
                # The report first: the notifications link to it.
                listeners=[
                    ReportBuilder(
                        db=db,
                        store=app[STORE],
                        scratch_dir=settings.work_dir / "reports",
                        timeout_s=settings.report_timeout_s,
                    ),
                    notifier,
                ],
            )
            app[ENGINE] = engine
            schedules = ScheduleService(
                db=db,
                engine=engine,
                max_server_count=settings.max_server_count,
                misfire_grace_s=settings.schedule_misfire_grace_s,
                clock=clock,
            )
            app[SCHEDULES] = schedules
            if settings.fleet == "local" and not settings.chromium_path:
                log.warning(
                    "browsers.no_chromium_path",
                    detail="TRACELOOM_CHROMIUM_PATH is not set: local hosts use"
                    " Playwright's own downloaded browsers, if any",
                )
            await engine.recover()
            await ReportStore(db).abandon_unfinished()
            await app[SESSIONS].purge_expired()
            await notifier.start()
            await schedules.start()
            reaper = None
            if isinstance(fleet, Ec2Provider):
                if fleet.usage is None:
                    fleet.usage = db
                # Independent of any run: instances left by a crash go too.
                reaper = Ec2Reaper(fleet, db.run_status)
                reaper.start()
            try:
                yield
            finally:
                if reaper is not None:
                    await reaper.stop()
                await schedules.close()
                await engine.close()
                await notifier.close()
                await fleet.close()
                await aws.close()

    app.cleanup_ctx.append(resources)
    app.router.add_routes(health.routes)
    app.router.add_routes(runs.routes)
    app.router.add_routes(keys.routes)
    app.router.add_routes(reports_api.routes)
    app.router.add_routes(schedules_api.routes)
    app.router.add_routes(secrets_api.routes)
    dashboard.setup(app)
    return app


def make_notifier(settings: Settings, db: Database, webhooks: list[Any]) -> Notifier:
    """The notifier of the settings' webhooks and GitHub token (if any)."""
    github = None
    if settings.github_token:
        github = GitHubSettings(
            token=settings.github_token,
            api_url=settings.github_api_url,
            web_host=settings.github_host,
            context=settings.github_status_context,
        )
    return Notifier(
        db=db,
        base_url=settings.base_url(),
        webhooks=webhooks,
        github=github,
        retry=RetryPolicy(
            max_attempts=settings.webhook_max_attempts,
            base_delay_s=settings.webhook_retry_base_s,
        ),
    )
