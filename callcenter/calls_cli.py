"""`callcenter call simulate`: a citizen's call without a softphone."""
from __future__ import annotations

import asyncio
import sys

import click

from callcenter.settings import get_settings


@click.group("call")
def call_group() -> None:
    """Calls: simulate a citizen dialling 12345."""


@call_group.command("simulate")
@click.option("--keys", "-k", multiple=True,
              help="What to type at each prompt, in order (repeat the option; '' stays silent). E.g. -k 5 -k 20261125000123#")
@click.option("--caller", default="13800000000", show_default=True, help="The citizen's number (caller ID).")
@click.option("--stay", is_flag=True, help="Stay on the line in the queue instead of hanging up when queued.")
@click.option("--timeout", type=float, default=120.0, show_default=True)
def simulate(keys: tuple[str, ...], caller: str, stay: bool, timeout: float) -> None:
    """Dial 12345 on the running Asterisk as a simulated citizen and report what happened.

    Needs Asterisk running (`callcenter asterisk start`) and the FastAGI server (`callcenter run`
    or `callcenter agi serve`).
    """
    from callcenter.ami.client import AMIClient
    from callcenter.simulate import simulate_call
    from ticketing.privacy import mask_phone

    async def main():
        ami = AMIClient.from_settings(get_settings())
        await ami.start()
        try:
            return await simulate_call(ami, list(keys), caller=caller, hang_up_when_queued=not stay, timeout=timeout)
        finally:
            await ami.stop()

    try:
        result = asyncio.run(main())
    except asyncio.TimeoutError:
        click.echo("error: the call did not end in time", err=True)
        sys.exit(1)
    click.echo(f"call {result.uniqueid} from {mask_phone(caller)} ({result.seconds:.1f} s)")
    click.echo(f"  menu asked for input at: {', '.join(result.prompts_for_input) or '-'}")
    click.echo(f"  keys sent: {''.join(result.keys_sent) or '-'}")
    click.echo(f"  queued for an operator: {'yes (' + (result.queue_reason or '') + ')' if result.queued else 'no'}")
