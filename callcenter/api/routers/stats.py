"""Statistics (issue 12 item 6; R5.2): the figures of `ticketing.figures` as JSON for the /app/stats
page, each with a drill-down to the cases or calls behind it. Nothing is counted here: every
number and every list comes from the figure's own definition (its count and its `rows`).

    GET /api/v1/stats/calls            calls per hour and per day, 接通率, 15 s, abandoned, wait/talk, per operator
    GET /api/v1/stats/calls/rows       the calls behind a queue figure
    GET /api/v1/stats/cases            intake by kind, category, channel, unit; closing; the case and work rates
    GET /api/v1/stats/cases/rows       the cases behind an intake count or a rate (numerator, denominator, missed)
    GET /api/v1/stats/units            each unit's 响应率, 按时办结率, 满意率 and work counts
    GET /api/v1/stats/overdue          work overdue now, by unit
    GET /api/v1/stats/overdue/rows     the work orders overdue now

Period: since/until (local dates, until exclusive) or month=YYYY-MM; neither: this month so far.
A period that has not ended ends now (what is not due yet is not missed). unit=CODE: one member
unit's figures. Who reads what is ticketing.access.figures_unit: the back office, supervision and
admin everything; a unit's staff their own unit only (another unit: 403; no totals, no calls); the
front desk nothing. Drill-down rows carry numbers, states, categories and units, never a case's
content (R7.3c)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from callcenter.api.deps import ActorDep, DomainDep, SessionDep
from ticketing.access import FIGURE_READERS, figures_unit_code, require_center_figures
from ticketing.audit import Actor
from ticketing.domain import Domain
from ticketing.enums import CaseKind, Channel, RejectReason
from ticketing.errors import InvalidInput
from ticketing.figures import (
    QUEUE_PARTS,
    CallFigures,
    CaseFigures,
    OverdueFigures,
    Period,
    QueueFigures,
    Rate,
    Thresholds,
    WorkOrderFigures,
    case_definitions,
    work_order_definitions,
)
from ticketing.figures.base import asked_period
from ticketing.figures.calls import TimeStats
from ticketing.figures.units import unit_rates
from ticketing.models import Case, MemberUnit, User, WorkOrder

router = APIRouter(prefix="/stats", tags=["stats"])

CASE_RATES = tuple(case_definitions(Thresholds()))
WORK_RATES = tuple(work_order_definitions())
INTAKE_PARTS = ("received", "accepted", "rejected", "closed")
Figure = Literal[INTAKE_PARTS + CASE_RATES + WORK_RATES]  # type: ignore[valid-type]
UnitCode = Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,40}$")]
Limit = Annotated[int, Query(ge=1, le=1000)]


# ---- answers ----------------------------------------------------------------------------------

class RateOut(BaseModel):
    numerator: int
    denominator: int
    rate: float | None


class TimeOut(BaseModel):
    count: int
    average: float | None
    p90: float | None


class PeriodOut(BaseModel):
    since: datetime
    until: datetime


class QueueOut(BaseModel):
    key: str | None = None  # the hour (0-23), day (YYYY-MM-DD) or operator of a breakdown
    name: str | None = None
    offered: int
    answered: int
    answer_rate: RateOut
    answered_within: RateOut
    abandoned: int
    abandon_rate: RateOut
    abandoned_short: RateOut
    wait: TimeOut
    abandoned_wait: TimeOut
    talk: TimeOut


class MenuOut(BaseModel):
    inbound: int
    self_served: RateOut
    after_hours_messages: int


class CallsOut(BaseModel):
    period: PeriodOut
    answer_within_s: float
    short_abandon_s: float
    queue: QueueOut
    menu: MenuOut
    by_hour: list[QueueOut]
    by_day: list[QueueOut]
    by_operator: list[QueueOut]


class CallRowOut(BaseModel):
    call_id: int
    queued_at: datetime
    answered: bool
    abandoned: bool
    wait_s: float | None
    talk_s: float | None
    operator: str | None
    operator_name: str | None


class CallRowsOut(BaseModel):
    part: str
    calls: list[CallRowOut]
    more: bool


class IntakeOut(BaseModel):
    received: int
    accepted: int
    rejected: int
    rejected_by_reason: dict[str, int]
    confidential: int
    by_kind: dict[str, int]
    by_category: dict[str, int]
    by_channel: dict[str, int]
    by_unit: dict[str, int]


class ClosingOut(BaseModel):
    closed: int
    closed_provisionally: int
    ratings: dict[str, int]


class WorkOut(BaseModel):
    dispatched: int
    urges: int
    extensions_approved: int
    extensions_denied: int


class CasesOut(BaseModel):
    period: PeriodOut
    unit: str | None
    intake: IntakeOut
    closing: ClosingOut
    work: WorkOut
    rates: dict[str, RateOut]  # every case and work-order rate by its name (ticketing.figures)


class CaseRowOut(BaseModel):
    number: str
    status: str
    category_code: str | None
    units: list[str]
    confidential: bool
    work_order_id: int | None = None


class CaseRowsOut(BaseModel):
    figure: str
    part: str
    cases: list[CaseRowOut]
    more: bool


class UnitFiguresOut(BaseModel):
    code: str
    name: str
    dispatched: int
    response: RateOut
    on_time: RateOut
    satisfaction: RateOut
    returned: RateOut
    urged: RateOut


class UnitsOut(BaseModel):
    period: PeriodOut
    units: list[UnitFiguresOut]


class OverdueUnitOut(BaseModel):
    code: str
    name: str
    report: int
    notify: int


class OverdueOut(BaseModel):
    at: datetime
    total: OverdueUnitOut | None  # the hotline's; not for a unit's staff
    units: list[OverdueUnitOut]


# ---- period, unit, access -----------------------------------------------------------------------

def stats_period(domain: DomainDep, since: date | None = None, until: date | None = None,
                 month: Annotated[str | None, Query(pattern=r"^20[0-9]{2}-(0[1-9]|1[0-2])$")] = None) -> Period:
    """[since, until) in local days, or a calendar month; this month so far when neither."""
    return asked_period(domain.clock(), domain.policy.timezone, month=month, since=since, until=until)


PeriodDep = Annotated[Period, Depends(stats_period)]


def _units(session: Session) -> dict[str, MemberUnit]:
    return {u.code: u for u in session.execute(select(MemberUnit)).scalars()}


def _scope(actor: Actor, session: Session, unit: str | None) -> str | None:
    """The unit code whose figures the actor reads (None: the totals); 403 / 404 as they apply."""
    return figures_unit_code(session, actor, unit)


def _thresholds(domain: Domain) -> Thresholds:
    return Thresholds.for_policy(domain.policy)


def _rate(r: Rate) -> RateOut:
    return RateOut(numerator=r.numerator, denominator=r.denominator, rate=r.rate)


def _time(t: TimeStats) -> TimeOut:
    return TimeOut(count=t.count, average=t.average, p90=t.p90)


def _period(p: Period) -> PeriodOut:
    return PeriodOut(since=p.since, until=p.until)


# ---- calls ----------------------------------------------------------------------------------------

def _queue(q: QueueFigures, key=None, name=None) -> QueueOut:
    return QueueOut(key=None if key is None else str(key), name=name, offered=q.offered, answered=q.answered,
                    answer_rate=_rate(q.answer_rate), answered_within=_rate(q.answered_within),
                    abandoned=q.abandoned, abandon_rate=_rate(q.abandon_rate),
                    abandoned_short=_rate(q.abandoned_short), wait=_time(q.wait),
                    abandoned_wait=_time(q.abandoned_wait), talk=_time(q.talk))


def _operator_names(session: Session, keys) -> dict[str, str]:
    """Operator keys of the call figures (a user id, or ext:NNN) -> a name people know."""
    ids = [int(k) for k in keys if k and k.isdigit()]
    names = dict(session.execute(select(User.id, User.username).where(User.id.in_(ids))).all()) if ids else {}
    return {k: (names.get(int(k), k) if k.isdigit() else f"分机{k[4:]}") for k in keys if k}


@router.get("/calls", response_model=CallsOut,
            summary="GB/T 33358: offered, 接通率, 15 s, abandoned, wait/talk; per hour, day and operator")
def call_stats(actor: ActorDep, session: SessionDep, domain: DomainDep, period: PeriodDep) -> CallsOut:
    require_center_figures(actor)
    f = CallFigures(session, _thresholds(domain))  # counted once (from the daily rollup), shown four ways
    operators = f.by_operator(period)
    names = _operator_names(session, operators)
    m = f.menu(period)
    return CallsOut(period=_period(period), answer_within_s=f.thresholds.answer_within_s,
                    short_abandon_s=f.thresholds.short_abandon_s, queue=_queue(f.queue(period)),
                    menu=MenuOut(inbound=m.inbound, self_served=_rate(m.self_served),
                                 after_hours_messages=m.after_hours_messages),
                    by_hour=[_queue(q, hour) for hour, q in f.by_hour(period).items()],
                    by_day=[_queue(q, day) for day, q in f.by_day(period).items()],
                    by_operator=[_queue(q, op, names.get(op)) for op, q in operators.items()])


@router.get("/calls/rows", response_model=CallRowsOut, summary="The calls behind a queue figure (drill-down)")
def call_rows(actor: ActorDep, session: SessionDep, domain: DomainDep, period: PeriodDep,
              part: Literal[QUEUE_PARTS] = "offered",  # type: ignore[valid-type]
              hour: Annotated[int | None, Query(ge=0, le=23)] = None, day: date | None = None,
              operator: Annotated[str | None, Query(pattern=r"^([0-9]{1,10}|ext:[0-9]{1,12})$")] = None,
              limit: Limit = 200) -> CallRowsOut:
    require_center_figures(actor)
    rows = CallFigures(session, _thresholds(domain)).queue_rows(period, part, hour=hour, day=day, operator=operator)
    names = _operator_names(session, {r.operator for r in rows[:limit]})
    return CallRowsOut(part=part, more=len(rows) > limit, calls=[
        CallRowOut(call_id=r.call_id, queued_at=r.queued_at, answered=r.answered, abandoned=r.abandoned,
                   wait_s=r.wait_s, talk_s=r.talk_s, operator=r.operator, operator_name=names.get(r.operator))
        for r in rows[:limit]])


# ---- cases ----------------------------------------------------------------------------------------

@router.get("/cases", response_model=CasesOut,
            summary="Cases by kind, category, channel, unit (R7.3c in totals only); closing; every case and work rate")
def case_stats(actor: ActorDep, session: SessionDep, domain: DomainDep, period: PeriodDep,
               unit: UnitCode = None) -> CasesOut:
    code = _scope(actor, session, unit)
    cases = CaseFigures(session, _thresholds(domain))
    work = WorkOrderFigures(session, _thresholds(domain))
    i, c, w = cases.intake(period, code), cases.closing(period, code), work.summary(period, code)
    rates = {name: cases.rate(name, period, code) for name in CASE_RATES}
    rates.update({name: work.rate(name, period, code) for name in WORK_RATES})
    return CasesOut(
        period=_period(period), unit=code,
        intake=IntakeOut(received=i.received, accepted=i.accepted, rejected=i.rejected,
                         rejected_by_reason=i.rejected_by_reason, confidential=i.confidential, by_kind=i.by_kind,
                         by_category=i.by_category, by_channel=i.by_channel, by_unit=i.by_unit),
        closing=ClosingOut(closed=c.closed, closed_provisionally=c.closed_provisionally, ratings=c.ratings),
        work=WorkOut(dispatched=w.dispatched, urges=w.urges, extensions_approved=w.extensions_approved,
                     extensions_denied=w.extensions_denied),
        rates={name: _rate(r) for name, r in rates.items()})


def _case_rows(session: Session, actor: Actor, ids: list[int], *, work_orders: bool) -> list[CaseRowOut]:
    """Drill-down rows: number, state, category and units, never content (R7.3c); a unit's staff
    see only their own unit among a case's units (R5.3). `ids`: case ids, or work order ids."""
    if work_orders:
        orders = {wo.id: wo for wo in session.execute(
            select(WorkOrder).where(WorkOrder.id.in_(ids)).options(selectinload(WorkOrder.case),
                                                                   selectinload(WorkOrder.unit))).scalars()}
        pairs = [(orders[i].case, orders[i]) for i in ids if i in orders]
    else:
        found = {c.id: c for c in session.execute(
            select(Case).where(Case.id.in_(ids))
            .options(selectinload(Case.work_orders).selectinload(WorkOrder.unit))).scalars()}
        pairs = [(found[i], None) for i in ids if i in found]
    own = None if actor.role in FIGURE_READERS else session.get(MemberUnit, actor.unit_id).code
    out = []
    for case, wo in pairs:
        units = [wo.unit.code] if wo is not None else list(dict.fromkeys(o.unit.code for o in case.work_orders))
        if own is not None:
            units = [u for u in units if u == own]
        out.append(CaseRowOut(number=case.number, status=str(case.status.value), category_code=case.category_code,
                              units=units, confidential=case.confidential,
                              work_order_id=wo.id if wo is not None else None))
    return out


