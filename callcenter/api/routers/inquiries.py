"""Inquiries (R6.1, 过错问责): supervision opens and decides them, the unit explains; a unit sees
only its own, and an inquiry shows no case content its reader may not read (R7.3c)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime, Field
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from callcenter.api.deps import (
    ActorDep,
    DomainDep,
    IdPath,
    OffsetQuery,
    SessionDep,
    WorkflowDep,
    commit,
    require_roles,
)
from callcenter.api.schemas import Out, RequiredText, ShortText, Strict, Text
from ticketing.access import (
    CONFIDENTIAL_PLACEHOLDER,
    INQUIRY_READERS,
    inquiry_case_placeholder,
    may_read_explanation,
    require_view_inquiry,
    visible_inquiries,
)
from ticketing.audit import Actor
from ticketing.enums import AccountabilityDecision, InquiryReason, InquiryStatus
from ticketing.errors import InvalidInput
from ticketing.figures.base import FIRST_YEAR, LAST_YEAR
from ticketing.inquiry_model import Inquiry
from ticketing.models import MemberUnit
from ticketing.workflow import Workflow
from ticketing.workflow.inquiries import (
    DEFAULT_EXPLANATION_WORKING_DAYS,
    MAX_EXPLANATION_WORKING_DAYS,
    inquiry_counts,
)

router = APIRouter(tags=["inquiries"])


class InquiryIn(Strict):
    reason: InquiryReason
    description: RequiredText
    unit_code: ShortText | None = None       # the unit; implied by a work order
    case_number: ShortText | None = None     # an inquiry on a case (else on the unit as such)
    work_order_id: Annotated[int, Field(ge=1, le=2_147_483_647)] | None = None
    working_days: Annotated[int, Field(ge=1, le=MAX_EXPLANATION_WORKING_DAYS)] = DEFAULT_EXPLANATION_WORKING_DAYS


class ExplanationIn(Strict):
    explanation: RequiredText


class InquiryDecisionIn(Strict):
    findings: RequiredText
    decision: AccountabilityDecision


class InquiryUrgeIn(Strict):
    note: Text = ""


class InquiryOut(Out):
    id: int
    unit_code: str
    unit_name: str
    case_number: str | None
    case_title: str | None       # the case's title, or what stands in for it (R7.3c)
    work_order_id: int | None
    reason: InquiryReason
    description: str
    status: InquiryStatus
    opened_at: datetime
    explanation_due_at: datetime
    overdue: bool
    explanation: str | None
    explained_at: datetime | None
    explanation_met: bool | None
    findings: str | None
    decision: AccountabilityDecision | None
    decided_at: datetime | None
    urge_count: int
    provisional_deadlines: list[str]


class UnitInquiriesOut(Out):
    unit_code: str
    unit_name: str
    opened: int
    open: int
    decided: int
    late_explanations: int
    by_decision: dict[str, int]


def _out(inquiry: Inquiry, actor: Actor, now: datetime) -> InquiryOut:
    case = inquiry.case
    hidden = inquiry_case_placeholder(actor, inquiry)
    return InquiryOut(
        id=inquiry.id, unit_code=inquiry.unit.code, unit_name=inquiry.unit.name,
        case_number=case.number if case else None, case_title=(hidden or case.title) if case else None,
        work_order_id=inquiry.work_order_id, reason=inquiry.reason, description=inquiry.description,
        status=inquiry.status, opened_at=inquiry.opened_at, explanation_due_at=inquiry.explanation_due_at,
        overdue=inquiry.status == InquiryStatus.ASKED and inquiry.explanation_due_at < now,
        explanation=(inquiry.explanation if may_read_explanation(actor, inquiry) or inquiry.explanation is None
                     else CONFIDENTIAL_PLACEHOLDER),
        explained_at=inquiry.explained_at, explanation_met=inquiry.explanation_met,
        findings=inquiry.findings, decision=inquiry.decision, decided_at=inquiry.decided_at,
        urge_count=inquiry.urge_count, provisional_deadlines=sorted(inquiry.provisional_deadlines or ()),
    )


def _load(wf: Workflow, actor: Actor, inquiry_id: int) -> Inquiry:
    inquiry = wf.get_inquiry(inquiry_id)
    require_view_inquiry(actor, inquiry)
    return inquiry


@router.post("/inquiries", response_model=InquiryOut, status_code=201,
             summary="R6.1: supervision asks a unit to explain a case, a work order or its work")
def open_inquiry(body: InquiryIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> InquiryOut:
    wo = wf.get_work_order(body.work_order_id) if body.work_order_id is not None else None
    case = wf.get_case(body.case_number) if body.case_number else None
    unit = wf.unit_by_code(body.unit_code) if body.unit_code else None
    if wo is None and unit is None:
        raise InvalidInput("R6.1", "name the unit (unit_code) or the work order (work_order_id)")
    inquiry = wf.open_inquiry(actor, reason=body.reason, description=body.description, unit=unit, case=case,
                              work_order=wo, working_days=body.working_days)
    commit(session)
    return _out(inquiry, actor, domain.clock())


@router.get("/inquiries", response_model=list[InquiryOut],
            summary="Inquiries: a unit sees those into itself (its 问责/说明 tasks); supervision all")
def list_inquiries(
    actor: ActorDep, session: SessionDep, domain: DomainDep,
    status: InquiryStatus | None = None, unit: ShortText | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: OffsetQuery = 0,
) -> list[InquiryOut]:
    stmt = visible_inquiries(actor, select(Inquiry))
    if status is not None:
        stmt = stmt.where(Inquiry.status == status)
    if unit:
        stmt = stmt.join(MemberUnit, MemberUnit.id == Inquiry.unit_id).where(MemberUnit.code == unit)
    stmt = (stmt.order_by(Inquiry.explanation_due_at, Inquiry.id).limit(limit).offset(offset)
            .options(selectinload(Inquiry.unit), selectinload(Inquiry.case)))
    now = domain.clock()
    return [_out(i, actor, now) for i in session.execute(stmt).scalars()]


@router.get("/inquiries/counts", response_model=list[UnitInquiriesOut],
            summary="R6.1: open and decided inquiries per unit in [start, end), for the assessment")
def counts(actor: ActorDep, session: SessionDep, start: AwareDatetime, end: AwareDatetime) -> list[UnitInquiriesOut]:
    require_roles(actor, *INQUIRY_READERS, rule="R6.1", what="read every unit's inquiries")
    if not (FIRST_YEAR <= start.year <= LAST_YEAR and FIRST_YEAR <= end.year <= LAST_YEAR + 1) or end <= start:
        # the store's dates only: a moment outside overflows the database's date arithmetic
        raise InvalidInput("period", f"start before end, both from {FIRST_YEAR} to {LAST_YEAR}")
    rows = inquiry_counts(session, start, end)
    units = {u.id: u for u in session.execute(select(MemberUnit).where(MemberUnit.id.in_(rows))).scalars()}
    return [UnitInquiriesOut(unit_code=units[uid].code, unit_name=units[uid].name, opened=r.opened, open=r.open,
                             decided=r.decided, late_explanations=r.late_explanations, by_decision=r.by_decision)
            for uid, r in sorted(rows.items(), key=lambda kv: units[kv[0]].code)]


@router.get("/inquiries/{inquiry_id}", response_model=InquiryOut)
def get_inquiry(inquiry_id: IdPath, actor: ActorDep, wf: WorkflowDep, domain: DomainDep) -> InquiryOut:
    return _out(_load(wf, actor, inquiry_id), actor, domain.clock())


@router.post("/inquiries/{inquiry_id}/explanation", response_model=InquiryOut, summary="R6.1: the unit explains")
def explain(inquiry_id: IdPath, body: ExplanationIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep,
            domain: DomainDep) -> InquiryOut:
    inquiry = wf.explain_inquiry(actor, _load(wf, actor, inquiry_id), explanation=body.explanation)
    commit(session)
    return _out(inquiry, actor, domain.clock())


@router.post("/inquiries/{inquiry_id}/decision", response_model=InquiryOut,
             summary="R6.1 / Article 4 (过错问责): findings and the accountability decision; closes the inquiry")
def decide(inquiry_id: IdPath, body: InquiryDecisionIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep,
           domain: DomainDep) -> InquiryOut:
    inquiry = wf.decide_inquiry(actor, _load(wf, actor, inquiry_id), findings=body.findings, decision=body.decision)
    commit(session)
    return _out(inquiry, actor, domain.clock())


@router.post("/inquiries/{inquiry_id}/urge", status_code=201, summary="R7.7: urge the unit's explanation")
def urge(inquiry_id: IdPath, body: InquiryUrgeIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep) -> dict:
    notice = wf.urge_inquiry(actor, _load(wf, actor, inquiry_id), note=body.note)
    commit(session)
    return {"notification_id": notice.id, "recipient": notice.recipient_name, "message": notice.message}
