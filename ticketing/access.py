"""Who may see what: unit staff see the work orders their unit holds now and the case only through
them (R5.3), R7.3c content only the discipline commission (a filter must not reveal what the row
would hide), and nobody outside the center sees another citizen's data."""
from __future__ import annotations

from sqlalchemy import Select, exists, select

from ticketing.approval_model import ReportSubmission
from ticketing.audit import Actor
from ticketing.enums import Role, WorkOrderStatus
from ticketing.errors import Forbidden, NotFound
from ticketing.models import Case, MemberUnit, WorkOrder

CONFIDENTIAL_PLACEHOLDER = "【纪检监察件：内容仅纪委监察局可见】"
NOT_HELD_PLACEHOLDER = "【已退回或改派：内容不再可见】"
CENTER_READERS = frozenset({Role.FRONT_DESK, Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN})
# A unit no longer holds a work order it returned (R8.6) or that a re-dispatch cancelled.
NOT_HELD = (WorkOrderStatus.RETURNED, WorkOrderStatus.CANCELLED)


def holds(unit_id: int | None, wo: WorkOrder) -> bool:
    return wo.unit_id == unit_id and wo.status not in NOT_HELD


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
        return any(holds(actor.unit_id, wo) for wo in case.work_orders)
    return False


def case_content_placeholder(actor: Actor, case: Case) -> str | None:
    """None when the actor may read the case's content; else what stands in its place: R7.3c
    content for anyone but the commission, any content for a unit that no longer holds an order."""
    if not may_read_content(actor, case):
        return CONFIDENTIAL_PLACEHOLDER
    if not may_view(actor, case):
        return NOT_HELD_PLACEHOLDER
    return None


def require_view(actor: Actor, case: Case) -> None:
    if not may_view(actor, case):
        raise Forbidden("R5.3", f"case {case.number} is not dispatched to your unit")


def visible_cases(actor: Actor, stmt: Select) -> Select:
    """Narrow a case query to what the actor may list."""
    if actor.role in CENTER_READERS:
        return stmt
    if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE}:
        mine = exists().where(WorkOrder.case_id == Case.id, WorkOrder.unit_id == actor.unit_id,
                              WorkOrder.status.not_in(NOT_HELD))
        return stmt.where(mine)
    return stmt.where(Case.id.is_(None))


def by_caller(actor: Actor, stmt: Select, caller: str) -> Select:
    """The cases a phone number filed, as far as the actor may know: for anyone but the discipline
    commission, R7.3c reports are not among them (the filter would say who reported an official)."""
    stmt = stmt.where(Case.citizen_phone == caller)
    if actor.role != Role.DISCIPLINE:
        stmt = stmt.where(Case.confidential.is_(False))
    return stmt


def visible_work_orders(actor: Actor, stmt: Select) -> Select:
    if actor.role in CENTER_READERS:
        return stmt
    if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE}:
        return stmt.where(WorkOrder.unit_id == actor.unit_id)
    return stmt.where(WorkOrder.id.is_(None))


def may_approve_reports(actor: Actor, wo: WorkOrder) -> bool:
    """Article 5 (二) 6 (呈批), R5.3: a report back is approved by the leader of the unit that holds
    the work order, and by nobody else (not another unit's leader, not the center)."""
    return (actor.unit_leader and actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE}
            and holds(actor.unit_id, wo))


def require_approver(actor: Actor, wo: WorkOrder) -> None:
    if not may_approve_reports(actor, wo):
        raise Forbidden("R5.3", f"only the leader of the unit holding work order {wo.id} approves its report back")


def visible_approvals(actor: Actor, stmt: Select) -> Select:
    """Narrow a query over report submissions (joined to their work orders) to the ones the actor
    decides: their own unit's, for its leader only."""
    if not actor.unit_leader or actor.role not in {Role.UNIT_STAFF, Role.DISCIPLINE}:
        return stmt.where(ReportSubmission.id.is_(None))
    return stmt.where(WorkOrder.unit_id == actor.unit_id, WorkOrder.status.not_in(NOT_HELD))


def case_ids_for_unit(unit_id: int) -> Select:
    return select(WorkOrder.case_id).where(WorkOrder.unit_id == unit_id)


