"""`callcenter`: the command line for administrators (every command has --help)."""
from __future__ import annotations

import getpass
import sys

import click

from callcenter.runtime import domain_and_sessions as _domain_and_sessions
from callcenter.settings import get_settings


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Log debug messages, and every scheduler run and request.")
def main(verbose: bool) -> None:
    """12345 hotline: case workflow, voice menu and call control."""
    from callcenter import logs

    logs.setup(get_settings(), verbose=verbose)


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or migrate the schema (Alembic)."""
    from ticketing.store import current_revision, upgrade

    url = get_settings().effective_database_url
    upgrade(url, revision)
    click.echo(f"database at revision {current_revision(url)}")




@main.command()
def seed() -> None:
    """Load member units, their duty roster and the sample knowledge base from config/ (idempotent)."""
    from ticketing.knowledge_seed import seed_knowledge
    from ticketing.knowledge_text import segmenter_for
    from ticketing.seed import seed_units
    from ticketing.store import session_scope

    domain, factory = _domain_and_sessions()
    with session_scope(factory) as session:
        report = seed_units(session, domain.city, domain.clock())
        kb = seed_knowledge(session, domain.config_dir, segmenter_for(domain.config_dir), domain.clock())
    if not (report.changed or kb.changed):
        click.echo("nothing to change: the store already matches config/")
        return
    click.echo(f"units added {report.units_added}, updated {report.units_updated}, roster changes {report.roster_changes}")
    click.echo(f"knowledge entries added {kb.added}, updated {kb.updated}, indexed {kb.indexed}")


@main.group()
def user() -> None:
    """People who log in."""


@user.command("add")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["front_desk", "back_office", "unit_staff", "discipline",
                                                          "supervisor", "admin"]))
@click.option("--unit", "unit_code", help="Member unit code (unit_staff, discipline).")
@click.option("--name", "display_name", default="", help="Display name.")
@click.option("--extension", help="Operator's softphone extension (front_desk).")
@click.option("--unit-leader", is_flag=True, help="The unit's leader: approves its reports back (unit_staff, discipline).")
@click.option("--password", envvar="CALLCENTER_NEW_PASSWORD", help="Default: asked for, or $CALLCENTER_NEW_PASSWORD.")
def user_add(username, role, unit_code, display_name, extension, unit_leader, password) -> None:
    """Add a user with an argon2-hashed password."""
    from callcenter.auth import create_user
    from ticketing.errors import DomainError
    from ticketing.store import session_scope

    if not password:
        password = getpass.getpass("password: ")
    domain, factory = _domain_and_sessions()
    try:
        with session_scope(factory) as session:
            create_user(session, username=username, password=password, role=role, display_name=display_name,
                        unit_code=unit_code, operator_extension=extension, now=domain.clock(),
                        password_min_length=domain.policy.accounts.password_min_length, unit_leader=unit_leader)
    except DomainError as exc:
        _fail(exc.message)
    click.echo(f"user {username} ({role}) added")


def _on_user(username: str, step) -> None:
    """Run step(session, domain, user) as the administrator at the console; a domain error is a
    clear message and exit 1."""
    from callcenter import accounts
    from ticketing.errors import DomainError
    from ticketing.store import session_scope

    domain, factory = _domain_and_sessions()
    try:
        with session_scope(factory) as session:
            message = step(session, domain, accounts.user_named(session, username))
    except DomainError as exc:
        _fail(exc.message)
    click.echo(message)


def _console_actor():
    """Who acts in the audit record for these commands: the system at the server's console."""
    from ticketing.audit import Actor

    return Actor(user_id=None, name="console", role="system")


@user.command("disable")
@click.argument("username")
def user_disable(username: str) -> None:
    """Stop a user from logging in; every token of the user is revoked."""
    from callcenter import accounts

    def step(session, domain, u):
        n = accounts.set_active(session, _console_actor(), u, active=False, now=domain.clock())
        return f"user {username} disabled; {n} tokens revoked"
    _on_user(username, step)


