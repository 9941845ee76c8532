"""Read-side queries the people who must act rely on (T3): what is due soon and what is late.

Each is one indexed range scan: (status, due) composite indexes on work orders and cases, and
for reports the partial index of open work orders in deadline order (ix_wo_open_report_due),
which keeps "first 100 overdue" as fast at a million cases as at ten thousand.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Select, bindparam, select

from ticketing.enums import CaseStatus, WorkOrderStatus
from ticketing.models import Case, WorkOrder

NOT_NOTIFIED = (WorkOrderStatus.DISPATCHED, WorkOrderStatus.RECEIVED)
NOT_REPORTED = (WorkOrderStatus.DISPATCHED, WorkOrderStatus.RECEIVED, WorkOrderStatus.NOTIFIED,
                WorkOrderStatus.RETURN_REQUESTED)


def _not_reported():
    # Written into the SQL as literals, not bound parameters: the planners (PostgreSQL generic
    # plans, SQLite) match a query to a partial index only on the literal predicate
    # `status IN ('dispatched', ...)`, which is the index's own WHERE (models.OPEN_WORK_ORDER_SQL).
    return WorkOrder.status.in_(bindparam("not_reported", list(NOT_REPORTED), unique=True, expanding=True,
                                          literal_execute=True))


def overdue_reports(now: datetime) -> Select:
    """R8.3: work orders past their report-back deadline."""
    return select(WorkOrder).where(_not_reported(), WorkOrder.report_due_at < now)


def reports_due_soon(now: datetime, within: timedelta) -> Select:
    return select(WorkOrder).where(
        _not_reported(), WorkOrder.report_due_at >= now, WorkOrder.report_due_at < now + within
    )


def overdue_notifications(now: datetime) -> Select:
    """R8.2: work orders whose citizen has not been told within the limit."""
    return select(WorkOrder).where(WorkOrder.status.in_(NOT_NOTIFIED), WorkOrder.notify_due_at < now)


def notifications_due_soon(now: datetime, within: timedelta) -> Select:
    return select(WorkOrder).where(
        WorkOrder.status.in_(NOT_NOTIFIED), WorkOrder.notify_due_at >= now, WorkOrder.notify_due_at < now + within
    )


def overdue_cases(now: datetime) -> Select:
    """Cases still out with units past their answer deadline."""
    return select(Case).where(Case.status == CaseStatus.DISPATCHED, Case.deadline_at < now)


def back_office_overdue(now: datetime) -> Select:
    """R7.3: cases waiting for the back office longer than 3 days."""
    return select(Case).where(Case.status == CaseStatus.PENDING_BACK_OFFICE, Case.dispatch_due_at < now)


def callbacks_due(now: datetime) -> Select:
    """R7.4: reported cases that still need their 回访."""
    return select(Case).where(Case.status == CaseStatus.REPORTED, Case.callback_required.is_(True),
                              Case.callback_manual.is_(False))


def close_overdue(now: datetime) -> Select:
    """R7.5: cases past their closing limit."""
    return select(Case).where(
        Case.status.in_((CaseStatus.REPORTED, CaseStatus.AWAITING_CLOSE, CaseStatus.UNSATISFIED)),
        Case.close_due_at < now,
    )