@router.get("/cases/rows", response_model=CaseRowsOut,
            summary="The cases behind an intake count or a rate's numerator, denominator or misses (drill-down)")
def case_rows(actor: ActorDep, session: SessionDep, domain: DomainDep, period: PeriodDep,
              figure: Figure = "accepted",
              part: Literal["numerator", "denominator", "missed"] = "denominator",
              unit: UnitCode = None, kind: CaseKind | None = None,
              category: Annotated[str | None, Query(pattern=r"^[a-z0-9_]{1,60}$")] = None,
              channel: Channel | None = None, to_unit: UnitCode = None, reason: RejectReason | None = None,
              limit: Limit = 200) -> CaseRowsOut:
    code = _scope(actor, session, unit)
    breakdown = {"kind": kind, "category": category, "channel": channel, "to_unit": to_unit}
    if figure in INTAKE_PARTS:
        if any(v is not None for v in breakdown.values()) and figure != "accepted":
            raise InvalidInput("figure", "a breakdown (kind, category, channel, to_unit) lists accepted cases")
        if reason is not None and figure != "rejected":
            raise InvalidInput("reason", "a reason narrows the rejected cases only")
        ids = CaseFigures(session, _thresholds(domain)).case_rows(
            period, code, part=figure, reason=reason, limit=limit + 1,
            **{k: (v.value if hasattr(v, "value") else v) for k, v in breakdown.items()})
        shown_part = figure
    else:
        if any(v is not None for v in (*breakdown.values(), reason)):
            raise InvalidInput("figure", "a rate's rows are narrowed by unit only")
        reader = (CaseFigures if figure in CASE_RATES else WorkOrderFigures)(session, _thresholds(domain))
        ids = reader.rows(figure, period, code, part=part, limit=limit + 1)
        shown_part = part
    return CaseRowsOut(figure=figure, part=shown_part, more=len(ids) > limit,
                       cases=_case_rows(session, actor, ids[:limit], work_orders=figure in WORK_RATES))


