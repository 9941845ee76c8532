"""Work-order figures: what a member unit is assessed on (R8.2-R8.6, R7.7).

Read from `work_orders` as the workflow stored them: `notify_due_at` / `report_due_at` are the
deadlines counted in working days when the work order was dispatched (holidays skipped, T1), and
`report_due_at` is already the approved, extended one (R8.5); `notify_met` / `report_met` were
set when the unit acted. Nothing is counted again here.

Which period a work order counts in: 响应率 by `notify_due_at`, 按时办结率 by `report_due_at`,
returns / extensions / urged by `dispatched_at`; urge notices and extension decisions by their
own time. A report on the period so far passes until = now (what is not due yet is not missed).

A work order cancelled by a re-dispatch or returned (R8.6) before the unit notified (or reported)
is not due for that step: it leaves the denominator rather than counting as missed.

R7.3c: work orders of confidential cases count in the totals, never in a unit's figures.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Index, and_, func, or_, select

from ticketing.enums import RequestState, WorkOrderStatus
from ticketing.figures.base import (
    Figures,
    Period,
    Rate,
    RateDefinition,
    Thresholds,
    in_period,
    not_confidential,
    unit_id_of,
    work_order_scope,
)
from ticketing.models import ExtensionRequest, MemberUnit, UnitNotification, WorkOrder

__all__ = ["WorkOrderFigures", "UnitWorkFigures", "work_order_definitions"]

_DROPPED = (WorkOrderStatus.CANCELLED, WorkOrderStatus.RETURNED)


def _dispatched(period: Period, unit: str | None):
    return [*in_period(WorkOrder.dispatched_at, period), *work_order_scope(unit)]


def work_order_definitions() -> dict[str, RateDefinition]:
    defs = [
        RateDefinition(
            "response", "响应率 = notified within the R8.2 limit (notify_met) / work orders whose notification "
            "fell due in the period (less those cancelled or returned before notifying)",
            WorkOrder.id,
            lambda p, u: [*in_period(WorkOrder.notify_due_at, p), *work_order_scope(u),
                          ~and_(WorkOrder.notify_met.is_(None), WorkOrder.status.in_(_DROPPED))],
            lambda p: WorkOrder.notify_met.is_(True)),
        RateDefinition(
            "on_time", "按时办结率 = reported by the (approved, extended) R8.3 deadline (report_met) / work orders "
            "whose report fell due in the period (less those cancelled or returned before reporting)",
            WorkOrder.id,
            lambda p, u: [*in_period(WorkOrder.report_due_at, p), *work_order_scope(u),
                          ~and_(WorkOrder.report_met.is_(None), WorkOrder.status.in_(_DROPPED))],
            lambda p: WorkOrder.report_met.is_(True)),
        RateDefinition(
            "returned", "returned to the center, approved (R8.6) / work orders dispatched in the period",
            WorkOrder.id, _dispatched, lambda p: WorkOrder.status == WorkOrderStatus.RETURNED),
        RateDefinition(
            "extended", "with an approved extension (R8.5) / work orders dispatched in the period",
            WorkOrder.id, _dispatched,
            lambda p: select(ExtensionRequest.id).where(ExtensionRequest.work_order_id == WorkOrder.id,
                                                        ExtensionRequest.state == RequestState.APPROVED).exists()),
        RateDefinition(
            "urged", "urged at least once (R7.7) / work orders dispatched in the period",
            WorkOrder.id, _dispatched, lambda p: WorkOrder.urge_count > 0),
        RateDefinition(
            "urged_overdue", "督办率 = urged (R7.7) at least once while past a deadline it had not met (the R8.2 "
            "notification or the approved R8.3 report, not done when the urge went out) / work orders dispatched "
            "in the period", WorkOrder.id, _dispatched, lambda p: _urged_overdue()),
    ]
    return {d.name: d for d in defs}


# a work order's urges (督办率's look-up per work order; migration 0021): without it PostgreSQL
# read every urge notice for each day's rates (20 s a day on the 1 M-case city)
Index("ix_unit_notifications_wo", UnitNotification.work_order_id, UnitNotification.kind, UnitNotification.at)


def _urged_overdue():
    """An urge notice sent after a deadline the work order had not met by then (a reminder before
    the deadline is not 督办)."""
    n = UnitNotification
    late_notify = and_(n.at > WorkOrder.notify_due_at,
                       or_(WorkOrder.notified_at.is_(None), WorkOrder.notified_at > n.at))
    late_report = and_(n.at > WorkOrder.report_due_at,
                       or_(WorkOrder.reported_at.is_(None), WorkOrder.reported_at > n.at))
    return select(n.id).where(n.work_order_id == WorkOrder.id, n.kind == "urge", or_(late_notify, late_report)).exists()


@dataclass(frozen=True)
class UnitWorkFigures:
    """dispatched: work orders dispatched in the period; response: 响应率; on_time: 按时办结率;
    returned / extended / urged: shares of the dispatched; urges: urge notices sent in the
    period; extensions_approved / extensions_denied: extension decisions made in the period."""

    dispatched: int
    response: Rate
    on_time: Rate
    returned: Rate
    extended: Rate
    urged: Rate
    urges: int
    extensions_approved: int
    extensions_denied: int


class WorkOrderFigures(Figures):
    """The work-order figures for a period, of all work orders or of one member unit (its code)."""

    def __init__(self, session, thresholds: Thresholds | None = None, *, use_rollup: bool = True) -> None:
        super().__init__(session, thresholds, use_rollup=use_rollup)
        self.definitions = work_order_definitions()

    def summary(self, period: Period, unit: str | None = None) -> UnitWorkFigures:
        returned = self.rate("returned", period, unit)
        urges = select(func.count()).select_from(UnitNotification).where(
            UnitNotification.kind == "urge", *in_period(UnitNotification.at, period))
        decided = (select(func.count().filter(ExtensionRequest.state == RequestState.APPROVED),
                          func.count().filter(ExtensionRequest.state == RequestState.DENIED))
                   .join(WorkOrder, WorkOrder.id == ExtensionRequest.work_order_id)
                   .where(*in_period(ExtensionRequest.decided_at, period)))
        if unit is not None:
            urges = urges.where(UnitNotification.unit_id == unit_id_of(unit),
                                not_confidential(UnitNotification.case_id))
            decided = decided.where(*work_order_scope(unit))
        approved, denied = self.session.execute(decided).one()
        return UnitWorkFigures(
            dispatched=returned.denominator, response=self.rate("response", period, unit),
            on_time=self.rate("on_time", period, unit), returned=returned,
            extended=self.rate("extended", period, unit), urged=self.rate("urged", period, unit),
            urges=self.scalar(urges), extensions_approved=approved, extensions_denied=denied)

    def by_unit(self, period: Period) -> dict[str, UnitWorkFigures]:
        """`summary` for every member unit that had a work order dispatched or due in the period."""
        codes = self.session.execute(
            select(MemberUnit.code).where(select(WorkOrder.id).where(
                WorkOrder.unit_id == MemberUnit.id, not_confidential(WorkOrder.case_id),
                or_(*(and_(*in_period(column, period)) for column in
                      (WorkOrder.dispatched_at, WorkOrder.notify_due_at, WorkOrder.report_due_at)))).exists())
            .order_by(MemberUnit.code)).scalars()
        return {code: self.summary(period, code) for code in codes}
