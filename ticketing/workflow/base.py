"""What every step of the procedure shares: who may act, the case's state and version, the audit
event (A1), the deadlines (ticketing.deadlines), notices to units. The steps themselves are in
intake.py, dispatch.py, unit_orders.py and closing.py; `ticketing.workflow.Workflow` puts them together.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from ticketing import audit
from ticketing.audit import Actor
from ticketing.deadlines import Deadlines, Due, due_values, read_due
from ticketing.enums import (
    CaseStatus,
    Role,
    Satisfaction,
    WorkOrderRole,
    WorkOrderStatus,
)
from ticketing.errors import DomainError, Forbidden, InvalidInput, NotFound
from ticketing.models import Case, MemberUnit, UnitNotification, WorkOrder
from ticketing.roster import on_duty
from ticketing.writer import Changes, IdOf, apply, attached

Clock = Callable[[], datetime]

CENTER_ROLES = frozenset({Role.FRONT_DESK, Role.BACK_OFFICE})
UNIT_ROLES = frozenset({Role.UNIT_STAFF, Role.DISCIPLINE})
ANSWERING_ROLES = frozenset({WorkOrderRole.SOLE, WorkOrderRole.LEAD, WorkOrderRole.INDEPENDENT})
RATED = frozenset({Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED, Satisfaction.UNSATISFIED})

# R7.3c: what the operator reads to the citizen.
DISCIPLINE_MESSAGE = "您反映的问题已转交纪委监察局办理，您也可以直接拨打12388与纪委监察局联系。"
# R7.3f: the disclaimer that must be read before a convenience-service transfer.
CONVENIENCE_DISCLAIMER = "便民服务中心提供的生活服务可能收费，服务质量由提供方负责，12345热线不承担责任。是否同意为您转接？"


# R7.3c: the free text of an action on a confidential case, kept out of the shared log (`event_on`).
CONFIDENTIAL_TEXT = frozenset({"answer", "description", "title", "note", "reason", "explanation", "findings"})

_UNITS = MemberUnit.__table__
_UNIT_BY_CODE = select(*_UNITS.c).where(_UNITS.c.code == bindparam("code"))
_UNITS_BY_CODE = select(*_UNITS.c).where(_UNITS.c.code.in_(bindparam("codes", expanding=True)))
def utcnow() -> datetime:
    return datetime.now(UTC)


def _provisional_note(row: Any) -> dict[str, Any]:
    """Audit data saying which of a row's deadlines are provisional (T1); nothing when none is."""
    marks = row.provisional_deadlines
    return {"provisional": sorted(marks)} if marks else {}


def _require_role(actor: Actor, allowed: Iterable[Role], rule: str, what: str) -> None:
    if actor.role not in {r.value for r in allowed}:
        raise Forbidden(rule, f"a {actor.role} may not {what}")


SYSTEM_ACTOR = audit.SYSTEM


