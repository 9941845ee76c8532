"""The unit assessment (考核, R5.2, R6.1; contracts.md item 2): each member unit's score, band and
rank for a month or any period, the figures behind every score and the cases behind each figure.
The back office and supervision see every unit with its rank; a unit's staff their own unit's
figures and band only; the front desk nothing (ticketing.access.figures_unit_code)."""
from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query

from callcenter.api.deps import ActorDep, DomainDep, SessionDep
from callcenter.api.schemas import Out
from ticketing.access import figures_unit_code
from ticketing.assessment_report import (
    UnitAssessment,
    assess,
    assessed_units,
    figure_cases,
)
from ticketing.audit import Actor
from ticketing.domain import Domain
from ticketing.errors import Forbidden, InvalidInput, NotFound
from ticketing.figures import Period, Thresholds
from ticketing.figures.base import asked_period

router = APIRouter(tags=["assessment"])

MonthQuery = Annotated[str | None, Query(pattern=r"^\d{4}-(0[1-9]|1[0-2])$", description="YYYY-MM (local time)")]
DayQuery = Annotated[date | None, Query(description="YYYY-MM-DD (local time); until is exclusive")]
# beyond these the local-time arithmetic would leave what the store's times can hold


class PeriodOut(Out):
    since: datetime
    until: datetime


class BandOut(Out):
    band: str
    label: str
    min_score: float


class FigureOut(Out):
    label: str
    numerator: int
    denominator: int
    rate: float | None
    weight: float
    better: Literal["higher", "lower"]
    points: float | None


class InquiriesOut(Out):
    open: int                    # opened in the period and not decided yet
    decided: int                 # decided in the period
    opened: int
    late_explanations: int
    by_decision: dict[str, int]
    deduction: float             # points taken off the score for the decisions (config/assessment.yaml)


class UnitAssessmentOut(Out):
    code: str
    name: str
    score: float | None
    band: str | None
    band_label: str | None
    rank: int | None
    figures: dict[str, FigureOut]
    inquiries: InquiriesOut


class AssessmentOut(Out):
    period: PeriodOut
    bands: list[BandOut]
    units: list[UnitAssessmentOut]


class OneUnitOut(UnitAssessmentOut):
    period: PeriodOut


class FigureCaseOut(Out):
    number: str
    status: str
    work_order_id: int | None
    work_order_status: str | None
    notify_due_at: datetime | None
    notify_met: bool | None
    report_due_at: datetime | None
    report_met: bool | None
    satisfaction: str | None
    closed_at: datetime | None


class FigureCasesOut(Out):
    period: PeriodOut
    unit: str
    figure: str
    part: str
    cases: list[FigureCaseOut]


def period_of(domain: Domain, month: str | None, since: date | None, until: date | None) -> Period:
    """month=YYYY-MM, or since and until (local days, until exclusive); neither: this month so far
    (ticketing.figures.base.asked_period, as the statistics read it)."""
    return asked_period(domain.clock(), domain.policy.timezone, month=month, since=since, until=until)


def _period_out(period: Period) -> PeriodOut:
    return PeriodOut(since=period.since, until=period.until)


def _unit_out(u: UnitAssessment) -> UnitAssessmentOut:
    return UnitAssessmentOut(
        code=u.code, name=u.name, score=u.score, band=u.band.band if u.band else None,
        band_label=u.band.label if u.band else None, rank=u.rank,
        figures={n: FigureOut(label=f.label, numerator=f.numerator, denominator=f.denominator, rate=f.rate,
                              weight=f.weight, better=f.better, points=f.points) for n, f in u.figures.items()},
        inquiries=InquiriesOut(open=u.inquiries.open, decided=u.inquiries.decided, opened=u.inquiries.opened,
                               late_explanations=u.inquiries.late_explanations,
                               by_decision=u.inquiries.by_decision, deduction=u.deduction))


def _own_code(session, actor: Actor) -> str | None:
    """The unit code whose assessment the actor may read alone; None: every unit's."""
    return figures_unit_code(session, actor, None)


def _readable_unit(session, actor: Actor, unit_code: str) -> bool:
    """May the actor read this unit's assessment? True: with its rank (the center), False: its own."""
    own = _own_code(session, actor)
    if own is not None and own != unit_code:
        raise Forbidden("R5.3", "a unit sees its own assessment only")
    if not assessed_units(session, unit_code):
        raise NotFound("assessed member unit", unit_code)  # unknown, not joined, or the commission (R7.3c)
    return own is None


@router.get("/assessment", response_model=AssessmentOut,
            summary="R5.2/R6.1: every unit's score, band and rank (a unit: its own, without rank)")
def assessment(actor: ActorDep, session: SessionDep, domain: DomainDep, month: MonthQuery = None,
               since: DayQuery = None, until: DayQuery = None) -> AssessmentOut:
    own = _own_code(session, actor)
    period = period_of(domain, month, since, until)
    if own is not None and not assessed_units(session, own):
        result_units: list[UnitAssessment] = []  # the commission: its work is not assessed (R7.3c)
    else:
        result_units = assess(session, domain.assessment, period, unit=own, ranked=own is None,
                              thresholds=Thresholds.for_policy(domain.policy)).units
    return AssessmentOut(period=_period_out(period),
                         bands=[BandOut(band=b.band, label=b.label, min_score=b.min_score) for b in domain.assessment.bands],
                         units=[_unit_out(u) for u in result_units])


@router.get("/assessment/{unit_code}", response_model=OneUnitOut,
            summary="R5.2/R6.1: one unit's score, band, figures and inquiries (rank for the center only)")
def unit_assessment(unit_code: str, actor: ActorDep, session: SessionDep, domain: DomainDep,
                    month: MonthQuery = None, since: DayQuery = None, until: DayQuery = None) -> OneUnitOut:
    ranked = _readable_unit(session, actor, unit_code)
    period = period_of(domain, month, since, until)
    (u,) = assess(session, domain.assessment, period, unit=unit_code, ranked=ranked,
                  thresholds=Thresholds.for_policy(domain.policy)).units
    return OneUnitOut(period=_period_out(period), **_unit_out(u).model_dump())


@router.get("/assessment/{unit_code}/cases", response_model=FigureCasesOut,
            summary="The cases behind one of a unit's figures: its numerator, denominator or misses (R7.3c never)")
def assessment_cases(unit_code: str, figure: str, actor: ActorDep, session: SessionDep, domain: DomainDep,
                     part: Literal["numerator", "denominator", "missed"] = "denominator",
                     month: MonthQuery = None, since: DayQuery = None, until: DayQuery = None,
                     limit: Annotated[int, Query(ge=1, le=5000)] = 1000) -> FigureCasesOut:
    _readable_unit(session, actor, unit_code)
    if figure not in domain.assessment.figures:
        raise InvalidInput("figure", f"unknown figure {figure!r}; the assessment's: "
                                     f"{', '.join(domain.assessment.figures)}")
    period = period_of(domain, month, since, until)
    rows = figure_cases(session, period, unit_code, figure, part, limit=limit,
                        thresholds=Thresholds.for_policy(domain.policy))
    return FigureCasesOut(period=_period_out(period), unit=unit_code, figure=figure, part=part,
                          cases=[FigureCaseOut(**vars(r)) for r in rows])