# ---- units ----------------------------------------------------------------------------------------

def _unit_figures(session: Session, period: Period, thresholds: Thresholds) -> dict[str, dict]:
    """Each member unit's work figures and 满意率 (units with work in the period)."""
    work = WorkOrderFigures(session, thresholds).by_unit(period)
    satisfaction = unit_rates(session, ["satisfaction"], period, list(work), thresholds)
    return {code: {"work": w, "satisfaction": satisfaction[code]["satisfaction"]} for code, w in work.items()}


@router.get("/units", response_model=UnitsOut,
            summary="Each member unit's 响应率 (R8.2), 按时办结率 (R8.3), 满意率; a unit's staff: their own")
def unit_stats(actor: ActorDep, session: SessionDep, domain: DomainDep, period: PeriodDep,
               unit: UnitCode = None) -> UnitsOut:
    code = _scope(actor, session, unit)
    names = {c: u.name for c, u in _units(session).items()}
    if code is None:
        figures = _unit_figures(session, period, _thresholds(domain))
    else:
        figures = {code: {"work": WorkOrderFigures(session, _thresholds(domain)).summary(period, code),
                          "satisfaction": CaseFigures(session, _thresholds(domain)).rate("satisfaction", period, code)}}
    return UnitsOut(period=_period(period), units=[
        UnitFiguresOut(code=c, name=names.get(c, c), dispatched=f["work"].dispatched,
                       response=_rate(f["work"].response), on_time=_rate(f["work"].on_time),
                       satisfaction=_rate(f["satisfaction"]), returned=_rate(f["work"].returned),
                       urged=_rate(f["work"].urged))
        for c, f in figures.items()])


