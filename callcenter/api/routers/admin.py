"""Users, the audit chain (A1) and unit assessment (R5.2, R6.1)."""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import AwareDatetime
from sqlalchemy import case as when
from sqlalchemy import func, select

from callcenter.api.deps import ActorDep, DomainDep, SessionDep, commit, require_roles
from callcenter.api.schemas import UserIn, UserOut, VerifyOut
from callcenter.auth import create_user
from ticketing import audit
from ticketing.enums import Role, Satisfaction, WorkOrderRole
from ticketing.models import Case, MemberUnit, User, WorkOrder

router = APIRouter(tags=["administration"])


def _user_out(u: User) -> UserOut:
    return UserOut(id=u.id, username=u.username, display_name=u.display_name, role=u.role,
                   unit_code=u.unit.code if u.unit else None, active=u.active, operator_extension=u.operator_extension)


@router.post("/users", response_model=UserOut, status_code=201)
def add_user(body: UserIn, actor: ActorDep, session: SessionDep, domain: DomainDep) -> UserOut:
    require_roles(actor, Role.ADMIN, rule="users", what="manage users")
    user = create_user(session, username=body.username, password=body.password, role=body.role,
                       display_name=body.display_name, unit_code=body.unit_code,
                       operator_extension=body.operator_extension, now=domain.clock(), created_by=actor)
    commit(session)
    session.refresh(user)
    return _user_out(user)


@router.get("/users", response_model=list[UserOut])
def list_users(actor: ActorDep, session: SessionDep) -> list[UserOut]:
    require_roles(actor, Role.ADMIN, Role.BACK_OFFICE, Role.SUPERVISOR, rule="users", what="list users")
    return [_user_out(u) for u in session.execute(select(User).order_by(User.id)).scalars()]


@router.get("/audit/verify", response_model=VerifyOut, summary="A1: check the whole event chain")
def verify_audit(actor: ActorDep, session: SessionDep) -> VerifyOut:
    require_roles(actor, Role.ADMIN, Role.SUPERVISOR, Role.BACK_OFFICE, rule="A1", what="verify the audit log")
    report = audit.verify(session)
    return VerifyOut(ok=report.ok, checked=report.checked, problems=report.problems)


@router.get("/assessment", summary="R5.2/R6.1: units scored on timeliness and satisfaction (R7.3c cases excluded)")
def assessment(actor: ActorDep, session: SessionDep, since: AwareDatetime | None = None,
               until: AwareDatetime | None = None) -> list[dict]:
    require_roles(actor, Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN, rule="R5.2", what="see the assessment")
    stmt = (
        select(
            MemberUnit.code, MemberUnit.name,
            func.count(WorkOrder.id),
            func.sum(when((WorkOrder.notify_met.is_(True), 1), else_=0)),
            func.sum(when((WorkOrder.notify_met.is_(False), 1), else_=0)),
            func.sum(when((WorkOrder.report_met.is_(True), 1), else_=0)),
            func.sum(when((WorkOrder.report_met.is_(False), 1), else_=0)),
            func.sum(when((Case.satisfaction == Satisfaction.SATISFIED, 1), else_=0)),
            func.sum(when((Case.satisfaction == Satisfaction.BASICALLY_SATISFIED, 1), else_=0)),
            func.sum(when((Case.satisfaction == Satisfaction.UNSATISFIED, 1), else_=0)),
        )
        .join(WorkOrder, WorkOrder.unit_id == MemberUnit.id)
        .join(Case, Case.id == WorkOrder.case_id)
        .where(Case.assessed.is_(True), WorkOrder.role != WorkOrderRole.CO_UNIT)
        .group_by(MemberUnit.code, MemberUnit.name)
        .order_by(MemberUnit.code)
    )
    if since is not None:
        stmt = stmt.where(WorkOrder.dispatched_at >= since)
    if until is not None:
        stmt = stmt.where(WorkOrder.dispatched_at < until)
    out = []
    for code, name, total, n_ok, n_late, r_ok, r_late, sat, basic, unsat in session.execute(stmt):
        rated = (sat or 0) + (basic or 0) + (unsat or 0)
        out.append({
            "unit": code, "name": name, "work_orders": total,
            "notified_on_time": n_ok or 0, "notified_late": n_late or 0,
            "reported_on_time": r_ok or 0, "reported_late": r_late or 0,
            "satisfied": sat or 0, "basically_satisfied": basic or 0, "unsatisfied": unsat or 0,
            "satisfaction_rate": round(((sat or 0) + (basic or 0)) / rated, 4) if rated else None,
        })
    return out
