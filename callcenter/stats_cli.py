"""`callcenter stats`: the figures at the console (issue 12 items 3 and 8).

`stats report` prints the monthly report (ticketing.figures.report) as aligned text tables, or
writes it as XLSX; either way an audited export (A1), as from the API.

`stats rebuild` recomputes the operator queue's entries (ticketing.queue_entries, what the queue
figures read) from the raw call log, day by day, each day in its own transaction: an interrupted
rebuild leaves every day either as it was or rebuilt, never half of one, and running it again
finishes the job. Then it refreshes the planner's statistics of the figures' tables and checks that
every call queued in the range has its entry. It also recomputes the daily rollups of the case and
work-order rates (ticketing.figures.rollup) and of the queue figures (ticketing.figures.queue_rollup)
for every day of the range, one day per transaction, and clears the stale marks it has made good. Audited (A1): started, and finished with the counts.
"""
from __future__ import annotations

import getpass
import re
import sys
from datetime import date, datetime, time, timedelta
from pathlib import Path

import click

from callcenter.runtime import domain_and_sessions as _domain_and_sessions

# the tables the figures read by period (ANALYZE after a rebuild)
FIGURE_TABLES = ("queue_entries", "queue_days", "call_events", "calls", "cases", "work_orders", "callback_attempts",
                 "unit_notifications", "extension_requests")


@click.group("stats")
def stats_group() -> None:
    """Statistics: the monthly report, and the figures' derived rows."""


@stats_group.command("report")
@click.option("--month", required=True, metavar="YYYY-MM", help="The calendar month (local time); this month: so far.")
@click.option("--unit", "unit_code", metavar="CODE", help="A member unit: its own figures only.")
@click.option("--xlsx", "xlsx_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the report as XLSX (one sheet per view) to FILE instead of printing it.")
def report(month: str, unit_code: str | None, xlsx_file: Path | None) -> None:
    """The monthly report: calls, calls per hour, operators, cases, case breakdown, unit work,
    callbacks (a unit: its cases, work and callbacks). R7.3c cases only as the totals' count."""
    from sqlalchemy import select

    from callcenter import exports
    from ticketing.audit import Actor
    from ticketing.errors import InvalidInput
    from ticketing.figures import Thresholds
    from ticketing.figures.report import monthly_report
    from ticketing.models import MemberUnit
    from ticketing.store import session_scope

    domain, factory = _domain_and_sessions()
    now = domain.clock()
    try:
        if not re.fullmatch(r"\d{4}-\d{2}", month):
            raise InvalidInput("month", f"'{month}': give YYYY-MM")
        period = exports.period_of(month, now, domain.policy.timezone)  # the month so far, if not over
    except InvalidInput as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(2)
    tz = domain.calendar.tz
    with session_scope(factory) as session:
        if unit_code and session.execute(select(MemberUnit.id).where(MemberUnit.code == unit_code)).first() is None:
            click.echo(f"error: no member unit {unit_code!r}", err=True)
            sys.exit(2)
        result = monthly_report(session, period, unit_code, Thresholds.for_policy(domain.policy),
                                names={c.code: c.name for c in domain.city.categories}, assessment=domain.assessment)
        actor = Actor(user_id=None, name=f"cli:{getpass.getuser()}", role="admin")
        exports.record_export(session, actor, "monthly_report", fmt="xlsx" if xlsx_file else "text",
                              filters={"month": month, "unit": unit_code}, rows=sum(len(v.rows) for v in result.views),
                              at=now)
    if xlsx_file is not None:
        xlsx_file.write_bytes(exports.report_xlsx(result, tz))
        click.echo(f"{xlsx_file}: {len(result.views)} sheets ({', '.join(v.name for v in result.views)})")
    else:
        click.echo(exports.report_text(result, tz), nl=False)


