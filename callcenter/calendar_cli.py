"""`callcenter calendar`: which years' holiday arrangements are known, and entering the next one (T1)."""
from __future__ import annotations

import getpass
import sys

import click

from callcenter.runtime import domain_and_sessions as _domain_and_sessions


@click.group("calendar")
def calendar_group() -> None:
    """Working-day calendar: official, entered and provisional years (T1)."""




@calendar_group.command("status")
def status() -> None:
    """List the years around today: official (chinesecalendar), override (entered here) or
    provisional (statutory holidays only); warn when next year's arrangement is due. Exit 0."""
    from ticketing.calendar import calendar_status

    domain, _ = _domain_and_sessions()
    today = domain.clock().astimezone(domain.calendar.tz).date()
    report = calendar_status(domain.calendar, today, domain.policy.calendar_warning_from)
    for year, source in report.years:
        click.echo(f"{year}  {source.value}")
    if report.warning:
        click.echo(f"warning: {report.warning}")


def _echo_moves(moves, tz) -> None:
    for m in moves:
        old, new = (f"{t.astimezone(tz):%Y-%m-%d %H:%M}" for t in (m.old, m.new))
        where = f"{m.case_number}" + (f" work order {m.work_order_id}" if m.work_order_id else "")
        still = " (still provisional)" if m.still_provisional else ""
        click.echo(f"  {where} {m.column}: {old} -> {new}{still}")
    click.echo(f"{len(moves)} provisional deadlines counted again")


@calendar_group.command("set")
@click.argument("year", type=int)
@click.option("--holiday", "holidays", multiple=True, metavar="DATE|FIRST..LAST",
              help="A day off of the year's arrangement, or a range (repeat).")
@click.option("--workday", "workdays", multiple=True, metavar="DATE",
              help="A make-up working Saturday or Sunday (调休) (repeat).")
def set_year(year: int, holidays: tuple[str, ...], workdays: tuple[str, ...]) -> None:
    """Enter YEAR's holiday arrangement (the State Council's notice) into the override file, then
    count every provisional deadline again (each change audited; units told of earlier ones)."""
    from ticketing import audit
    from ticketing.calendar import CalendarError
    from ticketing.deadline_correction import correct_provisional_deadlines
    from ticketing.store import session_scope

    domain, factory = _domain_and_sessions()
    try:
        domain.set_arrangement(year, list(holidays), list(workdays))
    except CalendarError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    click.echo(f"{year}: arrangement entered in {domain.overrides_file}")
    with session_scope(factory) as session:
        actor = audit.Actor(user_id=None, name=f"cli:{getpass.getuser()}", role="admin")
        audit.record(session, actor, "calendar_set", at=domain.clock(),
                     data={"year": year, **domain.calendar.overrides.years[year].as_mapping()})
        moves = correct_provisional_deadlines(domain.workflow(session), actor)
    _echo_moves(moves, domain.calendar.tz)


@calendar_group.command("correct")
def correct() -> None:
    """Count every provisional deadline again now (e.g. after installing a chinesecalendar that
    knows a new year; the running hotline also does this once after each start)."""
    from ticketing import audit
    from ticketing.deadline_correction import correct_provisional_deadlines
    from ticketing.store import session_scope

    domain, factory = _domain_and_sessions()
    with session_scope(factory) as session:
        moves = correct_provisional_deadlines(domain.workflow(session), audit.SYSTEM)
    _echo_moves(moves, domain.calendar.tz)
