"""The center's operations on cases (R3, R7)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from sqlalchemy import func, select

from callcenter.api.deps import (
    ActorDep,
    DomainDep,
    OffsetQuery,
    SessionDep,
    WorkflowDep,
    commit,
    require_roles,
)
from callcenter.api.schemas import (
    AnswerIn,
    CallbackIn,
    CaseIn,
    CaseOut,
    CloseIn,
    ConsentIn,
    DispatchIn,
    EscalateIn,
    EventOut,
    IntakeIn,
    LiveOutcomeIn,
    PublicationOut,
    PublishIn,
    RejectIn,
)
from callcenter.api.views import case_out
from ticketing.access import by_caller, may_read_content, require_view, visible_cases
from ticketing.audit import Actor
from ticketing.enums import CaseKind, CaseStatus, DispatchMode, Role
from ticketing.errors import Forbidden, InvalidInput
from ticketing.models import AuditEvent, Case
from ticketing.numbering import normalize_case_number
from ticketing.workflow import Workflow

router = APIRouter(prefix="/cases", tags=["cases"])


def _load(wf: Workflow, actor: Actor, number: str) -> Case:
    normalized = normalize_case_number(number)
    if normalized is None:
        raise InvalidInput("case_number", f"'{number[:40]}' is not a case number (e.g. 20261125-000123)")
    case = wf.get_case(normalized)
    require_view(actor, case)
    return case


def _out(case: Case, actor: Actor, domain) -> CaseOut:
    unit_view = actor.unit_id if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE} else None
    return case_out(case, actor, domain.clock(), unit_view=unit_view)


@router.post("", response_model=CaseOut, status_code=status.HTTP_201_CREATED,
             summary="Accept a request from any channel (R7.1); optionally refuse it at once (R3.1)")
def create_case(body: CaseIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> CaseOut:
    case = wf.accept(actor, kind=body.kind, channel=body.channel, title=body.title, description=body.description,
                     citizen_name=body.citizen_name, citizen_phone=body.citizen_phone,
                     citizen_id_number=body.citizen_id_number, location=body.location,
                     category_code=body.category_code)
    if body.reject is not None and body.dispatch is not None:
        raise InvalidInput("R3.1", "a request is either refused or dispatched, not both")
    if body.reject is not None:
        wf.reject(actor, case, reason=body.reject.reason, referral=body.reject.referral)
    if body.dispatch is not None:
        _dispatch(wf, actor, case, body.dispatch)
    commit(session)
    return _out(case, actor, domain)


class CaseFilters:
    """The case list's filters: GET /cases and its CSV export (/exports/cases.csv) take the same."""

    def __init__(
        self,
        status_: Annotated[CaseStatus | None, Query(alias="status")] = None,
        kind: CaseKind | None = None,
        caller: Annotated[str | None, Query(max_length=40, pattern=r"^[0-9+\-]*$")] = None,
        overdue: bool = False,
        callback_manual: bool | None = None,
    ) -> None:
        self.status, self.kind, self.caller = status_, kind, caller
        self.overdue, self.callback_manual = overdue, callback_manual

    def select(self, actor: Actor, stmt, now):
        """`stmt` (over cases) narrowed to what the actor may list and the filters ask for."""
        stmt = visible_cases(actor, stmt)
        if self.status is not None:
            stmt = stmt.where(Case.status == self.status)
        if self.kind is not None:
            stmt = stmt.where(Case.kind == self.kind)
        if self.caller:
            stmt = by_caller(actor, stmt, self.caller)
        if self.overdue:
            stmt = stmt.where(Case.status == CaseStatus.DISPATCHED, Case.deadline_at < now)
        if self.callback_manual is not None:
            stmt = stmt.where(Case.callback_manual.is_(self.callback_manual))
        return stmt

    def as_dict(self) -> dict:
        # the caller's number is personal data: the audit record says a number was given, not which
        return {"status": self.status, "kind": self.kind, "caller": "given" if self.caller else None,
                "overdue": self.overdue or None, "callback_manual": self.callback_manual}


@router.get("", response_model=list[CaseOut], summary="List cases the caller may see")
def list_cases(
    actor: ActorDep, session: SessionDep, domain: DomainDep,
    filters: Annotated[CaseFilters, Depends()],
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: OffsetQuery = 0,
) -> list[CaseOut]:
    stmt = filters.select(actor, select(Case), domain.clock())
    stmt = stmt.order_by(Case.id.desc()).limit(limit).offset(offset)
    return [_out(c, actor, domain) for c in session.execute(stmt).scalars()]


@router.get("/count", summary="Counts by status (R7.3c cases count like any other)")
def count_cases(actor: ActorDep, session: SessionDep) -> dict[str, int]:
    rows = session.execute(visible_cases(actor, select(Case.status, func.count()).group_by(Case.status)))
    return {str(s.value if hasattr(s, "value") else s): n for s, n in rows}


@router.get("/{number}", response_model=CaseOut)
def get_case(number: str, actor: ActorDep, wf: WorkflowDep, domain: DomainDep) -> CaseOut:
    return _out(_load(wf, actor, number), actor, domain)


@router.get("/{number}/events", response_model=list[EventOut], summary="The case's audit trail (A1)")
def case_events(number: str, actor: ActorDep, wf: WorkflowDep, session: SessionDep) -> list[EventOut]:
    case = _load(wf, actor, number)
    if actor.role == Role.UNIT_STAFF:
        raise Forbidden("A1", "the full audit trail is for the center, supervision and discipline")
    rows = session.execute(select(AuditEvent).where(AuditEvent.case_id == case.id).order_by(AuditEvent.id)).scalars()
    show_data = may_read_content(actor, case)
    return [EventOut(id=e.id, at=e.at, actor=e.actor_name, role=e.actor_role, action=e.action,
                     work_order_id=e.work_order_id, channel=e.channel, call_id=e.call_id,
                     data=e.data if show_data else {}) for e in rows]


