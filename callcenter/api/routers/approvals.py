"""Approval inside a member unit (Article 5 (二) 6: 呈批, 审结): the leader's list of reports waiting
for them, approve, send back. A clerk submits through POST /work-orders/{id}/report as before."""
from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from callcenter.api.deps import (
    ActorDep,
    DomainDep,
    IdPath,
    SessionDep,
    WorkflowDep,
    commit,
)
from callcenter.api.routers.work_orders import _load, _out
from callcenter.api.schemas import (
    ApproveIn,
    ReportApprovalOut,
    SendBackIn,
    WorkOrderOut,
)
from callcenter.api.views import approval_out
from ticketing.access import may_read_content, visible_approvals
from ticketing.approval_model import ReportSubmission
from ticketing.enums import ApprovalState, WorkOrderStatus
from ticketing.models import WorkOrder

router = APIRouter(tags=["work orders"])


@router.get("/report-approvals", response_model=list[ReportApprovalOut],
            summary="Article 5 (二) 6: reports back waiting for the unit's leader (待审批), most urgent first")
def pending_approvals(actor: ActorDep, session: SessionDep, domain: DomainDep) -> list[ReportApprovalOut]:
    stmt = (select(ReportSubmission).join(WorkOrder, WorkOrder.id == ReportSubmission.work_order_id)
            .where(ReportSubmission.state == ApprovalState.PENDING, WorkOrder.status == WorkOrderStatus.NOTIFIED))
    stmt = visible_approvals(actor, stmt).order_by(WorkOrder.report_due_at, ReportSubmission.id).limit(500)
    stmt = stmt.options(selectinload(ReportSubmission.work_order).selectinload(WorkOrder.case),
                        selectinload(ReportSubmission.work_order).selectinload(WorkOrder.unit),
                        selectinload(ReportSubmission.submitted_by))
    now = domain.clock()
    return [approval_out(s, now, content=may_read_content(actor, s.work_order.case))
            for s in session.execute(stmt).scalars()]


@router.post("/work-orders/{wo_id}/report/approve", response_model=WorkOrderOut,
             summary="Article 5 (二) 6: the unit's leader approves the report; it reaches the center now (R8.3)")
def approve(wo_id: IdPath, body: ApproveIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep,
            domain: DomainDep) -> WorkOrderOut:
    wo = wf.approve_report(actor, _load(wf, actor, wo_id), expected_version=body.expected_version,
                           version_required=True)
    commit(session)
    return _out(wo, actor, domain)


@router.post("/work-orders/{wo_id}/report/send-back", response_model=WorkOrderOut,
             summary="Article 5 (二) 6: the unit's leader sends the report back to the clerk with a note")
def send_back(wo_id: IdPath, body: SendBackIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep,
              domain: DomainDep) -> WorkOrderOut:
    wo = wf.send_back_report(actor, _load(wf, actor, wo_id), note=body.note, expected_version=body.expected_version)
    commit(session)
    return _out(wo, actor, domain)
