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
    from agi.app import build_server

    async def main() -> None:
        server = build_server(get_settings(), port=port)
        await server.start()
        click.echo(f"FastAGI listening on {server.host}:{server.port}")
        try:
            await server.serve_forever()
        finally:
            await server.stop()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