# ---- inquiries (R6.1) ------------------------------------------------------------------------
# Supervision opens and decides them; the back office reads them for the assessment (R5.2); a unit
# sees only the inquiries into itself. The front desk has no part in them.
INQUIRY_READERS = frozenset({Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN})


def may_view_inquiry(actor: Actor, inquiry) -> bool:
    if actor.role in INQUIRY_READERS:
        return True
    return actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE} and actor.unit_id == inquiry.unit_id


def require_view_inquiry(actor: Actor, inquiry) -> None:
    if not may_view_inquiry(actor, inquiry):
        raise Forbidden("R6.1", f"inquiry {inquiry.id} is not about your unit")


def visible_inquiries(actor: Actor, stmt: Select) -> Select:
    """Narrow an inquiry query to what the actor may list."""
    from ticketing.inquiry_model import Inquiry

    if actor.role in INQUIRY_READERS:
        return stmt
    if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE}:
        return stmt.where(Inquiry.unit_id == actor.unit_id)
    return stmt.where(Inquiry.id.is_(None))


def inquiry_case_placeholder(actor: Actor, inquiry) -> str | None:
    """What stands in for the case's content in an inquiry: None when the actor may read it; the
    same rule as the case itself (R7.3c, R5.3), so an inquiry is no way round it."""
    return None if inquiry.case is None else case_content_placeholder(actor, inquiry.case)


def may_read_explanation(actor: Actor, inquiry) -> bool:
    """R7.3c: a unit's explanation about a discipline case speaks of the case: like the case's own
    answer, it is the commission's alone (supervision's own description and findings are not)."""
    return inquiry.case is None or may_read_content(actor, inquiry.case)


# ---- figures (issue 12: statistics, assessment) ------------------------------------------------
# The back office keeps the statistics, supervision reads everything (R5.2, R6.1); a member unit
# reads its own unit's figures and no other's, nor the hotline's totals; the front desk reads none.
FIGURE_READERS = frozenset({Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN})


def figures_unit(actor: Actor, unit_id: int | None) -> int | None:
    """The unit whose figures the actor reads when asking for `unit_id` (None: the totals): the
    one asked for at the center; a unit's own, whatever it asked for unless another (Forbidden)."""
    if actor.role in FIGURE_READERS:
        return unit_id
    if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE} and actor.unit_id is not None:
        if unit_id is not None and unit_id != actor.unit_id:
            raise Forbidden("R5.3", "a member unit reads its own figures only")
        return actor.unit_id
    raise Forbidden("R5.2", f"a {actor.role} reads no statistics (back office, supervision and units do)")


def figures_unit_code(session, actor: Actor, code: str | None) -> str | None:
    """`figures_unit` by member unit code: the code whose figures the actor reads when asking for
    `code` (None: the totals). An unknown code is NotFound, asked by anyone."""
    asked = None
    if code is not None:
        asked = session.execute(select(MemberUnit.id).where(MemberUnit.code == code)).scalar_one_or_none()
        if asked is None:
            raise NotFound("member unit", code[:64])
    unit_id = figures_unit(actor, asked)
    if unit_id is None or unit_id == asked:
        return code if unit_id is not None else None
    return session.execute(select(MemberUnit.code).where(MemberUnit.id == unit_id)).scalar_one()


def require_center_figures(actor: Actor) -> None:
    """Figures of the whole hotline only (the calls, every unit's): the center and supervision."""
    if actor.role not in FIGURE_READERS:
        raise Forbidden("R5.2", "the hotline's own figures are for the back office and supervision")



# ---- hot topics (R7.6, ticketing.hot_topics) ------------------------------------------------------
# The back office watches them and publishes their public answers (R5.2 publish); supervision reads
# (R6.1). Nobody else: the topics point at cases and at the streets where people called from.
HOT_TOPIC_READERS = frozenset({Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN})


def require_hot_topic_reader(actor: Actor) -> None:
    if actor.role not in HOT_TOPIC_READERS:
        raise Forbidden("R5.2", "hot topics are for the back office and supervision")


def require_hot_topic_publisher(actor: Actor) -> None:
    if actor.role != Role.BACK_OFFICE:
        raise Forbidden("R5.2", "the back office publishes the answers to hot topics")
