"""Wiring the gateway at start-up: keys, limits, guardrails and the audit log from the settings."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from starlette.types import ASGIApp

from aifab.config import Settings
from aifab.errors import ConfigError
from aifab.gateway.front import Gateway
from aifab.gateway.guards import Guardrails
from aifab.gateway.hosts import is_loopback
from aifab.gateway.keys import KeyStore
from aifab.gateway.quotas import make_limiter
from aifab.state import Database


def build_gateway(app: ASGIApp, settings: Settings, db: Database, registry: CollectorRegistry | None = None, *,
                  local_token: str | None = None) -> Gateway:
    """The gateway in front of ``app`` (after ``check_bind``); ``local_token`` is the secret of the data
    directory's token file, which admits its reader as admin."""
    keys = KeyStore(db)
    check_bind(settings, keys)
    return Gateway(app, settings, keys=keys, limiter=make_limiter(db), guardrails=Guardrails(settings.gateway.guardrails),
                   db=db, registry=registry, local_token=local_token)


def check_bind(settings: Settings, keys: KeyStore) -> None:
    """Refuse a non-loopback address while no API key exists, unless ``gateway.allow_open`` says so."""
    host = settings.serve.host
    if not is_loopback(host) and not keys.any_active() and not settings.gateway.allow_open:
        raise ConfigError(
            f"refusing to serve {host} without API keys (anyone could call it): create one with "
            "`aifab keys create --name admin --admin`, or set gateway.allow_open = true"
        )
