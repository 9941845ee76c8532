"""Read-only lists the staff console needs and /api/v1 has no filter for (T3, R4.1, R7.6).

Every list goes through the same access rules as the rest of the API (``ticketing.access``):
a unit sees its own work orders, R7.3c content only the discipline commission.
"""
from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel
from sqlalchemy import or_, select
from sqlalchemy.orm import selectinload

from callcenter.api.deps import ActorDep, DomainDep, SessionDep, require_roles
from callcenter.api.schemas import CaseOut, WorkOrderOut
from callcenter.api.views import case_out, work_order_out
from ticketing.access import case_content_placeholder, may_read_content, visible_cases, visible_work_orders
from ticketing.audit import Actor
from ticketing.enums import ACTIVE_WORK_ORDER_STATUSES, OPEN_CASE_STATUSES, CaseStatus, Channel, Role, WorkOrderStatus
from ticketing.fax import failed_faxes
from ticketing.models import Case, WorkOrder
from ticketing.workflow import CONVENIENCE_DISCLAIMER, DISCIPLINE_MESSAGE

router = APIRouter(prefix="/console", tags=["staff console"])

CENTER = (Role.FRONT_DESK, Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN)
Mark = Literal["overdue", "soon", "pending", "met", "late"] | None


class RouteUnit(BaseModel):
    code: str
    name: str
    joined: bool


class ConsoleCategory(BaseModel):
    code: str
    name: str
    kinds: list[str]
    mode: str
    units: list[RouteUnit]
    lead: str | None
    concerned_unit: bool
    description: str
    read_aloud: str | None  # what the operator must say before or at dispatch (R7.3c, R7.3f)


class InboxCase(BaseModel):
    number: str
    kind: str
    status: CaseStatus
    title: str
    description: str
    location: str
    citizen_name: str
    citizen_phone: str
    confidential: bool


class InboxItem(BaseModel):
    work_order: WorkOrderOut
    case: InboxCase
    notify_mark: Mark
    report_mark: Mark


@router.get("/categories", response_model=list[ConsoleCategory],
            summary="Categories with their routing spelled out for the operator (R7.3), and what to read aloud")
def categories(actor: ActorDep, domain: DomainDep) -> list[ConsoleCategory]:
    units = {u.code: u for u in domain.city.units}
    out = []
    for c in domain.city.categories:
        read = {"discipline": DISCIPLINE_MESSAGE, "transfer": CONVENIENCE_DISCLAIMER}.get(c.route.mode)
        out.append(ConsoleCategory(
            code=c.code, name=c.name, kinds=list(c.kinds), mode=c.route.mode,
            units=[RouteUnit(code=u, name=units[u].name if u in units else u,
                             joined=units[u].joined if u in units else False) for u in c.route.units],
            lead=c.route.lead, concerned_unit=c.route.concerned_unit, description=c.description,
            read_aloud=read))
    return out


@router.get("/my-cases", response_model=list[CaseOut],
            summary="R4.1: the open cases this operator owns, oldest deadline first")
