"""Who may see what: unit staff see their own unit's work orders, R7.3c content only the
discipline commission, and nobody outside the center sees another citizen's data."""
from __future__ import annotations

from sqlalchemy import Select, exists, select

from ticketing.audit import Actor
from ticketing.enums import Role
from ticketing.errors import Forbidden
from ticketing.models import Case, WorkOrder

CONFIDENTIAL_PLACEHOLDER = "【纪检监察件：内容仅纪委监察局可见】"
CENTER_READERS = frozenset({Role.FRONT_DESK, Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN})


def may_read_content(actor: Actor, case: Case) -> bool:
    """R7.3c: an economic report's content is for the discipline commission alone."""
    if case.confidential:
        return actor.role == Role.DISCIPLINE
    return True


def may_view(actor: Actor, case: Case) -> bool:
    if actor.role in CENTER_READERS or actor.role == Role.SYSTEM:
        return True
    if actor.role == Role.DISCIPLINE and case.confidential:
        return True
    if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE}:
        return any(wo.unit_id == actor.unit_id for wo in case.work_orders)
    return False


def require_view(actor: Actor, case: Case) -> None:
    if not may_view(actor, case):
        raise Forbidden("R5.3", f"case {case.number} is not dispatched to your unit")


def visible_cases(actor: Actor, stmt: Select) -> Select:
    """Narrow a case query to what the actor may list."""
    if actor.role in CENTER_READERS:
        return stmt
    if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE}:
        mine = exists().where(WorkOrder.case_id == Case.id, WorkOrder.unit_id == actor.unit_id)
        return stmt.where(mine)
    return stmt.where(Case.id.is_(None))


def visible_work_orders(actor: Actor, stmt: Select) -> Select:
    if actor.role in CENTER_READERS:
        return stmt
    if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE}:
        return stmt.where(WorkOrder.unit_id == actor.unit_id)
    return stmt.where(WorkOrder.id.is_(None))


def case_ids_for_unit(unit_id: int) -> Select:
    return select(WorkOrder.case_id).where(WorkOrder.unit_id == unit_id)