class WorkflowBase:
    """The session, rules and clock every step uses, and the checks they share."""

    def __init__(
        self,
        session: Session,
        *,
        calendar,
        policy,
        categories: Mapping[str, Any] | None = None,
        clock: Clock = utcnow,
    ):
        self.session = session
        self.calendar = calendar
        self.policy = policy
        self.categories = categories or {}
        self.clock = clock
        self.deadlines = Deadlines(policy, calendar)

    # ---- helpers -------------------------------------------------------------------------
    def now(self) -> datetime:
        now = self.clock()
        if now.tzinfo is None:
            raise ValueError("the clock must return aware datetimes")
        return now

    # ---- decide, then apply: an operation checks, decides its `Changes`, and `_apply`s them ----
    def _log(self, ch: Changes, actor: Actor, action: str, case: Case | None = None, wo: WorkOrder | None = None,
             *, channel: str | None = None, call_id: int | None = None, **data: Any) -> None:
        """The audit event (A1) of an action on `case` or `wo`, decided now, appended by `_apply`."""
        fields = self.event(case, wo, channel=channel, call_id=call_id, **data)
        if case is not None and case.id is None:  # rows this decision creates: their ids once written
            fields["case_id"] = IdOf(case)
        if wo is not None and wo.id is None:
            fields["work_order_id"] = IdOf(wo)
        ch.event(actor, action, fields)

    def _apply(self, ch: Changes) -> None:
        apply(self.session, ch)

    def event(self, case: Case | None = None, wo: WorkOrder | None = None, *, channel: str | None = None,
              call_id: int | None = None, **data: Any) -> dict[str, Any]:
        """An audit event's fields (audit.record's keywords) for an action on `case` or `wo`, now."""
        return self.event_on(case.id if case is not None else (wo.case_id if wo is not None else None),
                             wo.id if wo is not None else None, confidential=case is not None and case.confidential,
                             channel=channel, call_id=call_id, data=data)

    def event_on(self, case_id: int | None, work_order_id: int | None = None, *, confidential: bool = False,
                 channel: str | None = None, call_id: int | None = None,
                 data: dict[str, Any] | None = None) -> dict[str, Any]:
        """`event` by ids (the case need not be an object)."""
        data = data or {}
        if confidential:
            # R7.3c: content stays out of the shared log; only the fact of the action is kept.
            data = {k: v for k, v in data.items() if k not in CONFIDENTIAL_TEXT}
        return {"at": self.now(), "case_id": case_id, "work_order_id": work_order_id,
                "data": data, "channel": channel, "call_id": call_id}

    def _touch(self, ch: Changes, case: Case) -> None:
        # Every operation bumps the case's version, so two concurrent writers cannot both win
        # (written even when the clock reads the same: `apply` writes every decided column).
        ch.set(case, updated_at=self.now())

    @staticmethod
    def _due(ch: Changes, row: Any, column: str, due: Due | None) -> None:
        """`row.<column>` is `due`, its provisional marker kept in step (ticketing.deadlines)."""
        ch.set(row, **due_values(ch.value(row, "provisional_deadlines"), column, due))

    def _check_version(self, case: Case, expected_version: int | None, *, required_for: str | None = None) -> None:
        """A1: the client acted on `expected_version`; a case that moved on since is a Conflict (409).
        ``required_for`` names a step that must not apply twice (issue 11 §7: re-dispatch, close,
        report): without a version it is refused (422 naming the field), so a repeated or concurrent
        request cannot pass unchecked."""
        if expected_version is None and required_for is not None:
            raise InvalidInput("expected_version", f"{required_for} on case {case.number} must send expected_version, "
                                                   f"the case version you acted on (now {case.version})")
        if expected_version is not None and case.version != expected_version:
            from ticketing.errors import Conflict

            raise Conflict(
                f"case {case.number} is at version {case.version}, you acted on version {expected_version}; reload it"
            )

    def _check_owner(self, actor: Actor, case: Case, what: str) -> None:
        """R4.1: the first-contact operator owns the case; other front-desk operators may not act."""
        if actor.role == Role.FRONT_DESK and case.owner_id is not None and case.owner_id != actor.user_id:
            raise Forbidden("R4.1", f"case {case.number} is owned by another operator; only its owner or the back office may {what}")

    def _status(self, case: Case, allowed: Iterable[CaseStatus], rule: str, what: str) -> None:
        if case.status not in set(allowed):
            raise DomainError(rule, f"cannot {what}: case {case.number} is {case.status}")

    def unit_by_code(self, code: str) -> MemberUnit:
        return self.units_by_code([code])[0]

    def units_by_code(self, codes: list[str]) -> list[MemberUnit]:
        """The units, in the order given; one query (Core: the ORM's loading costs more than it)."""
        conn = self.session.connection()
        rows = (conn.execute(_UNIT_BY_CODE, {"code": codes[0]}) if len(codes) == 1
                else conn.execute(_UNITS_BY_CODE, {"codes": codes})).mappings()
        found = {row["code"]: attached(self.session, MemberUnit, row) for row in rows}
        for code in codes:
            if code not in found:
                raise InvalidInput("R3.1", f"unknown member unit '{code}'")
        return [found[code] for code in codes]

    def get_case(self, number_or_id: str | int) -> Case:
        if isinstance(number_or_id, int):
            case = self.session.get(Case, number_or_id)
        else:
            case = self.session.execute(select(Case).where(Case.number == number_or_id)).scalar_one_or_none()
        if case is None:
            raise NotFound("case", number_or_id)
        return case

    def get_work_order(self, wo_id: int) -> WorkOrder:
        # With its case in the same statement: one snapshot, so a step taken on a work order that
        # changed meanwhile fails on the case's version instead of applying twice (issue 11 §7).
        wo = self.session.get(WorkOrder, wo_id, options=[joinedload(WorkOrder.case)])
        if wo is None:
            raise NotFound("work order", wo_id)
        return wo

    def category(self, code: str | None):
        if code is None:
            return None
        cat = self.categories.get(code)
        if cat is None:
            raise InvalidInput("R2.1", f"unknown case category '{code}'")
        return cat

    def _answering(self, case: Case, *, include_reported: bool = True, ch: Changes | None = None,
                   work_orders: list[WorkOrder] | None = None) -> list[WorkOrder]:
        """The case's answering work orders (statuses as `ch` decided them; `work_orders`: the
        case's as decided, when it adds some)."""
        status = (lambda wo: ch.value(wo, "status")) if ch is not None else (lambda wo: wo.status)
        current = [wo for wo in (case.work_orders if work_orders is None else work_orders)
                   if status(wo) != WorkOrderStatus.CANCELLED and status(wo) != WorkOrderStatus.RETURNED]
        out = [wo for wo in current if wo.role in ANSWERING_ROLES]
        if not include_reported:
            out = [wo for wo in out if status(wo) != WorkOrderStatus.REPORTED]
        return out

    def _recompute_case_deadlines(self, ch: Changes, case: Case, work_orders: list[WorkOrder] | None = None) -> None:
        answering = self._answering(case, ch=ch, work_orders=work_orders)
        if not answering:
            return
        # Only the current round counts: an earlier round's (reported) orders keep their old limits.
        latest = max(wo.round for wo in answering)
        deadline = max((read_due(ch.view(wo), "report_due_at") for wo in answering if wo.round == latest),
                       key=lambda d: d.at)
        self._due(ch, case, "deadline_at", deadline)
        if ch.value(case, "callback_required"):
            self._due(ch, case, "callback_due_at", self.deadlines.callback_due(deadline))
        self._due(ch, case, "close_due_at", self.deadlines.close_due(deadline))

    # ---- the member unit (Article 8) -----------------------------------------------------
    def _check_unit_actor(self, actor: Actor, wo: WorkOrder, what: str) -> None:
        _require_role(actor, UNIT_ROLES, "R5.3", what)
        if actor.unit_id != wo.unit_id:
            raise Forbidden("R5.3", f"work order {wo.id} belongs to another unit")

    def _wo_status(self, wo: WorkOrder, allowed: Iterable[WorkOrderStatus], rule: str, what: str) -> None:
        if wo.status not in set(allowed):
            raise DomainError(rule, f"cannot {what}: work order {wo.id} is {wo.status}")

    def notify_unit(self, wo: WorkOrder, kind: str, message: str) -> UnitNotification:
        """A notice about `wo` to its unit's current duty staff (R5.3): A, else the leader."""
        return self.notify_unit_staff(wo.unit_id, kind, message, work_order_id=wo.id, case_id=wo.case_id)

    def notify_unit_staff(self, unit_id: int, kind: str, message: str, *, work_order_id: int | None = None,
                          case_id: int | None = None) -> UnitNotification:
        """A notice to a unit's current duty staff (R5.3): A, else the leader."""
        notice = self._notice(unit_id, kind, message, work_order_id=work_order_id, case_id=case_id)
        self.session.add(notice)
        return notice

    def _notice(self, unit_id: int, kind: str, message: str, *, work_order_id: int | None = None,
                case_id: int | None = None) -> UnitNotification:
        """The notice to a unit's current duty staff (R5.3), not yet stored: A, else the leader."""
        now = self.now()
        duty = on_duty(self.session, unit_id, now)
        recipient = duty.get("A") or duty.get("leader")
        return UnitNotification(
            unit_id=unit_id, work_order_id=work_order_id, case_id=case_id, at=now, kind=kind,
            recipient_name=recipient.name if recipient else "", recipient_phone=recipient.phone if recipient else "",
            message=message,
        )
