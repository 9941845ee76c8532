"""Live tests run against the project's real Asterisk (see docs/asterisk.md).

The session fixture `asterisk` makes sure it is installed (idempotent `install`: picks up template
and prompt changes) and running, and yields the settings. It stops Asterisk at the end only if it
started it: other sessions and engineers share the same PBX.
"""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from callcenter.settings import get_settings
from tests.live.helpers import agi_port_lock, ensure_running, stop_if_started


def pytest_collection_modifyitems(items):
    # everything under tests/live/ needs the real PBX: `-m "not live"` deselects it
    for item in items:
        if "/tests/live/" in str(item.fspath):
            item.add_marker(pytest.mark.live)


# True when this session started Asterisk (its own PBX: a drill may restart it; never a shared one)
STARTED_HERE = pytest.StashKey[bool]()


@pytest.fixture(scope="session")
def asterisk(request):
    settings = get_settings()
    started = ensure_running(settings)
    request.config.stash[STARTED_HERE] = started
    # Every live test starts a fresh store on this state directory's audit key: it must cover event 1
    # (on a real install key 1 starts at the store's next event, after the unkeyed ones).
    from callcenter.audit_vault import FileVault

    first = FileVault(settings.state_dir).keys(1)[0].from_event
    assert first == 1, f"{settings.state_dir}/audit.key starts at event {first}: not a test install's key"
    yield settings
    stop_if_started(settings, started)


IN_HOURS = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 Shanghai: the menu is open


@pytest.fixture
async def hotline(asterisk, tmp_path):
    """Our FastAGI server on the install's port (the dialplan calls that port), over a fresh
    SQLite store seeded from config/, with a FakeClock. Holds the cross-process port lock, so
    parallel sessions sharing this Asterisk take turns. Gives: .domain, .clock, .sessions,
    .server, .ami (a started AMIClient), .flows."""
    from callcenter.pbx.root import RECORDINGS_DIR
    from agi.hotline import Hotline, router_for
    from agi.server import FastAGIServer
    from callback import attempts, notify
    from callcenter.ami.client import AMIClient
    from tests.conftest import CONFIG_DIR, FakeClock
    from ticketing.domain import Domain
    from ticketing.seed import seed_units
    from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

    url = f"sqlite:///{tmp_path / 'live.db'}"
    upgrade(url)
    clock = FakeClock(IN_HOURS)
    base = Domain.load(CONFIG_DIR)
    domain = Domain(policy=base.policy, calendar=base.calendar, city=base.city, clock=clock)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        seed_units(s, domain.city, clock())
    from callcenter.pbx.root import asterisk_file

    hot = Hotline.create(domain, sessions, RECORDINGS_DIR, survey=attempts, notices=notify,
                         read_file=lambda path: asterisk_file(asterisk, path))
    with agi_port_lock(asterisk):
        server = FastAGIServer(router_for(hot), host=asterisk.agi_host, port=asterisk.agi_port, on_stop=hot.close)
        for attempt in range(180):  # a server of another session that skipped the lock: wait for it
            try:
                await server.start()
                break
            except OSError:
                if attempt == 179:
                    raise
                await asyncio.sleep(1)
        ami = AMIClient.from_settings(asterisk)
        await ami.start()
        hot.clock, hot.sessions, hot.server, hot.ami = clock, sessions, server, ami
        try:
            yield hot
        finally:
            await ami.stop()
            await server.stop()
            engine.dispose()
