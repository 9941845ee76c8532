"""The unit assessment read from the store: each assessed unit's figures (ticketing.figures, the
one definition of each), its inquiries (R6.1, ticketing.workflow.inquiries.inquiry_counts), its
score and band (ticketing.assessment), its rank among the others, and the cases behind a figure.

Assessed: the member units that joined the platform, except the discipline commission, whose work
is R7.3c cases only (R7.3c cases never count in a unit's assessment: the figures leave them out of
every unit's scope, and `inquiry_counts` the inquiries on them).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ticketing.assessment import AssessmentConfig, Band, FigureScore, rank, score_unit
from ticketing.enums import UnitType
from ticketing.figures import (
    Period,
    Thresholds,
)
from ticketing.figures.units import figure_readers, unit_rates
from ticketing.models import Case, MemberUnit, WorkOrder
from ticketing.workflow.inquiries import UnitInquiries, inquiry_counts

__all__ = ["Assessment", "UnitAssessment", "assess", "assessed_units", "figure_cases"]

PARTS = ("numerator", "denominator", "missed")


@dataclass(frozen=True)
class UnitAssessment:
    code: str
    name: str
    score: float | None
    band: Band | None
    rank: int | None                  # None: not ranked (no score, or read by the unit itself)
    figures: dict[str, FigureScore]
    inquiries: UnitInquiries          # opened / still open / decided in the period (R6.1)
    deduction: float                  # points taken off for the decisions among them


@dataclass(frozen=True)
class Assessment:
    period: Period
    bands: tuple[Band, ...]
    units: list[UnitAssessment]


def assessed_units(session: Session, code: str | None = None) -> list[MemberUnit]:
    """The units assessed (see the module's docstring), by code; or the one named, if assessed."""
    stmt = (select(MemberUnit).where(MemberUnit.joined.is_(True), MemberUnit.type != UnitType.DISCIPLINE)
            .order_by(MemberUnit.code))
    if code is not None:
        stmt = stmt.where(MemberUnit.code == code)
    return list(session.execute(stmt).scalars())


def assess(session: Session, config: AssessmentConfig, period: Period, *, unit: str | None = None,
           ranked: bool = True, thresholds: Thresholds | None = None) -> Assessment:
    """Every assessed unit (or the one named) with its figures, score, band and inquiries; with
    its rank among all assessed units when `ranked` (a unit reading its own gets no rank, so the
    others' scores are not even read for it)."""
    everyone = assessed_units(session)
    shown = [u for u in everyone if unit is None or u.code == unit]
    scored = everyone if ranked else shown
    rates = unit_rates(session, config.figures, period, [u.code for u in scored], thresholds)
    inquiries = inquiry_counts(session, period.since, period.until)
    scores = {u.code: score_unit(config, rates[u.code], inquiries.get(u.id, UnitInquiries()).by_decision)
              for u in scored}
    ranks = rank({code: s.score for code, s in scores.items()}) if ranked else {}
    units = [UnitAssessment(code=u.code, name=u.name, score=scores[u.code].score, band=scores[u.code].band,
                            rank=ranks.get(u.code), figures=scores[u.code].figures,
                            inquiries=inquiries.get(u.id, UnitInquiries()), deduction=scores[u.code].deduction)
             for u in shown]
    return Assessment(period, config.bands, units)


@dataclass(frozen=True)
class FigureCase:
    """One row behind a figure: the case, and the unit's work order for a work-order figure.
    No content (title, text, citizen): the case's own page shows that to whoever may read it."""

    number: str
    status: str
    work_order_id: int | None = None
    work_order_status: str | None = None
    notify_due_at: datetime | None = None
    notify_met: bool | None = None
    report_due_at: datetime | None = None
    report_met: bool | None = None
    satisfaction: str | None = None
    closed_at: datetime | None = None


def figure_cases(session: Session, period: Period, unit: str, figure: str, part: str = "denominator", *,
                 limit: int | None = None, thresholds: Thresholds | None = None) -> list[FigureCase]:
    """The cases behind one of a unit's figures (`Figures.rows`: the same conditions that counted
    them), in the order of the rows' ids; R7.3c cases never (the unit scope leaves them out, and
    they are filtered here again so no change there can list one)."""
    reader = figure_readers(session, thresholds or Thresholds())[figure]
    ids = reader.rows(figure, period, unit, part=part, limit=limit)
    if not ids:
        return []
    key = reader.definitions[figure].key
    if key.table is WorkOrder.__table__:
        rows = session.execute(select(WorkOrder, Case).join(Case, Case.id == WorkOrder.case_id)
                               .where(WorkOrder.id.in_(ids), Case.confidential.is_(False))).all()
        found = {wo.id: FigureCase(
            number=c.number, status=c.status.value, work_order_id=wo.id, work_order_status=wo.status.value,
            notify_due_at=wo.notify_due_at, notify_met=wo.notify_met, report_due_at=wo.report_due_at,
            report_met=wo.report_met, satisfaction=c.satisfaction.value if c.satisfaction else None,
            closed_at=c.closed_at) for wo, c in rows}
    else:
        cases = session.execute(select(Case).where(Case.id.in_(ids), Case.confidential.is_(False))).scalars()
        found = {c.id: FigureCase(number=c.number, status=c.status.value,
                                  satisfaction=c.satisfaction.value if c.satisfaction else None,
                                  closed_at=c.closed_at) for c in cases}
    return [found[i] for i in ids if i in found]
