"""Member units, their duty roster (R5.3, R9.1), categories and the knowledge base (R7.2)."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime
from sqlalchemy import or_, select

from callcenter.api.deps import ActorDep, DomainDep, IdPath, SessionDep, commit, require_roles
from callcenter.api.schemas import CategoryOut, KnowledgeIn, KnowledgeOut, RosterIn, RosterOut, UnitOut
from ticketing import audit
from ticketing.enums import Role, UnitType
from ticketing.errors import Forbidden, NotFound
from ticketing.models import KnowledgeEntry, MemberUnit, RosterEntry
from ticketing.roster import change_duty, on_duty

router = APIRouter(tags=["units"])


def _unit(session, code: str) -> MemberUnit:
    unit = session.execute(select(MemberUnit).where(MemberUnit.code == code)).scalar_one_or_none()
    if unit is None:
        raise NotFound("member unit", code)
    return unit


def _roster_out(r: RosterEntry) -> RosterOut:
    return RosterOut(duty=r.duty, name=r.name, phone=r.phone, valid_from=r.valid_from, valid_to=r.valid_to,
                     reported_at=r.reported_at, report_due_at=r.report_due_at, reported_late=r.reported_late)


@router.get("/units", response_model=list[UnitOut])
def list_units(actor: ActorDep, session: SessionDep, type: UnitType | None = None) -> list[UnitOut]:
    stmt = select(MemberUnit).order_by(MemberUnit.id)
    if type:
        stmt = stmt.where(MemberUnit.type == type)
    return [UnitOut(code=u.code, name=u.name, type=u.type, joined=u.joined, phone=u.phone)
            for u in session.execute(stmt).scalars()]


@router.get("/units/{code}", response_model=UnitOut, summary="A unit with who is on duty now (or at ?at=)")
def get_unit(code: str, actor: ActorDep, session: SessionDep, domain: DomainDep, at: AwareDatetime | None = None) -> UnitOut:
    unit = _unit(session, code)
    duty = on_duty(session, unit.id, at or domain.clock())
    return UnitOut(code=unit.code, name=unit.name, type=unit.type, joined=unit.joined, phone=unit.phone,
                   on_duty=[_roster_out(r) for r in sorted(duty.values(), key=lambda r: str(r.duty))])


@router.get("/units/{code}/roster", response_model=list[RosterOut], summary="R9.1: the roster's history")
def roster_history(code: str, actor: ActorDep, session: SessionDep) -> list[RosterOut]:
    unit = _unit(session, code)
    rows = session.execute(select(RosterEntry).where(RosterEntry.unit_id == unit.id)
                           .order_by(RosterEntry.valid_from, RosterEntry.id)).scalars()
    return [_roster_out(r) for r in rows]


@router.post("/units/{code}/roster", response_model=RosterOut, status_code=201,
             summary="R9.1: report a change of leader or A/B staff (late after 2 working days)")
def report_roster_change(code: str, body: RosterIn, actor: ActorDep, session: SessionDep, domain: DomainDep) -> RosterOut:
    unit = _unit(session, code)
    entry = change_duty(session, actor, unit, duty=body.duty, name=body.name, phone=body.phone,
                        effective_from=body.effective_from, now=domain.clock(), calendar=domain.calendar,
                        policy=domain.policy)
    commit(session)
    return _roster_out(entry)


@router.get("/categories", response_model=list[CategoryOut], summary="Case categories and their routing rules")
def categories(actor: ActorDep, domain: DomainDep, kind: str | None = None) -> list[CategoryOut]:
    return [CategoryOut(code=c.code, name=c.name, kinds=list(c.kinds), mode=c.route.mode, units=list(c.route.units),
                        lead=c.route.lead) for c in domain.city.categories if kind is None or kind in c.kinds]


def _kb_out(e: KnowledgeEntry) -> KnowledgeOut:
    return KnowledgeOut(id=e.id, unit_code=e.unit.code, unit_name=e.unit.name, question=e.question, answer=e.answer,
                        keywords=e.keywords, category_code=e.category_code, updated_at=e.updated_at)


@router.get("/knowledge", response_model=list[KnowledgeOut], summary="R7.2: search the knowledge base")
def search_knowledge(actor: ActorDep, session: SessionDep,
                     q: Annotated[str | None, Query(max_length=100)] = None,
                     unit: str | None = None, category: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[KnowledgeOut]:
    stmt = select(KnowledgeEntry).where(KnowledgeEntry.active.is_(True))
    if q:
        like = f"%{q}%"
        stmt = stmt.where(or_(KnowledgeEntry.question.like(like), KnowledgeEntry.answer.like(like),
                              KnowledgeEntry.keywords.like(like)))
    if unit:
        stmt = stmt.where(KnowledgeEntry.unit_id == _unit(session, unit).id)
    if category:
        stmt = stmt.where(KnowledgeEntry.category_code == category)
    return [_kb_out(e) for e in session.execute(stmt.order_by(KnowledgeEntry.id).limit(limit)).scalars()]


def _kb_writer(actor, unit: MemberUnit) -> None:
    """R5.3: a unit keeps its own entries; the back office may fix any."""
    if actor.role == Role.BACK_OFFICE:
        return
    if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE} and actor.unit_id == unit.id:
        return
    raise Forbidden("R5.3", "knowledge-base entries are kept by their own unit")


@router.post("/units/{code}/knowledge", response_model=KnowledgeOut, status_code=201)
def add_knowledge(code: str, body: KnowledgeIn, actor: ActorDep, session: SessionDep, domain: DomainDep) -> KnowledgeOut:
    unit = _unit(session, code)
    _kb_writer(actor, unit)
    now = domain.clock()
    entry = KnowledgeEntry(unit_id=unit.id, question=body.question, answer=body.answer, keywords=body.keywords,
                           category_code=body.category_code, updated_at=now, updated_by_id=actor.user_id)
    session.add(entry)
    session.flush()
    audit.record(session, actor, "knowledge_add", at=now, data={"entry": entry.id, "unit": unit.code})
    commit(session)
    session.refresh(entry)
    return _kb_out(entry)


@router.put("/knowledge/{entry_id}", response_model=KnowledgeOut)
def update_knowledge(entry_id: IdPath, body: KnowledgeIn, actor: ActorDep, session: SessionDep, domain: DomainDep) -> KnowledgeOut:
    entry = session.get(KnowledgeEntry, entry_id)
    if entry is None:
        raise NotFound("knowledge entry", entry_id)
    _kb_writer(actor, entry.unit)
    now = domain.clock()
    entry.question, entry.answer, entry.keywords, entry.category_code = body.question, body.answer, body.keywords, body.category_code
    entry.updated_at, entry.updated_by_id = now, actor.user_id
    audit.record(session, actor, "knowledge_update", at=now, data={"entry": entry.id, "unit": entry.unit.code})
    commit(session)
    return _kb_out(entry)


@router.delete("/knowledge/{entry_id}", status_code=204)
def retire_knowledge(entry_id: IdPath, actor: ActorDep, session: SessionDep, domain: DomainDep) -> None:
    entry = session.get(KnowledgeEntry, entry_id)
    if entry is None:
        raise NotFound("knowledge entry", entry_id)
    _kb_writer(actor, entry.unit)
    entry.active = False
    audit.record(session, actor, "knowledge_retire", at=domain.clock(), data={"entry": entry.id})
    commit(session)


__all__ = ["router", "require_roles"]
