"""The aiohttp application, built by one keyword-only factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

from aiohttp import web

from controlplane.api import health, keys, middleware, runs
from controlplane.api.appkeys import AWS, DB, ENGINE, METRICS, SETTINGS, STORE
from controlplane.aws import Aws, AwsConfig
from controlplane.engine.runs import RunEngine
from controlplane.errors import TraceLoomError
from controlplane.fleet.base import FleetProvider
from controlplane.fleet.inventory import load_inventory
from controlplane.fleet.local import LocalProvider
from controlplane.fleet.static import StaticProvider
from controlplane.logs import get_logger
from controlplane.metrics import Metrics
from controlplane.remote.dispatch import Dispatcher
from controlplane.settings import Settings
from controlplane.storage.artifacts import LocalArtifactStore
from controlplane.storage.db import Database
from controlplane.storage.s3 import ArtifactStore, S3ArtifactStore

log = get_logger(__name__)


def make_provider(settings: Settings) -> FleetProvider:
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
        f"unknown fleet provider {settings.fleet!r}; use 'local' or 'static'"
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
    *, settings: Settings, provider: FleetProvider | None = None
) -> web.Application:
    """The control plane's application; resources open and close with it."""
    app = web.Application(
        middlewares=[middleware.request_context, middleware.errors, middleware.auth],
        client_max_size=1024 * 1024,
    )
    app[SETTINGS] = settings
    app[METRICS] = Metrics()

    async def resources(app: web.Application) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        aws = Aws(AwsConfig.from_settings(settings))
        app[AWS] = aws
        async with Database.open(settings.db_path) as db:
            app[DB] = db
            app[STORE] = make_store(settings, aws)
            fleet = provider or make_provider(settings)
            engine = RunEngine(
                settings=settings,
                db=db,
                provider=fleet,
                dispatcher=Dispatcher(
                    app[STORE], poll_interval_s=settings.poll_interval_s
                ),
                aws=aws,
            )
            app[ENGINE] = engine
            if settings.fleet == "local" and not settings.chromium_path:
                log.warning(
                    "browsers.no_chromium_path",
                    detail="TRACELOOM_CHROMIUM_PATH is not set: local hosts use"
                    " Playwright's own downloaded browsers, if any",
                )
            await engine.recover()
            try:
                yield
            finally:
                await engine.close()
                await fleet.close()
                await aws.close()

    app.cleanup_ctx.append(resources)
    app.router.add_routes(health.routes)
    app.router.add_routes(runs.routes)
    app.router.add_routes(keys.routes)
    return app
