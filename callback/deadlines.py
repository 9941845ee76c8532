"""Deadline keeping (issue 5 item 4): a regular sweep that urges (R7.7) once per threshold.

- Work orders whose notification (R8.2) or report back (R8.3) is due soon or overdue: the unit is
  urged through `Workflow.urge` (an event on the case and a `UnitNotification` to the unit's duty
  staff; SMS / call delivery can come later).
- Cases waiting for the back office past their dispatch limit (R7.3) and cases past their closing
  limit (R7.5): a `deadline_alert` event on the case, which the center's lists show.

- Inquiries (R6.1) whose explanation is due soon or overdue: the unit is urged through
  `Workflow.urge_inquiry`, with the same thresholds and the same "once per threshold" keys.

- Provisional deadlines (T1): when the override file changed or the calendar was not yet checked
  since start (a `chinesecalendar` that learnt a year), they are counted again
  (`ticketing.deadline_correction`).

"Once per threshold": the threshold's key holds the deadline it is about (e.g.
`report_overdue:2026-03-09T09:30:00+00:00`), so an approved extension (R8.5) that moves the
deadline gets urged again when the new one is near, and a repeated sweep urges nobody twice.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from ticketing import audit, knowledge, queries
from ticketing.audit import Actor
from ticketing.deadline_correction import correct_deadlines_if_calendar_changed
from ticketing.domain import Domain
from ticketing.enums import Role
from ticketing.inquiry_model import Inquiry
from ticketing.models import AuditEvent, Case, WorkOrder
from ticketing.workflow import inquiries

log = logging.getLogger("callback.deadlines")

SCHEDULER_ACTOR = Actor(user_id=None, name="scheduler", role=Role.SYSTEM.value)

URGE_NOTES = {
    "notify_soon": "请在时限内告知诉求人（R8.2）",
    "notify_overdue": "已超过告知时限，请立即告知诉求人（R8.2）",
    "report_soon": "请在时限内办结并报结（R8.3）",
    "report_overdue": "已超过办理时限，请立即办理并报结（R8.3）",
    "explanation_soon": "请在时限内向监察作出说明（R6.1）",
    "explanation_overdue": "已超过说明时限，请立即向监察作出说明（R6.1）",
}


@dataclass
class DeadlineReport:
    urged: dict[str, int] = field(default_factory=dict)
    alerts: dict[str, int] = field(default_factory=dict)
    corrected: int = 0  # provisional deadlines counted again

    def add(self, table: dict[str, int], kind: str) -> None:
        table[kind] = table.get(kind, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.urged.values()) + sum(self.alerts.values())


def threshold_key(kind: str, due: datetime) -> str:
    return f"{kind}:{due.isoformat()}"


def sweep_deadlines(session: Session, domain: Domain) -> DeadlineReport:
    """One pass; the caller commits. Safe to run as often as wanted."""
    now = domain.clock()
    policy = domain.policy.urge
    wf = domain.workflow(session)
    report = DeadlineReport()
    report.corrected = correct_deadlines_if_calendar_changed(session, domain, SCHEDULER_ACTOR)

    checks: list[tuple[str, object, str]] = []
    if policy.notify_due_within_hours:
        checks.append(("notify_soon", queries.notifications_due_soon(now, timedelta(hours=policy.notify_due_within_hours)),
                       "notify_due_at"))
    if policy.report_due_within_working_days:
        horizon = domain.calendar.add_working_days(now, policy.report_due_within_working_days)
        checks.append(("report_soon", queries.reports_due_soon(now, horizon - now), "report_due_at"))
    if policy.overdue:
        checks.append(("notify_overdue", queries.overdue_notifications(now), "notify_due_at"))
        checks.append(("report_overdue", queries.overdue_reports(now), "report_due_at"))

    for kind, query, due_attr in checks:
        for wo in session.execute(query.order_by(WorkOrder.id)).scalars():
            key = threshold_key(kind, getattr(wo, due_attr))
            if key in (wo.urged_thresholds or []):
                continue
            wf.urge(SCHEDULER_ACTOR, wo, note=URGE_NOTES[kind], threshold=key)
            report.add(report.urged, kind)
    _urge_inquiries(session, domain, wf, now, report)
    kb = knowledge.sweep(session, SCHEDULER_ACTOR, now=now, notify=wf.notify_unit_staff)  # R7.2 entries
    for table, kind in ((report.urged, "urged"), (report.alerts, "expired")):
        if kb[kind]:
            table[f"knowledge_{kind}"] = kb[kind]

    if policy.overdue:
        for kind, query, due_attr, rule in (
            ("dispatch_overdue", queries.back_office_overdue(now), "dispatch_due_at", "R7.3"),
            ("close_overdue", queries.close_overdue(now), "close_due_at", "R7.5"),
        ):
            for case in session.execute(query.order_by(Case.id)).scalars():
                key = threshold_key(kind, getattr(case, due_attr))
                if _alerted(session, case.id, key):
                    continue
                audit.record(session, SCHEDULER_ACTOR, "deadline_alert", at=now, case_id=case.id,
                             data={"threshold": key, "rule": rule, "due_at": getattr(case, due_attr)})
                report.add(report.alerts, kind)
    session.flush()
    if report.total:
        log.info("deadline sweep: urged %s, alerts %s", report.urged, report.alerts)
    return report


def _urge_inquiries(session: Session, domain: Domain, wf, now: datetime, report: DeadlineReport) -> None:
    """An inquiry's explanation (R6.1) is urged like a work order's report: soon and overdue, once each."""
    policy = domain.policy.urge
    checks = []
    if policy.report_due_within_working_days:
        horizon = domain.calendar.add_working_days(now, policy.report_due_within_working_days)
        checks.append(("explanation_soon", inquiries.explanations_due_soon(now, horizon)))
    if policy.overdue:
        checks.append(("explanation_overdue", inquiries.explanations_overdue(now)))
    for kind, query in checks:
        for inquiry in session.execute(query.order_by(Inquiry.id)).scalars():
            key = threshold_key(kind, inquiry.explanation_due_at)
            if key in (inquiry.urged_thresholds or []):
                continue
            wf.urge_inquiry(SCHEDULER_ACTOR, inquiry, note=URGE_NOTES[kind], threshold=key)
            report.add(report.urged, kind)


def _alerted(session: Session, case_id: int, key: str) -> bool:
    events = session.execute(
        select(AuditEvent.data).where(AuditEvent.case_id == case_id, AuditEvent.action == "deadline_alert")
    ).scalars()
    return any((d or {}).get("threshold") == key for d in events)


__all__ = ["sweep_deadlines", "DeadlineReport", "threshold_key", "SCHEDULER_ACTOR"]
