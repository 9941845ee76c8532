"""The center's and the member units' procedure (Articles 3, 7 and 8) as explicit operations.

Every operation checks who acts and what the case's state allows, changes the case in the
caller's transaction, and appends an audit event (A1). A refused operation raises a
`DomainError` naming the rule. Persistence is the caller's: commit or roll back the session.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, inspect, select, true, tuple_
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import flag_modified, set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from ticketing import audit
from ticketing.audit import Actor
from ticketing.deadlines import Deadlines, Due, read_due, write_due
from ticketing.enums import (
    ACTIVE_WORK_ORDER_STATUSES,
    CaseKind,
    CaseStatus,
    Channel,
    DispatchMode,
    RejectReason,
    RequestState,
    Role,
    Satisfaction,
    UnitType,
    WorkOrderRole,
    WorkOrderStatus,
)
from ticketing.errors import DomainError, Forbidden, InvalidInput, NotFound
from ticketing.models import (
    Case,
    ExtensionRequest,
    MemberUnit,
    UnitNotification,
    WorkOrder,
)
from ticketing.numbering import next_case_number
from ticketing.rows import attached, insert_now, update_now

Clock = Callable[[], datetime]

CENTER_ROLES = frozenset({Role.FRONT_DESK, Role.BACK_OFFICE})
UNIT_ROLES = frozenset({Role.UNIT_STAFF, Role.DISCIPLINE})
ANSWERING_ROLES = frozenset({WorkOrderRole.SOLE, WorkOrderRole.LEAD, WorkOrderRole.INDEPENDENT})
RATED = frozenset({Satisfaction.SATISFIED, Satisfaction.BASICALLY_SATISFIED, Satisfaction.UNSATISFIED})

# R7.3c: what the operator reads to the citizen.
DISCIPLINE_MESSAGE = "您反映的问题已转交纪委监察局办理，您也可以直接拨打12388与纪委监察局联系。"
# R7.3f: the disclaimer that must be read before a convenience-service transfer.
CONVENIENCE_DISCLAIMER = "便民服务中心提供的生活服务可能收费，服务质量由提供方负责，12345热线不承担责任。是否同意为您转接？"


_UNITS = MemberUnit.__table__
_UNIT_BY_CODE = select(*_UNITS.c).where(_UNITS.c.code == bindparam("code"))
_UNITS_BY_CODE = select(*_UNITS.c).where(_UNITS.c.code.in_(bindparam("codes", expanding=True)))
_CASES = Case.__table__
# mark_callback_manual_many: one read and one UPDATE for the whole batch, each row checked at the
# version read (the ORM's optimistic check) and its version stepped, as a flush of each case would.
_MANUAL_READ = (select(_CASES.c.id, _CASES.c.number, _CASES.c.status, _CASES.c.confidential, _CASES.c.version)
                .where(_CASES.c.id.in_(bindparam("ids", expanding=True))))
_MANUAL_MARK = (_CASES.update()
                # id IN too: SQLite scans the table for a row-value IN alone
                .where(_CASES.c.id.in_(bindparam("ids", expanding=True)),
                       tuple_(_CASES.c.id, _CASES.c.version).in_(bindparam("seen", expanding=True)))
                .values(callback_manual=true(), updated_at=bindparam("now"), version=_CASES.c.version + 1))


def utcnow() -> datetime:
    return datetime.now(UTC)


def _provisional_note(row: Any) -> dict[str, Any]:
    """Audit data saying which of a row's deadlines are provisional (T1); nothing when none is."""
    marks = row.provisional_deadlines
    return {"provisional": sorted(marks)} if marks else {}


def _require_role(actor: Actor, allowed: Iterable[Role], rule: str, what: str) -> None:
    if actor.role not in {r.value for r in allowed}:
        raise Forbidden(rule, f"a {actor.role} may not {what}")


