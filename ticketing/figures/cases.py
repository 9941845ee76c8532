"""Case figures (R3.1, R7.2-R7.5; GUIDANCE.md "Figure definitions in use"), read from `cases`,
`work_orders` and `callback_attempts` as the workflow stored them: its stored deadlines and
"met" flags are used as they are, never counted again.

Which period a case counts in: intake figures by `accepted_at`; the back office's dispatch by
`dispatch_due_at`; satisfaction and 一次办结率 by `closed_at` (a case merged into another is not
a closed case of its own: it counts as `merged` at intake); the callback reach by the attempts'
`finished_at`.

R7.3c: cases reported to the discipline commission (`confidential`) count in the totals only:
never in a unit's figures, and in no breakdown (kind, category, channel, unit) — only as the
number `confidential`.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import and_, func, select

from ticketing.enums import CaseStatus, Satisfaction, WorkOrderStatus
from ticketing.figures.base import (
    DaysBefore,
    Figures,
    InSubquery,
    LocalDate,
    Period,
    Rate,
    RateDefinition,
    Thresholds,
    case_scope,
    in_period,
    unit_id_of,
)
from ticketing.merge_model import CaseMerge
from ticketing.models import CallbackAttempt, Case, MemberUnit, WorkOrder
from ticketing.repeats import same_caller_within

__all__ = ["CaseFigures", "ClosingFigures", "IntakeFigures", "case_definitions"]

RATED = (Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED, Satisfaction.UNSATISFIED)
CONTENT_SATISFIED = (Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED)
# callback attempt states (callback/attempts.py): the citizen picked up in these
CALLBACK_REACHED = ("done", "not_rated")
CALLBACK_TRIED = ("done", "not_rated", "no_answer", "busy", "failed")


def _received(period: Period, unit: str | None):
    return [*in_period(Case.accepted_at, period), *case_scope(unit)]


def _accepted(period: Period, unit: str | None):
    return [*_received(period, unit), Case.status != CaseStatus.REJECTED]


def _shown(period: Period, unit: str | None):
    """Accepted cases a breakdown (kind, category, channel, unit) counts: R7.3c ones are left out."""
    return [*_accepted(period, unit), Case.confidential.is_(False)]


def _first_dispatch():
    return select(func.min(WorkOrder.dispatched_at)).where(WorkOrder.case_id == Case.id).scalar_subquery()


def _merged_away():
    """The case was closed as a repeat of another (重复诉求并单): not a case handled of its own."""
    return select(CaseMerge.id).where(CaseMerge.duplicate_case_id == Case.id).exists()


def _closed(period: Period, unit: str | None):
    return [*in_period(Case.closed_at, period), Case.status == CaseStatus.CLOSED, ~_merged_away(), *case_scope(unit)]


def case_definitions(t: Thresholds) -> dict[str, RateDefinition]:
    """Every case rate, by name: formula, denominator rows, numerator rows."""
    tz = t.tz
    first = _first_dispatch()
    defs = [
        RateDefinition(
            "direct_answer", "answered directly in the call (R7.2) / accepted", Case.id,
            _accepted, lambda p: Case.answered_directly.is_(True)),
        RateDefinition(
            "dispatched_same_day",
            "first work order on the local day of acceptance (R7.3) / accepted cases with a work order",
            Case.id, lambda p, u: [*_accepted(p, u), first.is_not(None)],
            lambda p: LocalDate(first, tz) == LocalDate(Case.accepted_at, tz)),
        RateDefinition(
            "back_office_on_time",
            "back-office dispatches by the stored R7.3 due (dispatch_met) / cases whose back-office dispatch "
            "fell due in the period (dispatched, or still waiting)",
            Case.id, lambda p, u: [*in_period(Case.dispatch_due_at, p), *case_scope(u),
                                   Case.dispatch_met.is_not(None) | (Case.status == CaseStatus.PENDING_BACK_OFFICE)],
            lambda p: Case.dispatch_met.is_(True)),
        RateDefinition(
            "satisfaction", "满意率 = (satisfied + basically satisfied) / closed cases rated", Case.id,
            lambda p, u: [*_closed(p, u), Case.satisfaction.in_(RATED)],
            lambda p: Case.satisfaction.in_(CONTENT_SATISFIED)),
        RateDefinition(
            "first_time_closed",
            "一次办结率 = closed with no returned work order, no re-dispatch (round > 1), not closed "
            "provisionally and not rated unsatisfied / closed",
            Case.id, _closed,
            lambda p: and_(Case.closed_provisionally.is_(False),
                           Case.satisfaction.is_(None) | (Case.satisfaction != Satisfaction.UNSATISFIED),
                           ~select(WorkOrder.id).where(
                               WorkOrder.case_id == Case.id,
                               (WorkOrder.round > 1) | (WorkOrder.status == WorkOrderStatus.RETURNED)).exists())),
        RateDefinition(
            "callback_reach",
            "cases whose callback reached the citizen (an attempt done or not rated) / cases with a callback "
            "attempt finished in the period (not the calls to the citizens of merged cases)",
            Case.id, lambda p, u: [InSubquery(Case.id, select(CallbackAttempt.case_id).where(
                *in_period(CallbackAttempt.finished_at, p), CallbackAttempt.state.in_(CALLBACK_TRIED))),
                ~_merged_away(), *case_scope(u)],
            lambda p: select(CallbackAttempt.id).where(CallbackAttempt.case_id == Case.id,
                                                       CallbackAttempt.state.in_(CALLBACK_REACHED)).exists()),
        RateDefinition(
            "repeat_caller",
            f"重复来电率 = accepted cases whose number had an earlier case of the same category within "
            f"{t.repeat_within_days} days / accepted cases with a number and a category",
            Case.id, lambda p, u: [*_accepted(p, u), Case.citizen_phone != "", Case.category_code.is_not(None)],
            lambda p: _earlier_same_caller(t.repeat_within_days)),
    ]
    return {d.name: d for d in defs}


def _earlier_same_caller(days: int):
    earlier = Case.__table__.alias("earlier")
    return select(earlier.c.id).where(
        *same_caller_within(earlier, Case.citizen_phone, Case.category_code, DaysBefore(Case.accepted_at, days)),
        earlier.c.id < Case.id).exists()  # ids follow acceptance: the earlier case


@dataclass(frozen=True)
class IntakeFigures:
    """received: cases created in the period; rejected: not accepted (R3.1), by reason;
    accepted = received - rejected; confidential: accepted R7.3c cases (totals only);
    by_kind / by_category / by_channel: accepted cases without the confidential ones
    (sum + confidential = accepted); by_unit: accepted cases dispatched to each unit (a case sent
    to two units counts for both); direct_answer: see `case_definitions`; merged: accepted cases
    later merged into the case they repeat (ticketing.repeats; closed, but not counted as closed)."""

    received: int
    accepted: int
    rejected: int
    rejected_by_reason: dict[str, int]
    confidential: int
    by_kind: dict[str, int]
    by_category: dict[str, int]
    by_channel: dict[str, int]
    by_unit: dict[str, int]
    direct_answer: Rate
    merged: int = 0  # accepted, then closed as a repeat of another case (counted here, not as closed)


@dataclass(frozen=True)
class ClosingFigures:
    """closed: cases closed in the period (provisionally: after an unsatisfied round, R7.5);
    satisfaction: 满意率, with the count of each rating; first_time_closed: 一次办结率."""

    closed: int
    closed_provisionally: int
    satisfaction: Rate
    ratings: dict[str, int] = field(default_factory=dict)
    first_time_closed: Rate | None = None


class CaseFigures(Figures):
    """The case figures for a period, of the whole hotline or of one member unit (its code)."""

    # a case counts once per period however its attempts or earlier cases fall on days: read raw,
    # the city and every unit from one pass (Figures._case_pass)
    one_pass = frozenset({"callback_reach", "repeat_caller"})

    def __init__(self, session, thresholds: Thresholds | None = None, *, use_rollup: bool = True) -> None:
        super().__init__(session, thresholds, use_rollup=use_rollup)
        self.definitions = case_definitions(self.thresholds)

    def intake(self, period: Period, unit: str | None = None) -> IntakeFigures:
        scope = _received(period, unit)
        received, rejected, confidential, merged = self.session.execute(
            select(func.count(), func.count().filter(Case.status == CaseStatus.REJECTED),
                   func.count().filter(Case.confidential.is_(True), Case.status != CaseStatus.REJECTED),
                   func.count().filter(_merged_away()))
            .where(*scope)).one()
        by_reason = self._group(Case.reject_reason, *scope, Case.status == CaseStatus.REJECTED)
        shown = _shown(period, unit)
        units = (select(MemberUnit.code, func.count(func.distinct(Case.id)))
                 .join(WorkOrder, WorkOrder.unit_id == MemberUnit.id).join(Case, Case.id == WorkOrder.case_id)
                 .where(*shown).group_by(MemberUnit.code))
        if unit is not None:
            units = units.where(MemberUnit.id == unit_id_of(unit))
        return IntakeFigures(
            received=received, accepted=received - rejected, rejected=rejected, rejected_by_reason=by_reason,
            confidential=confidential, by_kind=self._group(Case.kind, *shown),
            by_category=self._group(Case.category_code, *shown), by_channel=self._group(Case.channel, *shown),
            by_unit=dict(sorted((code, n) for code, n in self.session.execute(units))),
            direct_answer=self.rate("direct_answer", period, unit), merged=merged)

    def closing(self, period: Period, unit: str | None = None) -> ClosingFigures:
        scope = _closed(period, unit)
        closed, provisional = self.session.execute(
            select(func.count(), func.count().filter(Case.closed_provisionally.is_(True))).where(*scope)).one()
        return ClosingFigures(closed=closed, closed_provisionally=provisional,
                              satisfaction=self.rate("satisfaction", period, unit),
                              ratings=self._group(Case.satisfaction, *scope, Case.satisfaction.is_not(None)),
                              first_time_closed=self.rate("first_time_closed", period, unit))

    def case_rows(self, period: Period, unit: str | None = None, *, part: str = "accepted",
                  kind: str | None = None, category: str | None = None, channel: str | None = None,
                  to_unit: str | None = None, reason: str | None = None, limit: int | None = None) -> list[int]:
        """The case ids behind an intake or closing count (drill-down), with the conditions that
        count it: part = "received", "accepted", "rejected" (of one R3.1 `reason`), "closed"; a
        breakdown (kind, category, channel, `to_unit` as in IntakeFigures.by_unit) lists the accepted
        cases that breakdown counts (R7.3c never)."""
        groups = {Case.kind: kind, Case.category_code: category, Case.channel: channel}
        grouped = any(v is not None for v in groups.values()) or to_unit is not None
        if part == "received":
            where = _received(period, unit)
        elif part == "rejected":
            where = [*_received(period, unit), Case.status == CaseStatus.REJECTED]
            if reason is not None:
                where.append(Case.reject_reason == reason)
        elif part == "closed":
            where = _closed(period, unit)
        elif part == "accepted":
            where = _shown(period, unit) if grouped else _accepted(period, unit)
        else:
            raise ValueError(f"unknown part {part!r}")
        if grouped and part != "accepted":
            raise ValueError("a breakdown lists accepted cases")
        where += [column == value for column, value in groups.items() if value is not None]
        if to_unit is not None:
            if unit is not None and to_unit != unit:
                return []  # a unit's breakdown by unit holds only itself (IntakeFigures.by_unit)
            where.append(select(WorkOrder.id).where(WorkOrder.case_id == Case.id,
                                                    WorkOrder.unit_id == unit_id_of(to_unit)).exists())
        stmt = select(Case.id).where(*where).order_by(Case.id).limit(limit)
        return list(self.session.execute(stmt).scalars())

    def _group(self, column, *where) -> dict[str, int]:
        counts: Counter[str] = Counter()
        for key, n in self.session.execute(select(column, func.count()).where(*where).group_by(column)):
            counts["" if key is None else str(getattr(key, "value", key))] += n
        return dict(sorted(counts.items()))
