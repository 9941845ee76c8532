"""The whole hotline in a process of its own, as `callcenter run` runs it (the API, the FastAGI menu,
call control and the call log over AMI, the callback scheduler), for the failure drills that kill
and restart it: `python -m tests.live.app_process` with the install's settings from the environment
(CALLCENTER_DATABASE_URL, ports...), the store prepared as `callcenter run` does, the menu's clock
fixed in service hours. Prints "ready" once the API answers (FastAGI listens before it)."""
from __future__ import annotations

import asyncio
import socket
import sys


async def _ready(host: str, port: int) -> None:
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            print("ready", flush=True)
            return
        except OSError:
            await asyncio.sleep(0.1)


async def main() -> None:
    from callcenter.logs import setup
    from callcenter.runtime import prepare, run_hotline
    from callcenter.settings import get_settings
    from tests.conftest import CONFIG_DIR, FakeClock
    from tests.live.conftest import IN_HOURS
    from ticketing.domain import Domain

    settings = get_settings()
    setup(settings)
    prepare(settings, asterisk=False)
    base = Domain.load(CONFIG_DIR)
    domain = Domain(policy=base.policy, calendar=base.calendar, city=base.city, clock=FakeClock(IN_HOURS))
    serving = asyncio.create_task(run_hotline(settings, domain))
    waiting = asyncio.create_task(_ready(settings.api_host, settings.api_port))
    done, _ = await asyncio.wait({serving, waiting}, return_when=asyncio.FIRST_COMPLETED)
    if serving in done:
        waiting.cancel()
        serving.result()
        sys.exit("the hotline stopped before it was ready")
    await serving


if __name__ == "__main__":
    asyncio.run(main())
