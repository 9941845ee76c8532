"""Assemble the hotline's FastAGI server from plain values (callcenter/runtime.py reads them from
the install's settings)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from sqlalchemy import Engine

from ticketing.domain import Domain
from ticketing.store import make_engine, make_session_factory

from .hotline import Hotline, router_for
from .ledgers import NoticeLedger, SurveyLedger
from .server import FastAGIServer


def build_hotline(config_dir: Path, database_url: str, *, recordings_dir: str, survey: SurveyLedger | None = None,
                  notices: NoticeLedger | None = None, domain: Domain | None = None,
                  engine: Engine | None = None, read_file: Callable[[str], bytes | None] | None = None) -> Hotline:
    """`recordings_dir`: where Asterisk writes after-hours messages, as it sees it (callcenter.pbx.root);
    `read_file`: a file Asterisk wrote, by that same kind of path (a received fax)."""
    domain = domain or Domain.load(config_dir)
    engine = engine or make_engine(database_url)
    return Hotline.create(domain, make_session_factory(engine), recordings_dir, survey=survey, notices=notices,
                          read_file=read_file)


def build_server(hotline: Hotline, *, host: str, port: int, **kwargs) -> FastAGIServer:
    return FastAGIServer(router_for(hotline), host=host, port=port, on_stop=hotline.close, **kwargs)
