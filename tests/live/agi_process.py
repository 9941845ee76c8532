"""The voice menu's FastAGI server in a process of its own (for drills that freeze or kill it):
`python -m tests.live.agi_process STATE_DIR DB_URL HOST PORT` serves the menu over a fresh SQLite store
seeded from config/ (its audit key in STATE_DIR), clock fixed in service hours, and prints "ready" once it listens."""
from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path


async def main(state_dir: str, url: str, host: str, port: int) -> None:
    from agi.hotline import Hotline, router_for
    from agi.server import FastAGIServer
    from callcenter.audit_vault import install as install_audit_vault
    from callcenter.pbx.root import RECORDINGS_DIR
    from callcenter.runtime import FASTAGI_PID_FILE
    from tests.conftest import CONFIG_DIR, FakeClock
    from tests.live.conftest import IN_HOURS
    from ticketing.domain import Domain
    from ticketing.seed import seed_units
    from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

    install_audit_vault(state_dir)
    upgrade(url)
    clock = FakeClock(IN_HOURS)
    base = Domain.load(CONFIG_DIR)
    domain = Domain(policy=base.policy, calendar=base.calendar, city=base.city, clock=clock)
    sessions = make_session_factory(make_engine(url))
    with session_scope(sessions) as s:
        seed_units(s, domain.city, clock())
    server = FastAGIServer(router_for(Hotline.create(domain, sessions, RECORDINGS_DIR)), host=host, port=port)
    await server.start()
    Path(state_dir, FASTAGI_PID_FILE).write_text(f"{os.getpid()}\n")  # as `callcenter run` does
    print("ready", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
