"""`callcenter run`: the whole hotline in one process — the HTTP API, the FastAGI server, and the
background services that hook in here (call control over AMI, the callback scheduler)."""
from __future__ import annotations

import asyncio
import logging
import signal

from callcenter.settings import Settings

log = logging.getLogger("callcenter.run")


def prepare(settings: Settings, *, asterisk: bool = True) -> None:
    """Everything a fresh install needs before serving: schema, city data, Asterisk."""
    from ticketing.domain import Domain
    from ticketing.seed import seed_units
    from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

    upgrade(settings.effective_database_url)
    domain = Domain.load(settings.config_dir)
    engine = make_engine(settings.effective_database_url)
    with session_scope(make_session_factory(engine)) as session:
        seed_units(session, domain.city, domain.clock())
    engine.dispose()
    if asterisk:
        from callcenter.pbx import provision

        provision.install(settings)
        provision.start(settings)


async def run_hotline(settings: Settings) -> None:
    import uvicorn

    from agi.app import build_hotline, build_server
    from callcenter.api.app import create_app
    from ticketing.domain import Domain
    from ticketing.store import make_engine

    domain = Domain.load(settings.config_dir)
    engine = make_engine(settings.effective_database_url)
    hotline = build_hotline(settings, domain=domain, engine=engine)
    agi = build_server(settings, hotline=hotline)
    app = create_app(settings, domain=domain, engine=engine)
    api = uvicorn.Server(uvicorn.Config(app, host=settings.api_host, port=settings.api_port, log_level="info"))

    services = []
    for name in ("callcenter.callcontrol.service", "callback.service"):
        try:
            module = __import__(name, fromlist=["start_service"])
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        services.append(await module.start_service(settings, domain=domain, engine=engine, app=app))

    await agi.start()
    log.info("FastAGI on %s:%s, API on http://%s:%s", settings.agi_host, settings.agi_port,
             settings.api_host, settings.api_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    api_task = asyncio.create_task(api.serve())
    try:
        await asyncio.wait([api_task, asyncio.create_task(stop.wait())], return_when=asyncio.FIRST_COMPLETED)
    finally:
        api.should_exit = True
        await agi.stop()
        for service in reversed(services):
            await service.stop()
        await api_task
        engine.dispose()
