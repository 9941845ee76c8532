"""Work orders overdue now (T3, R8.2, R8.3): "overdue by unit" at a moment, not over a period.

report overdue: work orders a unit still holds unreported (dispatched, received, notified, return
  requested) whose stored R8.3 deadline `report_due_at` (the approved, extended one, R8.5) is before
  `now` — `ticketing.queries.overdue_reports`, the back office's 超期工单 list;
notify overdue: work orders not yet notified (dispatched, received) whose R8.2 `notify_due_at` is
  before `now` — `ticketing.queries.overdue_notifications`.

R7.3c: work orders of confidential cases count in the totals, never for a unit.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select

from ticketing import queries
from ticketing.figures.base import Figures, not_confidential, work_order_scope
from ticketing.models import MemberUnit, WorkOrder

__all__ = ["OVERDUE_DEADLINES", "OverdueCount", "OverdueFigures"]

# which deadline was missed -> the query that selects the work orders past it
OVERDUE_DEADLINES = {"report": queries.overdue_reports, "notify": queries.overdue_notifications}


@dataclass(frozen=True)
class OverdueCount:
    """Work orders past their R8.3 report deadline / past their R8.2 notify deadline, now."""

    report: int
    notify: int


class OverdueFigures(Figures):
    """Overdue work now, of all work orders or of one member unit (its code)."""

    def count(self, now: datetime, unit: str | None = None) -> OverdueCount:
        return OverdueCount(**{deadline: self.scalar(
            select(func.count(WorkOrder.id)).where(query(now).whereclause, *work_order_scope(unit)))
            for deadline, query in OVERDUE_DEADLINES.items()})

    def by_unit(self, now: datetime) -> dict[str, OverdueCount]:
        """`count` for every member unit with overdue work (R7.3c work left out)."""
        counts: dict[str, dict[str, int]] = {}
        for deadline, query in OVERDUE_DEADLINES.items():
            stmt = (select(MemberUnit.code, func.count(WorkOrder.id))
                    .join(MemberUnit, MemberUnit.id == WorkOrder.unit_id)
                    .where(query(now).whereclause, not_confidential(WorkOrder.case_id)).group_by(MemberUnit.code))
            for code, n in self.session.execute(stmt):
                counts.setdefault(code, {"report": 0, "notify": 0})[deadline] = n
        return {code: OverdueCount(**c) for code, c in sorted(counts.items())}

    def overdue_rows(self, now: datetime, unit: str | None = None, *, deadline: str = "report",
                     limit: int | None = None) -> list[int]:
        """The work order ids behind `count` (drill-down), oldest deadline first."""
        due = WorkOrder.report_due_at if deadline == "report" else WorkOrder.notify_due_at
        stmt = (select(WorkOrder.id).where(OVERDUE_DEADLINES[deadline](now).whereclause, *work_order_scope(unit))
                .order_by(due, WorkOrder.id).limit(limit))
        return list(self.session.execute(stmt).scalars())