def _day(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(f"{text!r} is no date (YYYY-MM-DD)") from None


@stats_group.command("rebuild")
@click.option("--since", metavar="YYYY-MM-DD", help="First day (local); default: the first call queued.")
@click.option("--until", metavar="YYYY-MM-DD", help="Day after the last; default: tomorrow.")
def rebuild(since: str | None, until: str | None) -> None:
    """Recompute the queue figures' rows from the raw call log, the daily rollup of the case
    and work-order rates from the raw cases and the queue's daily rollup from the queue rows
    (after a figure's definition changed), one day per transaction, with a progress bar; safe to
    interrupt and run again."""
    from sqlalchemy import func, select

    from ticketing import audit
    from ticketing.figures import CallFigures, Thresholds
    from ticketing.figures.queue_rollup import (
        clear_queue_marks,
        refresh_queue_days,
        refresh_queue_stale,
    )
    from ticketing.figures.rollup import (
        clear_marks,
        refresh_days,
        refresh_stale,
        rollup_readers,
    )
    from ticketing.models import CallEvent, Case
    from ticketing.queue_entries import QueueEntry, rebuild_day
    from ticketing.store import session_scope

    domain, factory = _domain_and_sessions()
    tz = domain.calendar.tz
    first, last = _day(since), _day(until)
    if first is None:
        with factory() as s:
            earliest = [s.execute(select(func.min(CallEvent.at)).where(CallEvent.kind == "queued")).scalar(),
                        s.execute(select(func.min(Case.accepted_at))).scalar()]
        earliest = [e for e in earliest if e is not None]
        first = min(earliest).astimezone(tz).date() if earliest else domain.clock().astimezone(tz).date()
    if last is None:
        last = domain.clock().astimezone(tz).date() + timedelta(days=1)
    if last <= first:
        click.echo("error: --until must be after --since", err=True)
        sys.exit(2)
    days = [first + timedelta(days=i) for i in range((last - first).days)]
    actor = audit.Actor(user_id=None, name=f"cli:{getpass.getuser()}", role="admin")
    span = {"since": first.isoformat(), "until": last.isoformat(), "days": len(days)}
    with session_scope(factory) as s:
        audit.record(s, actor, "stats_rebuild_started", at=domain.clock(), data=span)

    def start(day: date) -> datetime:
        return datetime.combine(day, time(), tz)

    calls = 0
    with click.progressbar(days, label="queue entries", item_show_func=lambda d: d and d.isoformat()) as bar:
        for day in bar:
            with session_scope(factory) as s:  # one day, all or nothing
                calls += rebuild_day(s, start(day), start(day + timedelta(days=1)))
    thresholds = Thresholds.for_policy(domain.policy)
    with session_scope(factory) as s:  # every day below is computed after this: its marks are done
        clear_marks(s, thresholds.tz, first, last)
        clear_queue_marks(s, thresholds.tz, first, last)
    with click.progressbar(days, label="rate rollup", item_show_func=lambda d: d and d.isoformat()) as bar:
        for day in bar:
            with session_scope(factory) as s:  # one day, all or nothing
                refresh_days(rollup_readers(s, thresholds), [day])
    with click.progressbar(days, label="queue rollup", item_show_func=lambda d: d and d.isoformat()) as bar:
        for day in bar:
            with session_scope(factory) as s:  # one day, all or nothing
                refresh_queue_days(CallFigures(s, thresholds, use_rollup=False), [day])
    with session_scope(factory) as s:  # what changed while the days were computed
        refresh_stale(rollup_readers(s, thresholds))
        refresh_queue_stale(CallFigures(s, thresholds, use_rollup=False))
    with session_scope(factory) as s:
        analyze(s)
        missing = s.execute(select(func.count(func.distinct(CallEvent.call_id))).where(
            CallEvent.kind == "queued", CallEvent.at >= start(first), CallEvent.at < start(last),
            ~select(QueueEntry.call_id).where(QueueEntry.call_id == CallEvent.call_id).exists())).scalar()
        audit.record(s, actor, "stats_rebuild_finished", at=domain.clock(),
                     data={**span, "queued_calls": calls, "missing": missing})
    click.echo(f"{len(days)} days rebuilt ({first} .. {last - timedelta(days=1)}), {calls} queued calls; "
               f"statistics refreshed")
    if missing:
        click.echo(f"error: {missing} queued calls have no queue entry", err=True)
        sys.exit(1)


def analyze(session) -> None:
    """The planner's statistics of the figures' tables (both stores plan by them)."""
    from sqlalchemy import text
    for table in FIGURE_TABLES:
        session.execute(text(f"ANALYZE {table}"))
