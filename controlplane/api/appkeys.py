"""Typed keys for the resources the application shares between handlers."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from controlplane.engine.runs import RunEngine
    from controlplane.metrics import Metrics
    from controlplane.settings import Settings
    from controlplane.storage.artifacts import LocalArtifactStore
    from controlplane.storage.db import Database
    from controlplane.storage.secrets import SecretStore

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
DB: web.AppKey[Database] = web.AppKey("db")
STORE: web.AppKey[LocalArtifactStore] = web.AppKey("store")
ENGINE: web.AppKey[RunEngine] = web.AppKey("engine")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
SECRETS: web.AppKey[SecretStore] = web.AppKey("secrets")
