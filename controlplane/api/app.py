"""The aiohttp application, built by one keyword-only factory."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from controlplane.api import health, keys, middleware, runs
from controlplane.api.appkeys import DB, ENGINE, METRICS, SETTINGS, STORE
from controlplane.engine.runs import RunEngine
from controlplane.errors import TraceLoomError
from controlplane.fleet.base import FleetProvider
from controlplane.fleet.ec2 import Ec2Config, Ec2Provider
from controlplane.fleet.ec2_reaper import Ec2Reaper
from controlplane.fleet.local import LocalProvider
from controlplane.logs import get_logger
from controlplane.metrics import Metrics
from controlplane.remote.dispatch import Dispatcher
from controlplane.settings import Settings
from controlplane.storage.artifacts import LocalArtifactStore
from controlplane.storage.db import Database

log = get_logger(__name__)


def make_provider(settings: Settings, *, db: Database | None = None) -> FleetProvider:
    """The fleet provider the settings name; ``db`` records cloud instance use."""
    if settings.fleet == "ec2":
        return Ec2Provider(config=Ec2Config.from_settings(settings), usage=db)
    if settings.fleet == "local":
        return LocalProvider(
            hosts_dir=settings.hosts_dir,
            deps_dir=settings.host_deps_dir,
            max_hosts=settings.local_max_hosts,
            chromium_path=settings.chromium_path,
            idle_timeout_s=settings.local_idle_timeout_s,
        )
    raise TraceLoomError(
        f"unknown fleet provider {settings.fleet!r}; use 'local' or 'ec2'"
    )


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
        async with Database.open(settings.db_path) as db:
            app[DB] = db
            app[STORE] = LocalArtifactStore(settings.artifacts_dir)
            fleet = provider or make_provider(settings, db=db)
            engine = RunEngine(
                settings=settings,
                db=db,
                provider=fleet,
                dispatcher=Dispatcher(
                    app[STORE], poll_interval_s=settings.poll_interval_s
                ),
            )
            app[ENGINE] = engine
            if settings.fleet == "local" and not settings.chromium_path:
                log.warning(
                    "browsers.no_chromium_path",
                    detail="TRACELOOM_CHROMIUM_PATH is not set: local hosts use"
                    " Playwright's own downloaded browsers, if any",
                )
            await engine.recover()
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
                await engine.close()
                await fleet.close()

    app.cleanup_ctx.append(resources)
    app.router.add_routes(health.routes)
    app.router.add_routes(runs.routes)
    app.router.add_routes(keys.routes)
    return app
