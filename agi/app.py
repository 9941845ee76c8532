"""Assemble the hotline's FastAGI server from the install's settings."""
from __future__ import annotations

from sqlalchemy import Engine

from callcenter.pbx.root import RECORDINGS_DIR
from callcenter.settings import Settings
from ticketing.domain import Domain
from ticketing.store import make_engine, make_session_factory

from .hotline import Hotline, router_for
from .server import FastAGIServer


def build_hotline(settings: Settings, *, domain: Domain | None = None, engine: Engine | None = None) -> Hotline:
    domain = domain or Domain.load(settings.config_dir)
    engine = engine or make_engine(settings.effective_database_url)
    return Hotline.create(domain, make_session_factory(engine), RECORDINGS_DIR)


def build_server(settings: Settings, *, hotline: Hotline | None = None, port: int | None = None, **kwargs) -> FastAGIServer:
    hotline = hotline or build_hotline(settings)
    return FastAGIServer(router_for(hotline), host=settings.agi_host,
                         port=settings.agi_port if port is None else port, **kwargs)
