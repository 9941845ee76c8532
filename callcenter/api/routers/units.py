"""Member units, their duty roster (R5.3, R9.1) and categories (the knowledge base: routers/knowledge.py)."""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import AwareDatetime
from sqlalchemy import select

from callcenter.api.deps import ActorDep, DomainDep, SessionDep, commit, require_roles
from callcenter.api.schemas import CategoryOut, RosterIn, RosterOut, UnitOut
from ticketing.enums import UnitType
from ticketing.errors import NotFound
from ticketing.models import MemberUnit, RosterEntry
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


__all__ = ["router", "require_roles"]