class Workflow:
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

    def _log(self, actor: Actor, action: str, case: Case | None = None, wo: WorkOrder | None = None,
             *, channel: str | None = None, call_id: int | None = None, **data: Any) -> None:
        audit.record(self.session, actor, action, **self.event(case, wo, channel=channel, call_id=call_id, **data))

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
            data = {k: v for k, v in data.items() if k not in {"answer", "description", "title", "note", "reason"}}
        return {"at": self.now(), "case_id": case_id, "work_order_id": work_order_id,
                "data": data, "channel": channel, "call_id": call_id}

    def _touch(self, case: Case) -> None:
        # Every operation bumps the case's version, so two concurrent writers cannot both win.
        case.updated_at = self.now()
        # Forced: an unchanged value (same clock reading) would otherwise emit no UPDATE and no version bump.
        flag_modified(case, "updated_at")

    def _check_version(self, case: Case, expected_version: int | None) -> None:
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
        wo = self.session.get(WorkOrder, wo_id)
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

    def _answering(self, case: Case, *, include_reported: bool = True) -> list[WorkOrder]:
        current = [wo for wo in case.work_orders if wo.status != WorkOrderStatus.CANCELLED and wo.status != WorkOrderStatus.RETURNED]
        out = [wo for wo in current if wo.role in ANSWERING_ROLES]
        if not include_reported:
            out = [wo for wo in out if wo.status != WorkOrderStatus.REPORTED]
        return out

    def _recompute_case_deadlines(self, case: Case) -> None:
        answering = self._answering(case)
        if not answering:
            return
        # Only the current round counts: an earlier round's (reported) orders keep their old limits.
        latest = max(wo.round for wo in answering)
        deadline = max((read_due(wo, "report_due_at") for wo in answering if wo.round == latest), key=lambda d: d.at)
        write_due(case, "deadline_at", deadline)
        if case.callback_required:
            write_due(case, "callback_due_at", self.deadlines.callback_due(deadline))
        write_due(case, "close_due_at", self.deadlines.close_due(deadline))

    # ---- intake (R2, R3, R4.1, R7.1) -----------------------------------------------------
    def accept(self, actor: Actor, **request: Any) -> Case:
        """R7.1: accept a request from any channel; R4.1: the accepting operator owns it.
        `request`: `new_case`'s keywords (kind, channel, title, description, citizen, location,
        category_code, call_id)."""
        values, event = self.new_case(actor, **request)
        # work_orders known empty: answering with the case needs no query for them
        case = Case(**values, work_orders=[])
        case.number = next_case_number(self.session, case.accepted_at.astimezone(self.calendar.tz))
        insert_now(self.session, case)  # one INSERT now: the audit event needs the case's id
        self._log(actor, "accept", case, call_id=case.created_by_call_id, **event)
        return case

    def new_case(
        self,
        actor: Actor,
        *,
        kind: CaseKind | str,
        channel: Channel | str,
        title: str,
        description: str,
        citizen_name: str = "",
        citizen_phone: str = "",
        citizen_id_number: str = "",
        location: str = "",
        category_code: str | None = None,
        call_id: int | None = None,
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """`accept`'s rules: the new case's column values (not yet numbered nor stored) and its
        accept event's fields. `accept` writes it through the session; ticketing.intake on a
        DBAPI cursor, without an ORM object (building one costs more than its INSERT there)."""
        _require_role(actor, {Role.FRONT_DESK, Role.BACK_OFFICE, Role.SYSTEM}, "R5.1", "accept requests")
        kind = CaseKind(kind)
        channel = Channel(channel)
        cat = self.category(category_code)
        if cat is not None and kind.value not in cat.kinds:
            raise InvalidInput("R2.1", f"category '{category_code}' does not take {kind} cases")
        now = self.now()
        discipline = cat is not None and cat.route.mode == "discipline"
        case = dict(
            kind=kind,
            channel=channel,
            status=CaseStatus.NEW,
            category_code=category_code,
            citizen_name=citizen_name,
            citizen_phone=citizen_phone,
            citizen_id_number=citizen_id_number,
            title=title,
            description=description,
            location=location,
            owner_id=actor.user_id if actor.role == Role.FRONT_DESK else None,
            accepted_at=now,
            created_by_call_id=call_id,
            confidential=discipline,
            callback_required=not discipline,
            assessed=not discipline,
            updated_at=now,
        )
        return case, {"channel": channel.value, "kind": kind.value, "category": category_code, "title": title}

    def take_ownership(self, actor: Actor, case: Case, *, call_id: int | None = None) -> Case:
        """R4.1: a case created by the voice menu gets its owner when an operator takes the call."""
        _require_role(actor, {Role.FRONT_DESK}, "R4.1", "take ownership of a case")
        if case.owner_id is not None and case.owner_id != actor.user_id:
            raise DomainError("R4.1", f"case {case.number} already has its first-contact operator")
        if case.owner_id is None:
            case.owner_id = actor.user_id
            self._touch(case)
            self._log(actor, "take_ownership", case, call_id=call_id)
        return case

    def reject(self, actor: Actor, case: Case, *, reason: RejectReason | str, referral: str,
               expected_version: int | None = None) -> Case:
        """R3.1/R3.2: not accepted, with the ground and where the citizen was sent."""
        _require_role(actor, CENTER_ROLES, "R3.2", "refuse a request")
        self._check_version(case, expected_version)
        self._check_owner(actor, case, "refuse it")
        self._status(case, {CaseStatus.NEW}, "R3.1", "refuse the request")
        reason = RejectReason(reason)
        if not referral or not referral.strip():
            raise InvalidInput("R3.2", "record where the citizen was referred (the competent body and its contact)")
        now = self.now()
        case.status = CaseStatus.REJECTED
        case.reject_reason = reason
        case.referral = referral.strip()
        case.callback_required = False
        case.assessed = False
        case.closed_at = now
        self._touch(case)
        self._log(actor, "reject", case, reason=reason.value, referral=case.referral)
        return case

    # ---- direct answer (R7.2, R7.4) ------------------------------------------------------
    def answer_directly(self, actor: Actor, case: Case, *, answer: str, satisfaction: Satisfaction | str,
                        knowledge_entry_id: int | None = None, expected_version: int | None = None,
                        call_id: int | None = None) -> Case:
        """R7.2: answered from the knowledge base; R7.4: satisfaction recorded during the call."""
        _require_role(actor, CENTER_ROLES, "R5.1", "answer directly")
        self._check_version(case, expected_version)
        self._check_owner(actor, case, "answer it")
        self._status(case, {CaseStatus.NEW}, "R7.2", "answer directly")
        if case.confidential:
            raise DomainError("R7.3c", "an economic report on an official goes to the discipline commission, not a direct answer")
        satisfaction = Satisfaction(satisfaction)
        if satisfaction not in RATED:
            raise InvalidInput("R7.4", "a direct answer records the citizen's satisfaction during the call")
        if not answer.strip():
            raise InvalidInput("R7.2", "the answer given must be recorded")
        now = self.now()
        case.answer = answer
        case.answered_directly = True
        case.satisfaction = satisfaction
        case.satisfaction_source = "direct"
        case.callback_required = False
        case.reported_at = now
        write_due(case, "deadline_at", Due.fixed(now))
        write_due(case, "close_due_at", self.deadlines.close_due(Due.fixed(now)))
        case.status = CaseStatus.UNSATISFIED if satisfaction == Satisfaction.UNSATISFIED else CaseStatus.AWAITING_CLOSE
        self._touch(case)
        self._log(actor, "answer_directly", case, call_id=call_id, answer=answer,
                  satisfaction=satisfaction.value, knowledge_entry_id=knowledge_entry_id)
        return case

    # ---- dispatch (R7.3, R7.3a-h, R3.1(6)) -----------------------------------------------
    def escalate(self, actor: Actor, case: Case, *, note: str = "", expected_version: int | None = None) -> Case:
        """R5.2/R7.3: the front desk hands a cross-cutting or unclear case to the back office."""
        _require_role(actor, {Role.FRONT_DESK}, "R7.3", "escalate to the back office")
        self._check_version(case, expected_version)
        self._check_owner(actor, case, "escalate it")
        self._status(case, {CaseStatus.NEW}, "R7.3", "escalate")
        case.status = CaseStatus.PENDING_BACK_OFFICE
        write_due(case, "dispatch_due_at", self.deadlines.back_office_dispatch_due(case.accepted_at))
        self._touch(case)
        self._log(actor, "escalate", case, note=note)
        return case

    def record_convenience_consent(self, actor: Actor, case: Case, *, disclaimer_read: bool, consent: bool,
                                   call_id: int | None = None) -> Case:
        """R7.3f: the citizen heard that the service may be paid and the center is not responsible."""
        _require_role(actor, CENTER_ROLES, "R7.3f", "record consent")
        if not disclaimer_read:
            raise DomainError("R7.3f", "read the disclaimer to the citizen before asking for consent")
        self._log(actor, "convenience_consent", case, call_id=call_id, consent=bool(consent),
                  disclaimer=CONVENIENCE_DISCLAIMER)
        case.convenience_consent_at = self.now() if consent else None
        self._touch(case)
        return case

    def dispatch(
        self,
        actor: Actor,
        case: Case,
        *,
        units: list[str],
        mode: DispatchMode | str = DispatchMode.WORK_ORDER,
        lead: str | None = None,
        instructions: str = "",
        expected_version: int | None = None,
        call_id: int | None = None,
    ) -> list[WorkOrder]:
        mode = DispatchMode(mode)
        _require_role(actor, CENTER_ROLES, "R5.1", "dispatch")
        self._check_version(case, expected_version)
        if not units:
            raise InvalidInput("R7.3", "name at least one member unit")
        if len(set(units)) != len(units):
            raise InvalidInput("R7.3", "a unit is named twice")
        now = self.now()
        redispatch = case.status in {CaseStatus.DISPATCHED, CaseStatus.UNSATISFIED, CaseStatus.REPORTED}
        if actor.role == Role.FRONT_DESK:
            self._check_owner(actor, case, "dispatch it")
            self._status(case, {CaseStatus.NEW}, "R7.3", "dispatch from the front desk")
            local = self.calendar.tz
            if now.astimezone(local).date() != case.accepted_at.astimezone(local).date():
                raise DomainError("R7.3", "the front desk dispatches on the day it accepts; escalate to the back office")
            if len(units) > 1:
                raise Forbidden("R7.3h", "several units are dispatched by the back office, which names the lead")
        else:
            self._status(case, {CaseStatus.NEW, CaseStatus.PENDING_BACK_OFFICE, CaseStatus.DISPATCHED,
                                CaseStatus.UNSATISFIED, CaseStatus.REPORTED}, "R7.3", "dispatch")
        if lead is not None and lead not in units:
            raise InvalidInput("R7.3h", f"the lead unit '{lead}' must be one of the units dispatched to")
        resolved = self.units_by_code(units)
        for unit in resolved:
            if not unit.joined:
                raise DomainError("R3.1", f"{unit.name} has not joined the platform and cannot receive cases (R3.1(6))")
            if unit.type == UnitType.EMERGENCY and mode != DispatchMode.THREE_WAY:
                raise DomainError("R7.3g", "urgent help for emergency management goes by three-way call with the emergency office")
            if unit.type == UnitType.CONVENIENCE:
                if mode != DispatchMode.TRANSFER:
                    raise DomainError("R7.3f", "life services go by transfer to the convenience service center")
                if case.convenience_consent_at is None:
                    raise DomainError("R7.3f", "tell the citizen the service may be paid and the center is not responsible, and record their consent, before transferring")
            if unit.type == UnitType.DISCIPLINE and mode != DispatchMode.WORK_ORDER:
                raise DomainError("R7.3c", "the discipline commission receives cases by work order")
        if case.confidential and any(u.type != UnitType.DISCIPLINE for u in resolved):
            raise DomainError("R7.3c", "a report on an official's economic problems goes to the discipline commission only")
        if mode != DispatchMode.WORK_ORDER and len(resolved) > 1:
            raise InvalidInput("R7.3", f"a {mode} brings in one unit at a time")

        round_no = 1
        if redispatch or case.work_orders:
            round_no = max((wo.round for wo in case.work_orders), default=0) + 1
            for wo in case.work_orders:
                if wo.status in ACTIVE_WORK_ORDER_STATUSES:
                    wo.status = WorkOrderStatus.CANCELLED
                    self._log(actor, "cancel_work_order", case, wo, reason="re-dispatched")
        if len(resolved) == 1:
            roles = {resolved[0].code: WorkOrderRole.SOLE}
        elif lead is not None:
            roles = {u.code: (WorkOrderRole.LEAD if u.code == lead else WorkOrderRole.CO_UNIT) for u in resolved}
        else:
            roles = {u.code: WorkOrderRole.INDEPENDENT for u in resolved}

        live = mode in {DispatchMode.THREE_WAY, DispatchMode.TRANSFER}
        dues = {"notify_due_at": self.deadlines.notify_due(now),
                "report_due_at": self.deadlines.report_due(case.kind.value, now, live=live),
                "return_due_at": self.deadlines.return_due(now)}
        created = []
        for unit in resolved:
            wo = WorkOrder(
                case_id=case.id,
                unit_id=unit.id,
                mode=mode,
                role=roles[unit.code],
                status=WorkOrderStatus.NOTIFIED if live else WorkOrderStatus.DISPATCHED,
                round=round_no,
                instructions=instructions,
                dispatched_at=now,
                dispatched_by_id=actor.user_id,
                received_at=now if live else None,
                notified_at=now if live else None,
                notify_channel="call" if live else None,
                notify_met=True if live else None,
                urged_thresholds=[],
                extensions=[],  # known empty: no query when the work order is shown
            )
            for column, due in dues.items():
                write_due(wo, column, due)
            # Written at once (its id goes into the audit event), then tied to its case and unit
            # as loaded state: the ORM has nothing left to write for it.
            insert_now(self.session, wo)
            set_committed_value(wo, "case", case)
            set_committed_value(wo, "unit", unit)
            created.append(wo)
        set_committed_value(case, "work_orders", [*case.work_orders, *created])
        if case.status == CaseStatus.PENDING_BACK_OFFICE and case.dispatch_due_at is not None:
            case.dispatch_met = now <= case.dispatch_due_at
        case.dispatched_at = now
        case.status = CaseStatus.DISPATCHED
        case.reported_at = None
        case.satisfaction = None
        case.satisfaction_source = None
        if live and any(u.type == UnitType.CONVENIENCE for u in resolved):
            case.callback_required = False  # R7.4: convenience services get no callback
        # Deadlines from the new work orders, now in case.work_orders: one UPDATE of the case
        # (one version step, checked against the version read).
        self._recompute_case_deadlines(case)
        self._touch(case)
        update_now(self.session, case)
        for wo in created:
            self._log(actor, "dispatch", case, wo, call_id=call_id, unit=wo.unit.code, mode=mode.value,
                      role=wo.role.value, round=round_no, report_due_at=wo.report_due_at,
                      **_provisional_note(wo))
        return created

    def record_live_outcome(self, actor: Actor, case: Case, *, answer: str, satisfaction: Satisfaction | str,
                            call_id: int | None = None, expected_version: int | None = None) -> Case:
        """R7.4: in a three-way call (or transfer) the operator rates satisfaction live; no callback."""
        _require_role(actor, CENTER_ROLES, "R7.4", "record the outcome of a live call")
        self._check_version(case, expected_version)
        self._check_owner(actor, case, "record its outcome")
        self._status(case, {CaseStatus.DISPATCHED}, "R7.4", "record a live outcome")
        live = [wo for wo in self._answering(case, include_reported=False) if wo.mode != DispatchMode.WORK_ORDER]
        if not live:
            raise DomainError("R7.4", f"case {case.number} has no three-way call or transfer in progress")
        satisfaction = Satisfaction(satisfaction)
        now = self.now()
        for wo in live:
            wo.status = WorkOrderStatus.REPORTED
            wo.reported_at = now
            wo.report_met = True
            wo.answer = answer
            wo.reported_satisfaction = satisfaction
        case.answer = answer
        case.reported_at = now
        case.callback_required = False
        write_due(case, "callback_due_at", None)
        case.satisfaction = satisfaction if satisfaction in RATED else None
        case.satisfaction_source = "live_call"
        if satisfaction == Satisfaction.UNSATISFIED:
            case.status = CaseStatus.UNSATISFIED
        elif satisfaction in RATED:
            case.status = CaseStatus.AWAITING_CLOSE
        else:
            case.status = CaseStatus.REPORTED  # convenience transfer: nothing to rate, close next
        self._touch(case)
        self._log(actor, "live_outcome", case, call_id=call_id, answer=answer, satisfaction=satisfaction.value)
        return case

    # ---- the member unit (Article 8) -----------------------------------------------------
    def _check_unit_actor(self, actor: Actor, wo: WorkOrder, what: str) -> None:
        _require_role(actor, UNIT_ROLES, "R5.3", what)
        if actor.unit_id != wo.unit_id:
            raise Forbidden("R5.3", f"work order {wo.id} belongs to another unit")

    def _wo_status(self, wo: WorkOrder, allowed: Iterable[WorkOrderStatus], rule: str, what: str) -> None:
        if wo.status not in set(allowed):
            raise DomainError(rule, f"cannot {what}: work order {wo.id} is {wo.status}")

    def receive(self, actor: Actor, wo: WorkOrder) -> WorkOrder:
        """R8.1: the unit checks and takes in its new work orders."""
        self._check_unit_actor(actor, wo, "receive work orders")
        self._wo_status(wo, {WorkOrderStatus.DISPATCHED}, "R8.1", "receive")
        wo.status = WorkOrderStatus.RECEIVED
        wo.received_at = self.now()
        self._touch(wo.case)
        self._log(actor, "receive", wo.case, wo)
        return wo

    def notify(self, actor: Actor, wo: WorkOrder, *, channel: str, notified_at: datetime | None = None,
               note: str = "") -> WorkOrder:
        """R8.2: the unit tells the citizen it has the case, within 2 working days of receipt."""
        self._check_unit_actor(actor, wo, "notify citizens")
        self._wo_status(wo, {WorkOrderStatus.DISPATCHED, WorkOrderStatus.RECEIVED}, "R8.2", "notify")
        now = self.now()
        at = notified_at or now
        if at.tzinfo is None:
            raise InvalidInput("R8.4", "the notification time needs a time zone")
        if at > now + timedelta(minutes=5) or at < wo.dispatched_at:
            raise InvalidInput("R8.4", "the notification time must lie between dispatch and now")
        if wo.received_at is None:
            wo.received_at = now
        wo.status = WorkOrderStatus.NOTIFIED
        wo.notified_at = at
        wo.notify_channel = channel
        wo.notify_met = at <= wo.notify_due_at
        self._touch(wo.case)
        self._log(actor, "notify", wo.case, wo, notify_channel=channel, notified_at=at, met=wo.notify_met, note=note)
        return wo

    def report(self, actor: Actor, wo: WorkOrder, *, answer: str,
               satisfaction: Satisfaction | str | None = None) -> WorkOrder:
        """R8.3/R8.4: the unit files its answer, with the notification time and satisfaction."""
        self._check_unit_actor(actor, wo, "report back")
        self._wo_status(wo, {WorkOrderStatus.NOTIFIED}, "R8.4",
                        "report back before notifying the citizen (the report holds the notification time)")
        if not answer or not answer.strip():
            raise InvalidInput("R8.4", "the report must hold the answer given to the citizen")
        case = wo.case
        if wo.role == WorkOrderRole.LEAD:
            pending = [o for o in case.work_orders if o.role == WorkOrderRole.CO_UNIT
                       and o.round == wo.round and o.status in ACTIVE_WORK_ORDER_STATUSES]
            if pending:
                names = ", ".join(o.unit.name for o in pending)
                raise DomainError("R7.3h", f"the lead answers for the case once its co-units have reported to it (waiting for {names})")
        now = self.now()
        wo.status = WorkOrderStatus.REPORTED
        wo.reported_at = now
        wo.report_met = now <= wo.report_due_at
        wo.answer = answer
        wo.reported_satisfaction = Satisfaction(satisfaction) if satisfaction else None
        self._log(actor, "report", case, wo, answer=answer, met=wo.report_met,
                  satisfaction=wo.reported_satisfaction.value if wo.reported_satisfaction else None)
        if wo.role != WorkOrderRole.CO_UNIT and not self._answering(case, include_reported=False):
            self._case_reported(case, wo.round)
        self._touch(case)
        return wo

    def _case_reported(self, case: Case, round_no: int) -> None:
        """Every answering unit of the round has reported: the case's answer is theirs (R8.4)."""
        # This round's answers: after a re-dispatch the answer the citizen rejected is not the case's.
        answers = [o.answer for o in self._answering(case) if o.answer and o.round == round_no]
        case.answer = "\n\n".join(answers)
        case.reported_at = self.now()
        case.status = CaseStatus.REPORTED
        self._log(SYSTEM_ACTOR, "case_reported", case, callback_required=case.callback_required,
                  callback_due_at=case.callback_due_at)

    def request_extension(self, actor: Actor, wo: WorkOrder, *, legal_basis: str, extra_working_days: int) -> ExtensionRequest:
        """R8.5: a longer limit, citing the rule that allows it."""
        self._check_unit_actor(actor, wo, "ask for an extension")
        self._wo_status(wo, {WorkOrderStatus.DISPATCHED, WorkOrderStatus.RECEIVED, WorkOrderStatus.NOTIFIED},
                        "R8.5", "ask for an extension")
        if not legal_basis or len(legal_basis.strip()) < 4:
            raise InvalidInput("R8.5", "cite the law or rule that allows the longer limit")
        if not 1 <= extra_working_days <= 60:
            raise InvalidInput("R8.5", "an extension is between 1 and 60 working days")
        if any(e.state == RequestState.PENDING for e in wo.extensions):
            raise DomainError("R8.5", "an extension request for this work order is already waiting for the center")
        ext = ExtensionRequest(
            work_order=wo, legal_basis=legal_basis.strip(), extra_working_days=extra_working_days,
            state=RequestState.PENDING, requested_at=self.now(), requested_by_id=actor.user_id,
            old_due_at=wo.report_due_at,
        )
        self.session.add(ext)
        self.session.flush()
        self._touch(wo.case)
        self._log(actor, "request_extension", wo.case, wo, extension_id=ext.id, legal_basis=ext.legal_basis,
                  extra_working_days=extra_working_days)
        return ext

    def decide_extension(self, actor: Actor, ext: ExtensionRequest, *, approve: bool, note: str = "") -> ExtensionRequest:
        """R8.5: the center approves in principle; an approved extension moves the deadline."""
        _require_role(actor, CENTER_ROLES, "R8.5", "decide extensions")
        if ext.state != RequestState.PENDING:
            raise DomainError("R8.5", f"extension request {ext.id} was already {ext.state}")
        wo = ext.work_order
        if approve and wo.status not in ACTIVE_WORK_ORDER_STATUSES:
            # A finished work order's limit is history: moving it would move the case's callback and
            # close limits after the fact. The request can still be denied to clear the list.
            raise DomainError("R8.5", f"work order {wo.id} is {wo.status}; an extension can no longer be approved")
        now = self.now()
        ext.state = RequestState.APPROVED if approve else RequestState.DENIED
        ext.decided_at = now
        ext.decided_by_id = actor.user_id
        ext.decision_note = note
        if approve:
            due = self.deadlines.extended(read_due(wo, "report_due_at"), ext.extra_working_days)
            ext.new_due_at = due.at
            write_due(wo, "report_due_at", due)
            self._recompute_case_deadlines(wo.case)
        self._touch(wo.case)
        self._log(actor, "decide_extension", wo.case, wo, extension_id=ext.id, approved=approve,
                  new_due_at=ext.new_due_at, note=note, **_provisional_note(wo) if approve else {})
        return ext

    def request_return(self, actor: Actor, wo: WorkOrder, *, reason: str) -> WorkOrder:
        """R8.6: outside the unit's competence — back within 2 working days, with a reason."""
        self._check_unit_actor(actor, wo, "return work orders")
        self._wo_status(wo, {WorkOrderStatus.DISPATCHED, WorkOrderStatus.RECEIVED, WorkOrderStatus.NOTIFIED},
                        "R8.6", "return")
        if not reason or len(reason.strip()) < 4:
            raise InvalidInput("R8.6", "say why the work order is outside the unit's competence")
        if self.now() > wo.return_due_at:
            raise DomainError("R8.6", "a work order can be returned only within 2 working days of receipt; ask the center to re-dispatch instead")
        wo.status = WorkOrderStatus.RETURN_REQUESTED
        wo.return_reason = reason.strip()
        self._touch(wo.case)
        self._log(actor, "request_return", wo.case, wo, reason=wo.return_reason)
        return wo

    def decide_return(self, actor: Actor, wo: WorkOrder, *, approve: bool, note: str = "") -> WorkOrder:
        """R8.6: approved, the case goes back into dispatch; denied, the unit keeps it."""
        _require_role(actor, CENTER_ROLES, "R8.6", "decide returns")
        self._wo_status(wo, {WorkOrderStatus.RETURN_REQUESTED}, "R8.6", "decide a return")
        case = wo.case
        if approve:
            wo.status = WorkOrderStatus.RETURNED
            if not self._answering(case, include_reported=False):
                if any(o.status == WorkOrderStatus.REPORTED and o.role in ANSWERING_ROLES and o.round == wo.round
                       for o in case.work_orders):
                    # The other units of this round have all answered: the case is answered by them
                    # (the back office may still re-dispatch); without this it would wait forever.
                    self._case_reported(case, wo.round)
                else:
                    case.status = CaseStatus.PENDING_BACK_OFFICE
                    write_due(case, "dispatch_due_at", self.deadlines.back_office_dispatch_due(self.now()))
        else:
            wo.status = WorkOrderStatus.NOTIFIED if wo.notified_at else (
                WorkOrderStatus.RECEIVED if wo.received_at else WorkOrderStatus.DISPATCHED)
        self._touch(case)
        self._log(actor, "decide_return", case, wo, approved=approve, note=note)
        return wo

    # ---- urging (R7.7) -------------------------------------------------------------------
    def urge(self, actor: Actor, wo: WorkOrder, *, note: str = "", threshold: str | None = None) -> UnitNotification:
        """R7.7: remind a unit; the notice goes to its current duty staff (R5.3)."""
        _require_role(actor, {Role.FRONT_DESK, Role.BACK_OFFICE, Role.SYSTEM}, "R7.7", "urge units")
        self._wo_status(wo, ACTIVE_WORK_ORDER_STATUSES, "R7.7", "urge")
        now = self.now()
        wo.urge_count += 1
        wo.last_urged_at = now
        if threshold is not None:
            wo.urged_thresholds = [*wo.urged_thresholds, threshold]
        notice = self.notify_unit(wo, "urge", f"【12345催办】工单{wo.case.number}/{wo.id}：{note or '请按时办理并报结'}")
        self._touch(wo.case)
        self._log(actor, "urge", wo.case, wo, note=note, threshold=threshold, urge_count=wo.urge_count)
        return notice

    def notify_unit(self, wo: WorkOrder, kind: str, message: str) -> UnitNotification:
        """A notice about `wo` to its unit's current duty staff (R5.3): A, else the leader."""
        from ticketing.roster import on_duty  # local import: roster imports workflow helpers

        now = self.now()
        duty = on_duty(self.session, wo.unit_id, now)
        recipient = duty.get("A") or duty.get("leader")
        notice = UnitNotification(
            unit_id=wo.unit_id, work_order_id=wo.id, case_id=wo.case_id, at=now, kind=kind,
            recipient_name=recipient.name if recipient else "", recipient_phone=recipient.phone if recipient else "",
            message=message,
        )
        self.session.add(notice)
        return notice

    # ---- callback and closing (R7.4, R7.5) -----------------------------------------------
    def record_callback(self, actor: Actor, case: Case, *, satisfaction: Satisfaction | str,
                        call_id: int | None = None, note: str = "", expected_version: int | None = None) -> Case:
        """R7.4: the center called the citizen back and asked whether they are satisfied."""
        _require_role(actor, {Role.FRONT_DESK, Role.BACK_OFFICE, Role.SYSTEM}, "R7.4", "record callbacks")
        self._check_version(case, expected_version)
        self._status(case, {CaseStatus.REPORTED}, "R7.4", "record a callback")
        if not case.callback_required:
            rule = "R7.3c" if case.confidential else "R7.4"
            raise DomainError(rule, f"case {case.number} gets no callback")
        satisfaction = Satisfaction(satisfaction)
        if satisfaction not in RATED:
            raise InvalidInput("R7.4", "a callback result is satisfied, basically satisfied or unsatisfied")
        now = self.now()
        case.satisfaction = satisfaction
        case.satisfaction_source = "callback"
        case.callback_done_at = now
        case.callback_met = case.callback_due_at is None or now <= case.callback_due_at
        case.callback_manual = False
        case.status = CaseStatus.UNSATISFIED if satisfaction == Satisfaction.UNSATISFIED else CaseStatus.AWAITING_CLOSE
        self._touch(case)
        self._log(actor, "callback", case, call_id=call_id, satisfaction=satisfaction.value, met=case.callback_met, note=note)
        return case

    def mark_callback_manual(self, actor: Actor, case: Case, *, reason: str) -> Case:
        """Automatic callbacks failed: the case goes on the front desk's manual-callback list."""
        self._status(case, {CaseStatus.REPORTED}, "R7.4", "queue a manual callback")
        case.callback_manual = True
        self._touch(case)
        self._log(actor, "callback_manual", case, reason=reason)
        return case

    def mark_callback_manual_many(self, actor: Actor, reasons: Mapping[int, str]) -> list[int]:
        """`mark_callback_manual` for several cases (case id -> reason) with one read and one UPDATE
        instead of loading and flushing each case: the same R7.4 check (every case `reported`, else
        nothing is marked), version bump and one `callback_manual` audit event per case, in case id
        order. Returns the ids marked. A case changed by someone else since the read: `StaleDataError`,
        as the ORM's flush raises it."""
        ids = sorted(reasons)
        if not ids:
            return []
        self.session.flush()  # ORM changes to these cases go first (their version is then the one read)
        conn = self.session.connection()
        rows = {row[0]: row for row in conn.execute(_MANUAL_READ, {"ids": ids})}
        for case_id in ids:
            row = rows.get(case_id)
            if row is None:
                raise NotFound("case", case_id)
            if row[2] != CaseStatus.REPORTED:
                raise DomainError("R7.4", f"cannot queue a manual callback: case {row[1]} is {row[2]}")
        now = self.now()
        res = conn.execute(_MANUAL_MARK, {"ids": ids, "seen": [(case_id, rows[case_id][4]) for case_id in ids],
                                         "now": now})
        if res.rowcount != len(ids):
            raise StaleDataError(f"manual callback for {len(ids)} cases matched {res.rowcount} rows: "
                                 "changed by someone else")
        identity, mapper = self.session.identity_map, inspect(Case)
        for case_id in ids:
            _id, _number, _status, confidential, seen = rows[case_id]
            case = identity.get(mapper.identity_key_from_primary_key((case_id,)))
            if case is not None:  # the session's object says what the row now says
                set_committed_value(case, "callback_manual", True)
                set_committed_value(case, "updated_at", now)
                set_committed_value(case, "version", seen + 1)
            # R7.3c: as in _log, a confidential case's reason stays out of the shared log
            audit.record(self.session, actor, "callback_manual", at=now, case_id=case_id,
                         data={} if confidential else {"reason": reasons[case_id]})
        return ids

    def close(self, actor: Actor, case: Case, *, provisional: bool = False, note: str = "",
              expected_version: int | None = None) -> Case:
        """R7.5: satisfied cases are closed and archived; unsatisfied ones only by the back office."""
        _require_role(actor, {Role.FRONT_DESK, Role.BACK_OFFICE, Role.SYSTEM}, "R7.5", "close cases")
        self._check_version(case, expected_version)
        if actor.role == Role.SYSTEM and not (case.status == CaseStatus.AWAITING_CLOSE
                                              and case.satisfaction_source == "callback" and not provisional):
            # R7.5: the callback survey closes what the citizen rated satisfied in it; nothing else.
            raise Forbidden("R7.5", "the system closes only cases rated satisfied in the callback survey")
        if case.status == CaseStatus.UNSATISFIED:
            if actor.role != Role.BACK_OFFICE:
                raise Forbidden("R7.5", "an unsatisfied case goes to the back office, which closes it provisionally or dispatches again")
            if not provisional:
                raise DomainError("R7.5", "an unsatisfied case can only be closed provisionally")
        elif case.status == CaseStatus.AWAITING_CLOSE:
            self._check_owner(actor, case, "close it")
            if provisional:
                raise DomainError("R7.5", "only an unsatisfied case is closed provisionally")
        elif case.status == CaseStatus.REPORTED and not case.callback_required:
            # R7.3c discipline cases and convenience transfers: no callback, close on report;
            # still by the first-contact operator (R4.1).
            self._check_owner(actor, case, "close it")
        elif case.status == CaseStatus.REPORTED:
            raise DomainError("R7.4", f"case {case.number} waits for its callback before it can be closed")
        else:
            raise DomainError("R7.5", f"cannot close case {case.number}: it is {case.status}")
        now = self.now()
        case.status = CaseStatus.CLOSED
        case.closed_at = now
        case.closed_provisionally = provisional
        case.close_met = case.close_due_at is None or now <= case.close_due_at
        self._touch(case)
        self._log(actor, "close", case, provisional=provisional, met=case.close_met, note=note)
        return case

    # ---- publishing (R7.6) ---------------------------------------------------------------
    def publish(self, actor: Actor, case: Case, *, public_summary: str | None = None) -> Case:
        """R7.6: handled cases go online without personal data; R7.3c cases never."""
        _require_role(actor, {Role.BACK_OFFICE}, "R5.2", "publish cases")
        if case.confidential:
            raise DomainError("R7.3c", "reports to the discipline commission are kept for counting only and never published")
        self._status(case, {CaseStatus.CLOSED}, "R7.6", "publish")
        if case.reject_reason is not None:
            raise DomainError("R7.6", "a request that was not accepted is not published as a handled case")
        from ticketing.privacy import scrub

        case.public_summary = scrub(public_summary or case.description, names=[case.citizen_name])
        case.published_at = self.now()
        self._touch(case)
        self._log(actor, "publish", case)
        return case


SYSTEM_ACTOR = audit.SYSTEM
