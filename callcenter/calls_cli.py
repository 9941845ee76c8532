"""`callcenter call simulate`: a citizen's call without a softphone."""
from __future__ import annotations

import asyncio
import sys
import time

import click

from callcenter.settings import get_settings

RECORD_WAIT_TRIES, RECORD_WAIT_S = 25, 0.2


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
    for line in _describe(result):
        click.echo(line)


def _describe(result) -> list[str]:
    """The call in words, from the record the hotline wrote (waiting briefly for it to close)."""
    from callcenter.simulate_report import describe, load_record
    from ticketing.domain import Domain
    from ticketing.store import make_session_factory, session_scope

    settings = get_settings()
    engine = settings.store_engine()
    try:
        sessions = make_session_factory(engine)
        record = None
        for _ in range(RECORD_WAIT_TRIES):  # the menu closes the record as the caller leaves it
            with session_scope(sessions) as s:
                record = load_record(s, result.uniqueid)
            if record is not None and record.outcome is not None:
                break
            time.sleep(RECORD_WAIT_S)
        return describe(result, record, Domain.load(settings.config_dir).policy)
    finally:
        engine.dispose()