# ---- overdue now ----------------------------------------------------------------------------------

@router.get("/overdue", response_model=OverdueOut, summary="T3: work orders overdue now (R8.2, R8.3), by unit")
def overdue_stats(actor: ActorDep, session: SessionDep, domain: DomainDep, unit: UnitCode = None) -> OverdueOut:
    code = _scope(actor, session, unit)
    now = domain.clock()
    f = OverdueFigures(session, _thresholds(domain))
    names = {c: u.name for c, u in _units(session).items()}
    if code is None:
        total = f.count(now)
        return OverdueOut(at=now, total=OverdueUnitOut(code="", name="全部", report=total.report, notify=total.notify),
                          units=[OverdueUnitOut(code=c, name=names.get(c, c), report=n.report, notify=n.notify)
                                 for c, n in f.by_unit(now).items()])
    mine = f.count(now, code)
    return OverdueOut(at=now, total=None,
                      units=[OverdueUnitOut(code=code, name=names.get(code, code), report=mine.report, notify=mine.notify)])


@router.get("/overdue/rows", response_model=CaseRowsOut, summary="The work orders overdue now (drill-down)")
def overdue_rows(actor: ActorDep, session: SessionDep, domain: DomainDep, unit: UnitCode = None,
                 deadline: Literal["report", "notify"] = "report", limit: Limit = 200) -> CaseRowsOut:
    code = _scope(actor, session, unit)
    ids = OverdueFigures(session, _thresholds(domain)).overdue_rows(domain.clock(), code, deadline=deadline,
                                                                   limit=limit + 1)
    return CaseRowsOut(figure="overdue", part=deadline, more=len(ids) > limit,
                       cases=_case_rows(session, actor, ids[:limit], work_orders=True))
