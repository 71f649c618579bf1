"""Typed keys for the resources the application shares between handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from controlplane.aws import Aws
    from controlplane.dashboard.sessions import SessionStore
    from controlplane.engine.runs import RunEngine
    from controlplane.metrics import Metrics
    from controlplane.notify.service import Notifier
    from controlplane.schedules.service import ScheduleService
    from controlplane.settings import Settings
    from controlplane.storage.db import Database
    from controlplane.storage.s3 import ArtifactStore
    from controlplane.storage.secrets import SecretStore

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DB: web.AppKey[Database] = web.AppKey("db")
STORE: web.AppKey[ArtifactStore] = web.AppKey("store")
ENGINE: web.AppKey[RunEngine] = web.AppKey("engine")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
AWS: web.AppKey[Aws] = web.AppKey("aws")
SCHEDULES: web.AppKey[ScheduleService] = web.AppKey("schedules")
NOTIFIER: web.AppKey[Notifier] = web.AppKey("notifier")
SESSIONS: web.AppKey[SessionStore] = web.AppKey("sessions")
SECRETS: web.AppKey[SecretStore] = web.AppKey("secrets")