@user.command("enable")
@click.argument("username")
def user_enable(username: str) -> None:
    """Let a disabled user log in again."""
    from callcenter import accounts

    def step(session, domain, u):
        accounts.set_active(session, _console_actor(), u, active=True, now=domain.clock())
        return f"user {username} enabled"
    _on_user(username, step)


@user.command("passwd")
@click.argument("username")
@click.option("--password", envvar="CALLCENTER_NEW_PASSWORD", help="Default: asked for, or $CALLCENTER_NEW_PASSWORD.")
def user_passwd(username: str, password: str | None) -> None:
    """Set a user's password (rules: length, not the user name, not common); every token is revoked."""
    from callcenter import accounts

    if not password:
        password = getpass.getpass("new password: ")

    def step(session, domain, u):
        n = accounts.set_password(session, _console_actor(), u, password, policy=domain.policy, now=domain.clock())
        return f"password of {username} changed; {n} tokens revoked"
    _on_user(username, step)


@user.command("role")
@click.argument("username")
@click.option("--role", required=True, type=click.Choice(["front_desk", "back_office", "unit_staff", "discipline",
                                                          "supervisor", "admin"]))
@click.option("--unit", "unit_code", help="Member unit code (unit_staff, discipline).")
@click.option("--unit-leader", is_flag=True, help="The unit's leader: approves its reports back.")
def user_role(username: str, role: str, unit_code: str | None, unit_leader: bool) -> None:
    """Move a user to another role (and unit, and whether they lead it); every token is revoked."""
    from callcenter import accounts

    def step(session, domain, u):
        n = accounts.set_role(session, _console_actor(), u, role, unit_code=unit_code, now=domain.clock(),
                              unit_leader=unit_leader)
        return f"user {username} is now {role}; {n} tokens revoked"
    _on_user(username, step)


@user.command("revoke-tokens")
@click.argument("username")
def user_revoke_tokens(username: str) -> None:
    """Revoke every token of a user (they log in again)."""
    from callcenter import accounts

    def step(session, domain, u):
        n = accounts.revoke_all_tokens(session, _console_actor(), u, now=domain.clock(), reason="revoked at the console")
        return f"{n} tokens of {username} revoked"
    _on_user(username, step)


@user.command("unlock")
@click.argument("username", required=False)
@click.option("--address", help="Also (or only) lift the lock of this client address.")
def user_unlock(username: str | None, address: str | None) -> None:
    """Lift a login lock (too many failed logins) of an account name and/or a client address."""
    from callcenter import accounts
    from ticketing.store import session_scope

    if not username and not address:
        _fail("give a user name, --address, or both")
    domain, factory = _domain_and_sessions()
    with session_scope(factory) as session:
        n = accounts.unlock(session, _console_actor(), username=username, address=address, now=domain.clock())
    click.echo(f"unlocked ({n} counters cleared)")


@main.command()
@click.option("--host", default=None, help="Default: settings (127.0.0.1).")
@click.option("--port", type=int, default=None, help="Default: settings (8000).")
@click.option("--no-telephony", is_flag=True, help="API only: no AMI link, no callback scheduler.")
def serve(host: str | None, port: int | None, no_telephony: bool) -> None:
    """Run the HTTP API (and pages) with the AMI link and the callback scheduler.

    Several `serve` processes may share one PostgreSQL: exactly one runs the scheduler at a time."""
    import uvicorn

    from callcenter.logs import UVICORN
    from callcenter.runtime import build_app

    settings = get_settings()
    uvicorn.run(build_app(settings, telephony=not no_telephony), host=host or settings.api_host,
                port=port or settings.api_port, **UVICORN)


@main.command()
@click.option("--no-asterisk", is_flag=True, help="Do not install or start Asterisk (API and FastAGI only).")
@click.option("--node", help="Run as this node of config/cluster.yaml (docs/scaling.md): its Asterisk, AMI, "
                             "systemname and FastAGI address from there; the database is shared.")
