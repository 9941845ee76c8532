"""`callcenter agi serve`: the FastAGI server that runs the voice menus."""
from __future__ import annotations

import asyncio
from pathlib import Path

import click

from callcenter.settings import get_settings


@click.group("agi")
def agi_group() -> None:
    """The FastAGI server (voice menus)."""


@agi_group.command("serve")
@click.option("--port", type=int, default=None, help="Default: settings (4573).")
def serve(port: int | None) -> None:
    """Serve AGI requests from Asterisk until interrupted."""
    from callcenter import eventloop
    from callcenter.runtime import agi_server, write_fastagi_pid

    settings = get_settings()

    async def main() -> None:
        server = agi_server(settings, port=port)
        await server.start()
        write_fastagi_pid(settings)
        loop = "uvloop" if type(asyncio.get_running_loop()).__module__.startswith("uvloop") else "asyncio"
        click.echo(f"FastAGI listening on {server.host}:{server.port} ({loop} event loop)")
        try:
            await server.serve_forever()
        finally:
            await server.stop()

    try:
        eventloop.run(main(), settings.event_loop)
    except KeyboardInterrupt:
        pass


@agi_group.command("watchdog")
@click.option("--stall-after", type=float, default=2.0, show_default=True,
              help="Seconds a caller may wait for the server's next command before going to the queue.")
@click.option("--probe-every", type=float, default=1.0, show_default=True, help="Seconds between health probes.")
@click.option("--dead-after", type=int, default=2, show_default=True,
              help="Failed probes in a row after which every caller in the menu goes to the queue.")
def watchdog(stall_after: float, probe_every: float, dead_after: int) -> None:
    """Never strand a caller: move callers the FastAGI server leaves waiting to the operator queue
    (run as its own process, beside `callcenter run`; see callcenter/agi_watchdog.py)."""
    from callcenter import eventloop
    from callcenter.agi_watchdog import AgiWatchdog
    from callcenter.ami.client import AMIClient
    from callcenter.runtime import FASTAGI_PID_FILE

    settings = get_settings()

    async def main() -> None:
        ami = AMIClient.from_settings(settings)
        await ami.start(wait=False)
        dog = AgiWatchdog(ami, settings.agi_host, settings.agi_port, stall_after=stall_after,
                          probe_every=probe_every, dead_after=dead_after,
                          pid_file=Path(settings.state_dir) / FASTAGI_PID_FILE)
        click.echo(f"watching the voice menu server on {settings.agi_host}:{settings.agi_port}")
        try:
            await dog.run()
        finally:
            await ami.stop()

    try:
        eventloop.run(main(), settings.event_loop)
    except KeyboardInterrupt:
        pass
