"""`callcenter stats`: the figures at the console (issue 12 item 8). `stats report` prints the
monthly report (ticketing.figures.report) as aligned text tables, or writes it as XLSX; either way
an audited export (A1), as from the API."""
from __future__ import annotations

import getpass
import re
import sys
from pathlib import Path

import click

from callcenter.settings import get_settings


@click.group("stats")
def stats_group() -> None:
    """Statistics: the monthly report."""


def _domain_and_sessions():
    from callcenter.audit_vault import install as install_audit_vault
    from ticketing.domain import Domain
    from ticketing.store import make_engine, make_session_factory

    settings = get_settings()
    install_audit_vault(settings.state_dir)
    return Domain.load(settings.config_dir), make_session_factory(make_engine(settings.effective_database_url))


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
