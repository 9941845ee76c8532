"""`callcenter run`: the whole hotline in one process — the HTTP API, the FastAGI server, and the
background services that hook in here (call control over AMI, the callback scheduler)."""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

from callcenter.settings import Settings

log = logging.getLogger("callcenter.run")


def prepare(settings: Settings, *, asterisk: bool = True) -> None:
    """Everything a fresh install needs before serving: schema, city data, Asterisk."""
    from callcenter.audit_vault import install as install_audit_vault
    from ticketing.domain import Domain
    from ticketing.seed import seed_units
    from ticketing.store import (
        make_session_factory,
        session_scope,
        upgrade,
    )

    install_audit_vault(settings.state_dir)
    domain = Domain.load(settings.config_dir)
    engine = settings.store_engine()
    with _one_at_a_time(engine):  # the nodes of a cluster may start together on one database
        upgrade(settings.effective_database_url)
        with session_scope(make_session_factory(engine)) as session:
            seed_units(session, domain.city, domain.clock())
        with session_scope(make_session_factory(engine)) as session:
            from ticketing.knowledge_seed import seed_knowledge
            from ticketing.knowledge_text import segmenter_for

            seed_knowledge(session, domain.config_dir, segmenter_for(domain.config_dir), domain.clock())
    engine.dispose()
    if asterisk:
        from callcenter.pbx.install import install
        from callcenter.pbx.process import start

        install(settings)
        start(settings)


@contextlib.contextmanager
def _one_at_a_time(engine):
    """On PostgreSQL, a session advisory lock held while the store is migrated and seeded."""
    if engine.dialect.name != "postgresql":
        yield
        return
    from sqlalchemy import text

    with engine.connect() as conn:
        conn.execute(text("select pg_advisory_lock(hashtext('callcenter-prepare'))"))
        conn.commit()
        try:
            yield
        finally:
            conn.execute(text("select pg_advisory_unlock(hashtext('callcenter-prepare'))"))
            conn.commit()


def build_app(settings: Settings, *, domain=None, engine=None, telephony: bool = True):
    """The API with what runs beside it: the call-control link over AMI, the callback scheduler
    (leader-elected, so several processes may share one database) and the figures' rollup refresh."""
    from callcenter.api.app import create_app
    from ticketing.domain import Domain

    domain = domain or Domain.load(settings.config_dir)
    engine = engine or settings.store_engine()
    from callcenter.figures_refresh import RollupRefresher
    from callcenter.ops.health import DiskWatch

    callcontrol, background = None, [RollupRefresher(domain, engine), DiskWatch(settings)]
    if telephony:
        from callcenter.callbacks import callback_service

        callcontrol = _callcontrol(settings, domain, engine)
        background.append(callback_service(settings, domain=domain, engine=engine))
        if settings.system_name:  # a node of a cluster (docs/scaling.md): its liveness, lost nodes' calls
            from callcenter.liveness import NodeLiveness

            background.append(NodeLiveness.from_settings(settings, callcontrol.ami, engine))
    return create_app(settings, domain=domain, engine=engine, callcontrol=callcontrol, background=background)


def _callcontrol(settings: Settings, domain, engine):
    from callcenter.callcontrol import CallControl
    from ticketing.store import make_session_factory

    return CallControl.from_settings(settings, make_session_factory(engine), domain)


def agi_server(settings: Settings, *, domain=None, engine=None, port: int | None = None):
    """The FastAGI server of this install, with the callback scheduler's side of the survey."""
    from agi.app import build_hotline, build_server
    from callback import attempts, notify
    from callcenter.audit_vault import install as install_audit_vault
    from callcenter.pbx.root import RECORDINGS_DIR, asterisk_file

    install_audit_vault(settings.state_dir)
    hotline = build_hotline(settings.config_dir, settings.effective_database_url, recordings_dir=RECORDINGS_DIR,
                            survey=attempts, notices=notify, domain=domain, engine=engine or settings.store_engine(),
                            read_file=lambda path: asterisk_file(settings, path))
    return build_server(hotline, host=settings.agi_host, port=settings.agi_port if port is None else port)


def domain_and_sessions(settings: Settings | None = None):
    """The city's domain and a session factory on the install's store, its audit key in place: what
    every command that reads or writes the store starts from."""
    from callcenter.audit_vault import install as install_audit_vault
    from callcenter.settings import get_settings
    from ticketing.domain import Domain
    from ticketing.store import make_session_factory

    settings = settings or get_settings()
    install_audit_vault(settings.state_dir)
    return Domain.load(settings.config_dir), make_session_factory(settings.store_engine())


FASTAGI_PID_FILE = "fastagi.pid"  # in the state dir: which process serves FastAGI (callcenter/agi_watchdog.py)


def write_fastagi_pid(settings: Settings) -> None:
    (Path(settings.state_dir) / FASTAGI_PID_FILE).write_text(f"{os.getpid()}\n")


async def run_hotline(settings: Settings, domain=None) -> None:
    """`domain`: the city's rules (default: from the config dir; the failure drills fix its clock)."""
    import uvicorn

    from callcenter.logs import UVICORN
    from ticketing.domain import Domain

    domain = domain or Domain.load(settings.config_dir)
    engine = settings.store_engine()
    agi = agi_server(settings, domain=domain, engine=engine)
    app = build_app(settings, domain=domain, engine=engine)
    app.state.agi_server = agi  # its counters go to /metrics (callcenter/ops/metrics.py)
    api = uvicorn.Server(uvicorn.Config(app, host=settings.api_host, port=settings.api_port, **UVICORN))
    await agi.start()
    write_fastagi_pid(settings)
    log.info("FastAGI on %s:%s, API on http://%s:%s", settings.agi_host, settings.agi_port,
             settings.api_host, settings.api_port)
    try:
        await api.serve()  # handles SIGINT/SIGTERM itself
    finally:
        await agi.stop()
        engine.dispose()
