"""The working-day calendar (T1): which years are known, and entering next year's arrangement."""
from __future__ import annotations

from datetime import date

from fastapi import APIRouter
from pydantic import Field

from callcenter.api.deps import ActorDep, DomainDep, SessionDep, commit, require_roles
from callcenter.api.schemas import Out, Strict
from ticketing import audit
from ticketing.calendar import CalendarError, calendar_status
from ticketing.deadline_correction import correct_provisional_deadlines
from ticketing.enums import Role
from ticketing.errors import InvalidInput

router = APIRouter(tags=["calendar"])


class YearOut(Out):
    year: int
    source: str = Field(description="official (chinesecalendar), override (entered here) or provisional "
                                    "(statutory holidays only: deadlines counted over it are 暂定)")


class CalendarOut(Out):
    years: list[YearOut]
    warning: str | None = Field(description="standing warning while an arrangement is due and not entered")


class ArrangementIn(Strict):
    holidays: list[str] = Field(description="days off: 'YYYY-MM-DD' or a range 'YYYY-MM-DD..YYYY-MM-DD'")
    workdays: list[str] = Field(default_factory=list, description="make-up working Saturdays and Sundays (调休)")


class MoveOut(Out):
    case_number: str
    work_order_id: int | None
    column: str
    old: str
    new: str
    still_provisional: bool


class ArrangementOut(CalendarOut):
    moved: list[MoveOut]


def _status(domain) -> CalendarOut:
    today: date = domain.clock().astimezone(domain.calendar.tz).date()
    report = calendar_status(domain.calendar, today, domain.policy.calendar_warning_from)
    return CalendarOut(years=[YearOut(year=y, source=s.value) for y, s in report.years], warning=report.warning)


@router.get("/calendar", response_model=CalendarOut, summary="T1: official, entered and provisional years")
def get_calendar(actor: ActorDep, domain: DomainDep) -> CalendarOut:
    require_roles(actor, Role.BACK_OFFICE, Role.ADMIN, Role.SUPERVISOR, rule="T1", what="see the calendar status")
    domain.reload_calendar()
    return _status(domain)


@router.put("/calendar/{year}", response_model=ArrangementOut,
            summary="T1: enter a year's holiday arrangement; provisional deadlines are counted again")
def set_arrangement(year: int, body: ArrangementIn, actor: ActorDep, session: SessionDep,
                    domain: DomainDep) -> ArrangementOut:
    require_roles(actor, Role.ADMIN, rule="T1", what="enter a holiday arrangement")
    try:
        domain.set_arrangement(year, body.holidays, body.workdays)
    except CalendarError as exc:  # the bad date named, without the server's paths
        where = domain.overrides_file
        raise InvalidInput("T1", str(exc).replace(str(where), where.name)) from None
    audit.record(session, actor, "calendar_set", at=domain.clock(),
                 data={"year": year, **domain.calendar.overrides.years[year].as_mapping()})
    moves = correct_provisional_deadlines(domain.workflow(session), actor)
    commit(session)
    status = _status(domain)
    return ArrangementOut(years=status.years, warning=status.warning, moved=[
        MoveOut(case_number=m.case_number, work_order_id=m.work_order_id, column=m.column,
                old=m.old.isoformat(), new=m.new.isoformat(), still_provisional=m.still_provisional)
        for m in moves])
