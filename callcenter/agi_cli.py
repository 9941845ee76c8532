"""`callcenter agi serve`: the FastAGI server that runs the voice menus."""
from __future__ import annotations

import asyncio

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
    from callcenter.runtime import agi_server

    settings = get_settings()

    async def main() -> None:
        server = agi_server(settings, port=port)
        await server.start()
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
