"""The member unit's procedure (Article 8) and the center's decisions on it."""
from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from callcenter.api.deps import ActorDep, DomainDep, IdPath, OffsetQuery, SessionDep, WorkflowDep, commit
from callcenter.api.schemas import (
    DecisionIn,
    ExtensionIn,
    ExtensionOut,
    NotifyIn,
    ReportIn,
    ReturnIn,
    UrgeIn,
    WorkOrderOut,
)
from callcenter.api.views import extension_out, work_order_out
from ticketing import queries
from ticketing.access import may_read_content, visible_work_orders
from ticketing.audit import Actor
from ticketing.enums import RequestState, Role, WorkOrderStatus
from ticketing.errors import Forbidden, InvalidInput, NotFound
from ticketing.models import ExtensionRequest, WorkOrder
from ticketing.workflow import Workflow

router = APIRouter(tags=["work orders"])


def _load(wf: Workflow, actor: Actor, wo_id: int) -> WorkOrder:
    wo = wf.get_work_order(wo_id)
    if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE} and wo.unit_id != actor.unit_id:
        raise Forbidden("R5.3", f"work order {wo_id} belongs to another unit")
    return wo


def _out(wo: WorkOrder, actor: Actor, domain) -> WorkOrderOut:
    return work_order_out(wo, domain.clock(), content=may_read_content(actor, wo.case))


class WorkOrderFilters:
    """The work-order list's filters: GET /work-orders and its CSV export take the same."""

    def __init__(self, status: WorkOrderStatus | None = None,
                 due: Literal["overdue", "soon", "notify_overdue", "notify_soon"] | None = None) -> None:
        self.status, self.due = status, due

    def select(self, actor: Actor, domain):
        now = domain.clock()
        within = timedelta(hours=domain.policy.due_soon_hours)
        stmt = {
            None: select(WorkOrder),
            "overdue": queries.overdue_reports(now),
            "soon": queries.reports_due_soon(now, within),
            "notify_overdue": queries.overdue_notifications(now),
            "notify_soon": queries.notifications_due_soon(now, within),
        }[self.due]
        stmt = visible_work_orders(actor, stmt)
        if self.status is not None:
            stmt = stmt.where(WorkOrder.status == self.status)
        return stmt

    def as_dict(self) -> dict:
        return {"status": self.status, "due": self.due}


# What each row shows (case number, unit, pending extension) in a few queries, not a few per row.
WORK_ORDER_ROW = (selectinload(WorkOrder.case), selectinload(WorkOrder.unit), selectinload(WorkOrder.extensions),
                  selectinload(WorkOrder.submissions))


@router.get("/work-orders", response_model=list[WorkOrderOut],
            summary="Work orders: a unit sees its own (R8.1); due=overdue|soon for deadline keeping (T3)")
def list_work_orders(
    actor: ActorDep, session: SessionDep, domain: DomainDep,
    filters: Annotated[WorkOrderFilters, Depends()],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: OffsetQuery = 0,
) -> list[WorkOrderOut]:
    stmt = filters.select(actor, domain).order_by(WorkOrder.report_due_at, WorkOrder.id).limit(limit).offset(offset)
    return [_out(wo, actor, domain) for wo in session.execute(stmt.options(*WORK_ORDER_ROW)).scalars()]


@router.get("/work-orders/{wo_id}", response_model=WorkOrderOut)
def get_work_order(wo_id: IdPath, actor: ActorDep, wf: WorkflowDep, domain: DomainDep) -> WorkOrderOut:
    return _out(_load(wf, actor, wo_id), actor, domain)


@router.post("/work-orders/{wo_id}/receive", response_model=WorkOrderOut, summary="R8.1: take in a new work order")
def receive(wo_id: IdPath, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> WorkOrderOut:
    wo = wf.receive(actor, _load(wf, actor, wo_id))
    commit(session)
    return _out(wo, actor, domain)


@router.post("/work-orders/{wo_id}/notify", response_model=WorkOrderOut, summary="R8.2: the citizen was told")
def notify(wo_id: IdPath, body: NotifyIn, request: Request, actor: ActorDep, wf: WorkflowDep, session: SessionDep,
           domain: DomainDep) -> WorkOrderOut:
    from callcenter.callbacks import sms_configured

    if body.channel in domain.policy.notifications.citizen_sms_channels and not sms_configured(request.app.state.settings):
        raise InvalidInput("R8.2", "本热线未配置短信通道，请选择其他告知方式（如热线自动语音电话）")
    wo = wf.notify(actor, _load(wf, actor, wo_id), channel=body.channel, notified_at=body.notified_at, note=body.note)
    commit(session)
    return _out(wo, actor, domain)


@router.post("/work-orders/{wo_id}/report", response_model=WorkOrderOut, summary="R8.3/R8.4: report back")
def report(wo_id: IdPath, body: ReportIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> WorkOrderOut:
    wo = wf.report(actor, _load(wf, actor, wo_id), answer=body.answer, satisfaction=body.satisfaction,
                   expected_version=body.expected_version, version_required=True)
    commit(session)
    return _out(wo, actor, domain)


@router.post("/work-orders/{wo_id}/extensions", response_model=ExtensionOut, status_code=201,
             summary="R8.5: ask for a longer limit, citing the rule")
def request_extension(wo_id: IdPath, body: ExtensionIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep) -> ExtensionOut:
    ext = wf.request_extension(actor, _load(wf, actor, wo_id), legal_basis=body.legal_basis,
                               extra_working_days=body.extra_working_days)
    commit(session)
    return extension_out(ext, actor)


@router.get("/extensions", response_model=list[ExtensionOut], summary="Extension requests waiting for the center")
def pending_extensions(actor: ActorDep, session: SessionDep,
                       state: RequestState = RequestState.PENDING) -> list[ExtensionOut]:
    stmt = select(ExtensionRequest).join(WorkOrder).where(ExtensionRequest.state == state)
    stmt = visible_work_orders(actor, stmt).order_by(ExtensionRequest.id)
    return [extension_out(e, actor) for e in session.execute(stmt).scalars()]


@router.post("/extensions/{ext_id}/decision", response_model=ExtensionOut, summary="R8.5: approve or deny")
def decide_extension(ext_id: IdPath, body: DecisionIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep) -> ExtensionOut:
    ext = session.get(ExtensionRequest, ext_id)
    if ext is None:
        raise NotFound("extension request", ext_id)
    wf.decide_extension(actor, ext, approve=body.approve, note=body.note)
    commit(session)
    return extension_out(ext, actor)


@router.post("/work-orders/{wo_id}/return", response_model=WorkOrderOut, summary="R8.6: send back a misrouted work order")
def request_return(wo_id: IdPath, body: ReturnIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> WorkOrderOut:
    wo = wf.request_return(actor, _load(wf, actor, wo_id), reason=body.reason)
    commit(session)
    return _out(wo, actor, domain)


@router.post("/work-orders/{wo_id}/return/decision", response_model=WorkOrderOut, summary="R8.6: the center approves or denies")
def decide_return(wo_id: IdPath, body: DecisionIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> WorkOrderOut:
    wo = wf.decide_return(actor, _load(wf, actor, wo_id), approve=body.approve, note=body.note)
    commit(session)
    return _out(wo, actor, domain)


@router.post("/work-orders/{wo_id}/urge", status_code=201, summary="R7.7: urge the unit")
def urge(wo_id: IdPath, body: UrgeIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep) -> dict:
    notice = wf.urge(actor, _load(wf, actor, wo_id), note=body.note)
    commit(session)
    return {"notification_id": notice.id, "recipient": notice.recipient_name, "message": notice.message}
