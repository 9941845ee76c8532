"""Domain objects to response bodies, with what the reader may not see taken out (R7.3c)."""
from __future__ import annotations

from datetime import datetime

from callcenter.api.schemas import (
    CaseOut,
    ExtensionOut,
    ReportApprovalOut,
    WorkOrderOut,
)
from ticketing.access import CONFIDENTIAL_PLACEHOLDER, may_read_content
from ticketing.approval_model import ReportSubmission
from ticketing.audit import Actor
from ticketing.enums import ACTIVE_WORK_ORDER_STATUSES, CaseStatus, RequestState
from ticketing.models import Case, ExtensionRequest, WorkOrder
from ticketing.workflow import DISCIPLINE_MESSAGE


def approval_out(sub: ReportSubmission, now: datetime, *, content: bool = True) -> ReportApprovalOut:
    wo = sub.work_order
    return ReportApprovalOut(
        id=sub.id, work_order_id=wo.id, case_number=wo.case.number, case_version=wo.case.version,
        unit_code=wo.unit.code, state=sub.state, answer=sub.answer if content else CONFIDENTIAL_PLACEHOLDER,
        satisfaction=sub.satisfaction, submitted_at=sub.submitted_at,
        submitted_by=sub.submitted_by.username if sub.submitted_by else None, decided_at=sub.decided_at,
        note=sub.note if content else None, report_due_at=wo.report_due_at,
        overdue=wo.status in ACTIVE_WORK_ORDER_STATUSES and wo.report_due_at < now,
    )


def work_order_out(wo: WorkOrder, now: datetime, *, content: bool = True) -> WorkOrderOut:
    pending = next((e.id for e in wo.extensions if e.state == RequestState.PENDING), None)
    # Only units with approval have submissions: no look-up for the others' work orders.
    latest = wo.submissions[-1] if wo.unit.report_approval and wo.submissions else None
    return WorkOrderOut(
        id=wo.id, case_number=wo.case.number, unit_code=wo.unit.code, unit_name=wo.unit.name, mode=wo.mode,
        role=wo.role, status=wo.status, round=wo.round,
        instructions=wo.instructions if content else CONFIDENTIAL_PLACEHOLDER,
        dispatched_at=wo.dispatched_at, received_at=wo.received_at, notify_due_at=wo.notify_due_at,
        notified_at=wo.notified_at, notify_channel=wo.notify_channel, notify_met=wo.notify_met,
        report_due_at=wo.report_due_at, reported_at=wo.reported_at, report_met=wo.report_met,
        answer=wo.answer if content else (CONFIDENTIAL_PLACEHOLDER if wo.answer else None),
        reported_satisfaction=wo.reported_satisfaction, return_due_at=wo.return_due_at,
        return_reason=wo.return_reason if content else None, urge_count=wo.urge_count,
        overdue=wo.status in ACTIVE_WORK_ORDER_STATUSES and wo.report_due_at < now,
        pending_extension_id=pending,
        approval=approval_out(latest, now, content=content) if latest is not None else None,
        provisional_deadlines=sorted(wo.provisional_deadlines or ()),
    )


def _owner_name(case: Case, actor: Actor) -> str | None:
    if case.owner_id is None:
        return None
    if case.owner_id == actor.user_id:
        return actor.name  # the reader owns it: no look-up of the user
    return case.owner.username


def case_out(case: Case, actor: Actor, now: datetime, *, unit_view: int | None = None) -> CaseOut:
    content = may_read_content(actor, case)
    hidden = CONFIDENTIAL_PLACEHOLDER
    orders = case.work_orders
    if unit_view is not None:
        orders = [wo for wo in orders if wo.unit_id == unit_view]  # R5.3: a unit sees its own work orders
    return CaseOut(
        number=case.number, version=case.version, kind=case.kind, channel=case.channel, status=case.status,
        category_code=case.category_code,
        title=case.title if content else hidden,
        description=case.description if content else hidden,
        location=case.location if content else "",
        citizen_name=case.citizen_name if content else "",
        citizen_phone=case.citizen_phone if content else "",
        owner=_owner_name(case, actor),
        accepted_at=case.accepted_at, confidential=case.confidential, callback_required=case.callback_required,
        assessed=case.assessed, reject_reason=case.reject_reason,
        referral=case.referral if content else (hidden if case.referral else None),
        answer=case.answer if content else (hidden if case.answer else None),
        answered_directly=case.answered_directly, satisfaction=case.satisfaction,
        satisfaction_source=case.satisfaction_source, dispatch_due_at=case.dispatch_due_at,
        dispatch_met=case.dispatch_met, deadline_at=case.deadline_at, reported_at=case.reported_at,
        callback_due_at=case.callback_due_at, callback_met=case.callback_met, callback_manual=case.callback_manual,
        close_due_at=case.close_due_at, closed_at=case.closed_at, close_met=case.close_met,
        closed_provisionally=case.closed_provisionally, published_at=case.published_at,
        convenience_consent=case.convenience_consent_at is not None,
        overdue=case.status == CaseStatus.DISPATCHED and case.deadline_at is not None and case.deadline_at < now,
        provisional_deadlines=sorted(case.provisional_deadlines or ()),
        work_orders=[work_order_out(wo, now, content=content) for wo in orders],
        operator_message=DISCIPLINE_MESSAGE if case.confidential else None,
    )


def extension_out(ext: ExtensionRequest, actor: Actor) -> ExtensionOut:
    # R7.3c: the legal basis a discipline order's extension cites is the report's content
    content = may_read_content(actor, ext.work_order.case)
    return ExtensionOut(
        id=ext.id, work_order_id=ext.work_order_id,
        legal_basis=ext.legal_basis if content else CONFIDENTIAL_PLACEHOLDER,
        extra_working_days=ext.extra_working_days, state=ext.state, requested_at=ext.requested_at,
        decided_at=ext.decided_at, decision_note=ext.decision_note if content else None,
        old_due_at=ext.old_due_at,
        new_due_at=ext.new_due_at,
    )