def my_cases(actor: ActorDep, session: SessionDep, domain: DomainDep,
             limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[CaseOut]:
    require_roles(actor, *CENTER, rule="R4.1", what="own cases")
    stmt = (select(Case).where(Case.owner_id == actor.user_id, Case.status.in_(list(OPEN_CASE_STATUSES)))
            .order_by(Case.id.desc()).limit(limit))
    now = domain.clock()
    return [case_out(c, actor, now) for c in session.execute(visible_cases(actor, stmt)).scalars()]


@router.get("/waiting", response_model=list[CaseOut],
            summary="R4.1, R2.2: new cases no operator owns, from the web and other channels with no call")
def waiting(actor: ActorDep, session: SessionDep, domain: DomainDep,
            limit: Annotated[int, Query(ge=1, le=500)] = 100) -> list[CaseOut]:
    require_roles(actor, *CENTER, rule="R4.1", what="see cases waiting for an operator")
    # a voice-menu case (it has its call) gets its owner when an operator takes that call; a fax's
    # call has no operator to take it (ticketing/fax.py)
    stmt = (select(Case).where(Case.owner_id.is_(None), Case.status == CaseStatus.NEW,
                               or_(Case.created_by_call_id.is_(None), Case.channel == Channel.FAX))
            .order_by(Case.accepted_at, Case.id).limit(limit))
    now = domain.clock()
    return [case_out(c, actor, now) for c in session.execute(visible_cases(actor, stmt)).scalars()]


@router.get("/failed-faxes", summary="Fax calls of the last 30 days of which no page arrived (call back)")
def failed_fax_calls(actor: ActorDep, session: SessionDep, domain: DomainDep,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[dict]:
    require_roles(actor, *CENTER, rule="R2.2", what="see failed faxes")
    since = domain.clock() - timedelta(days=30)
    return [{"uniqueid": c.uniqueid, "at": c.started_at, "caller_number": c.caller_number,
             "reason": c.outcome_reason} for c in failed_faxes(session, since, limit)]


@router.get("/publishable", response_model=list[CaseOut],
            summary="R7.6: closed cases not yet published (never R7.3c, never a refused request)")
def publishable(actor: ActorDep, session: SessionDep, domain: DomainDep,
                limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[CaseOut]:
    require_roles(actor, Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN, rule="R7.6", what="see cases to publish")
    stmt = (select(Case).where(Case.status == CaseStatus.CLOSED, Case.published_at.is_(None),
                               Case.confidential.is_(False), Case.reject_reason.is_(None))
            .order_by(Case.closed_at.desc(), Case.id.desc()).limit(limit))
    now = domain.clock()
    return [case_out(c, actor, now) for c in session.execute(stmt).scalars()]


def _mark(due: datetime, done_at: datetime | None, met: bool | None, active: bool, now: datetime,
          within: timedelta) -> Mark:
    """T3: what the person who must act needs to know about one deadline."""
    if done_at is not None:
        return "met" if met else "late"
    if not active:
        return None
    if due < now:
        return "overdue"
    if due < now + within:
        return "soon"
    return "pending"


def _inbox_case(case: Case, actor: Actor) -> InboxCase:
    # R5.3: a returned order stays in the unit's history, its case's content does not
    hidden = case_content_placeholder(actor, case)
    content = hidden is None
    return InboxCase(
        number=case.number, kind=case.kind.value, status=case.status, confidential=case.confidential,
        title=case.title if content else hidden,
        description=case.description if content else hidden,
        location=case.location if content else "", citizen_name=case.citizen_name if content else "",
        citizen_phone=case.citizen_phone if content else "")


@router.get("/work-orders", response_model=list[InboxItem],
            summary="R8.1/T3: work orders with their case and each deadline marked overdue / due soon / met")
def inbox(actor: ActorDep, session: SessionDep, domain: DomainDep,
          scope: Literal["active", "done", "all"] = "active",
          limit: Annotated[int, Query(ge=1, le=500)] = 200) -> list[InboxItem]:
    stmt = select(WorkOrder)
    if scope == "active":
        stmt = stmt.where(WorkOrder.status.in_(list(ACTIVE_WORK_ORDER_STATUSES)))
    elif scope == "done":
        stmt = stmt.where(WorkOrder.status.in_([WorkOrderStatus.REPORTED, WorkOrderStatus.RETURNED]))
    stmt = visible_work_orders(actor, stmt)
    order = (WorkOrder.report_due_at, WorkOrder.id) if scope == "active" else (WorkOrder.id.desc(),)
    stmt = stmt.order_by(*order).limit(limit).options(
        selectinload(WorkOrder.case), selectinload(WorkOrder.unit), selectinload(WorkOrder.extensions),
        selectinload(WorkOrder.submissions))
    now = domain.clock()
    within = timedelta(hours=domain.policy.due_soon_hours)
    out = []
    for wo in session.execute(stmt).scalars():
        active = wo.status in ACTIVE_WORK_ORDER_STATUSES
        out.append(InboxItem(
            work_order=work_order_out(wo, now, content=may_read_content(actor, wo.case)),
            case=_inbox_case(wo.case, actor),
            notify_mark=_mark(wo.notify_due_at, wo.notified_at, wo.notify_met, active, now, within),
            report_mark=_mark(wo.report_due_at, wo.reported_at, wo.report_met, active, now, within)))
    return out