def run(no_asterisk: bool, node: str | None) -> None:
    """Run the hotline: migrate and seed the store, start Asterisk, then serve the API and FastAGI."""
    from callcenter import eventloop
    from callcenter.runtime import prepare, run_hotline

    settings = get_settings()
    if node:
        from callcenter.pbx import front
        from callcenter.pbx.root import ProvisionError

        try:
            settings = front.node_settings(settings, front.load_cluster(front.cluster_path(settings)), node)
        except ProvisionError as exc:
            _fail(str(exc))
    prepare(settings, asterisk=not no_asterisk)
    eventloop.run(run_hotline(settings), settings.event_loop)


@main.group()
def audit() -> None:
    """The accountability record (A1)."""


@audit.command("verify")
def audit_verify() -> None:
    """Check every event in the hash chain with its audit key, and the chain against the latest
    signed checkpoint; exit 1 if any event was edited, inserted or deleted."""
    from ticketing import audit as audit_log
    from ticketing.store import session_scope

    _domain, factory = _domain_and_sessions()
    with session_scope(factory) as session:
        report = audit_log.verify(session)
    for problem in report.problems:
        click.echo(f"PROBLEM {problem}")
    # context on stderr: stdout keeps its format (PROBLEM lines, then the count) for scripts
    if report.unkeyed:
        click.echo(f"note: {report.unkeyed} events from before the first audit key carry an unkeyed SHA-256", err=True)
    click.echo("latest signed checkpoint: " + (report.checkpoint or "none yet"), err=True)
    click.echo(f"{report.checked} events checked: " + ("chain intact" if report.ok else f"{len(report.problems)} problems"))
    sys.exit(0 if report.ok else 1)


@audit.command("rotate-key")
def audit_rotate_key() -> None:
    """Start a new audit key (in <state_dir>/audit.key) for the events from the next one on; the
    old keys stay there, verify needs them."""
    from callcenter.audit_vault import FileVault
    from ticketing import audit as audit_log
    from ticketing.store import session_scope

    _domain, factory = _domain_and_sessions()
    vault = FileVault(get_settings().state_dir)
    with session_scope(factory) as session:
        # under the chain-head lock: no event is appended between choosing the id and the new key
        key = vault.rotate(audit_log.next_event_id(session))
    click.echo(f"audit key {key.key_id} seals the events from {key.from_event} on ({vault.key_path})")


def _register_groups() -> None:
    # Groups owned by the telephony and scheduling parts of the application.
    from callcenter.callbacks_cli import callbacks_group
    from callcenter.agi_cli import agi_group
    from callcenter.calendar_cli import calendar_group
    from callcenter.calls_cli import call_group
    from callcenter.ivr_cli import ivr_group
    from callcenter.logs_cli import logs_group
    from callcenter.open311.cli import open311_group
    from callcenter.pbx.cli import asterisk_group
    from callcenter.pbx.front_cli import front_group
    from callcenter.stats_cli import stats_group
    from callcenter.ops.backup_cli import backup_command, restore_command
    from callcenter.ops.cli import doctor_command, service_group

    for group in (asterisk_group, ivr_group, agi_group, call_group, callbacks_group, calendar_group, stats_group,
                  logs_group, service_group, doctor_command, backup_command, restore_command, open311_group,
                  front_group):
        main.add_command(group)


_register_groups()


def entry_point() -> None:
    """Console entry point: a store that was never migrated gets a clear word, not a traceback."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    try:
        main(standalone_mode=True)
    except (OperationalError, ProgrammingError) as exc:
        text = str(exc.orig if getattr(exc, "orig", None) else exc).lower()
        if "no such table" in text or "does not exist" in text:
            _fail("the database has no schema yet: run `callcenter db upgrade` first")
        raise


if __name__ == "__main__":
    entry_point()
