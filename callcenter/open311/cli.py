"""`callcenter open311 add-client / list / revoke`: the applications allowed to create requests.

The api_key is printed once, when the client is added: the store keeps only its SHA-256, so a lost
key is replaced by revoking the client and adding it again under a new name. Every change is an
audit event (A1) by the console."""
from __future__ import annotations

import click

from callcenter.open311.clients import DEFAULT_RATE_LIMIT


@click.group("open311")
def open311_group() -> None:
    """Open311 GeoReport v2 clients (api_key per client, rate limit)."""


def _run(step):
    from callcenter.cli import _domain_and_sessions, _fail
    from ticketing.errors import DomainError
    from ticketing.store import session_scope

    domain, factory = _domain_and_sessions()
    try:
        with session_scope(factory) as session:
            return step(session, domain)
    except DomainError as exc:
        _fail(exc.message)


@open311_group.command("add-client")
@click.argument("name")
@click.option("--rate-limit", type=click.IntRange(1, 10_000), default=DEFAULT_RATE_LIMIT, show_default=True,
              help="Requests per minute this client may send.")
def add_client(name: str, rate_limit: int) -> None:
    """Register a client and print its api_key (shown this once only)."""
    from callcenter.cli import _console_actor
    from callcenter.open311 import clients

    key = _run(lambda session, domain: clients.add_client(session, _console_actor(), name, now=domain.clock(),
                                                          rate_limit=rate_limit)[1])
    click.echo(f"Open311 client {name} added ({rate_limit} requests per minute)")
    click.echo(f"api_key: {key}")
    click.echo("The key is not stored and will not be shown again: give it to the client now.", err=True)


@open311_group.command("list")
def list_clients() -> None:
    """Every client: name, added, revoked, rate limit, requests created."""
    from callcenter.open311 import clients

    def step(session, domain):
        tz = domain.calendar.tz
        when = lambda d: d.astimezone(tz).strftime("%Y-%m-%d %H:%M") if d else "-"
        return [f"{c.name}\tadded {when(c.created_at)}\trevoked {when(c.revoked_at)}\t"
                f"{c.rate_limit_per_minute}/min\t{n} requests" for c, n in clients.list_clients(session)]
    lines = _run(step)
    click.echo("\n".join(lines) if lines else "no Open311 clients")


@open311_group.command("revoke")
@click.argument("name")
def revoke(name: str) -> None:
    """Revoke a client's api_key at once (its requests and their cases stay)."""
    from callcenter.cli import _console_actor
    from callcenter.open311 import clients

    _run(lambda session, domain: clients.revoke_client(session, _console_actor(), name, now=domain.clock()))
    click.echo(f"Open311 client {name} revoked")