@router.post("/{number}/take", response_model=CaseOut, summary="R4.1: become the case's first-contact operator")
def take(number: str, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> CaseOut:
    case = wf.take_ownership(actor, _load(wf, actor, number))
    commit(session)
    return _out(case, actor, domain)


@router.post("/{number}/intake", response_model=CaseOut,
             summary="R7.1/R2.2: complete a new case's request (a fax arrives with only its PDF)")
def complete_intake(number: str, body: IntakeIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep,
                    domain: DomainDep) -> CaseOut:
    case = wf.complete_intake(actor, _load(wf, actor, number), **body.model_dump())
    commit(session)
    return _out(case, actor, domain)


@router.post("/{number}/reject", response_model=CaseOut, summary="R3.1/R3.2: not accepted, with reason and referral")
def reject(number: str, body: RejectIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> CaseOut:
    case = wf.reject(actor, _load(wf, actor, number), reason=body.reason, referral=body.referral,
                     expected_version=body.expected_version)
    commit(session)
    return _out(case, actor, domain)


@router.post("/{number}/answer", response_model=CaseOut, summary="R7.2: answer directly, rating recorded on the spot")
def answer(number: str, body: AnswerIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> CaseOut:
    case = wf.answer_directly(actor, _load(wf, actor, number), answer=body.answer, satisfaction=body.satisfaction,
                              knowledge_entry_id=body.knowledge_entry_id, expected_version=body.expected_version)
    commit(session)
    return _out(case, actor, domain)


@router.post("/{number}/escalate", response_model=CaseOut, summary="R7.3: hand to the back office (3 days to dispatch)")
def escalate(number: str, body: EscalateIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> CaseOut:
    case = wf.escalate(actor, _load(wf, actor, number), note=body.note, expected_version=body.expected_version)
    commit(session)
    return _out(case, actor, domain)


@router.post("/{number}/consent", response_model=CaseOut, summary="R7.3f: disclaimer read, citizen's consent to a paid service")
def consent(number: str, body: ConsentIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> CaseOut:
    case = wf.record_convenience_consent(actor, _load(wf, actor, number), disclaimer_read=body.disclaimer_read,
                                         consent=body.consent)
    commit(session)
    return _out(case, actor, domain)


@router.post("/{number}/dispatch", response_model=CaseOut,
             summary="R7.3: work order, three-way call or transfer; to one unit, a lead with co-units, or several")
def dispatch(number: str, body: DispatchIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> CaseOut:
    case = _load(wf, actor, number)
    _dispatch(wf, actor, case, body)
    commit(session)
    return _out(case, actor, domain)


def _dispatch(wf: Workflow, actor: Actor, case: Case, body: DispatchIn) -> None:
    """Units and mode as given, or else from the case category's routing rule (config/categories.yaml)."""
    units, mode, lead = body.units, body.mode, body.lead
    if units is None:
        category = wf.category(case.category_code)
        if category is None:
            raise InvalidInput("R7.3", "name the units: the case has no category whose routing rule could choose them")
        units = list(category.route.units)
        lead = lead if lead is not None else category.route.lead
        if mode is None:
            mode = DispatchMode.WORK_ORDER if category.route.mode == "discipline" else DispatchMode(category.route.mode)
    wf.dispatch(actor, case, units=units, mode=mode or DispatchMode.WORK_ORDER, lead=lead,
                instructions=body.instructions, expected_version=body.expected_version, version_required=True)


@router.post("/{number}/live-outcome", response_model=CaseOut,
             summary="R7.4: the operator rates a three-way call or transfer; no callback follows")
def live_outcome(number: str, body: LiveOutcomeIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> CaseOut:
    case = wf.record_live_outcome(actor, _load(wf, actor, number), answer=body.answer,
                                  satisfaction=body.satisfaction, expected_version=body.expected_version)
    commit(session)
    return _out(case, actor, domain)


@router.post("/{number}/callback", response_model=CaseOut, summary="R7.4: result of the 回访 call")
def callback(number: str, body: CallbackIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> CaseOut:
    case = wf.record_callback(actor, _load(wf, actor, number), satisfaction=body.satisfaction, note=body.note,
                              expected_version=body.expected_version)
    commit(session)
    return _out(case, actor, domain)


@router.post("/{number}/close", response_model=CaseOut, summary="R7.5: close, or close provisionally (back office)")
def close(number: str, body: CloseIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> CaseOut:
    case = wf.close(actor, _load(wf, actor, number), provisional=body.provisional, note=body.note,
                    expected_version=body.expected_version, version_required=True)
    commit(session)
    return _out(case, actor, domain)


@router.get("/{number}/publication", response_model=PublicationOut,
            summary="R7.6: the suggested public summary and answer, personal data replaced, and what was found")
def publication(number: str, actor: ActorDep, wf: WorkflowDep) -> PublicationOut:
    require_roles(actor, Role.BACK_OFFICE, rule="R5.2", what="prepare publications")
    return PublicationOut(**wf.publication(_load(wf, actor, number)))


@router.post("/{number}/publish", response_model=CaseOut, summary="R7.6: publish a handled case, personal data removed")
def publish(number: str, body: PublishIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep, domain: DomainDep) -> CaseOut:
    case = wf.publish(actor, _load(wf, actor, number), public_summary=body.public_summary,
                      public_answer=body.public_answer)
    commit(session)
    return _out(case, actor, domain)
