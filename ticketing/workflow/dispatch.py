"""Dispatch (R5.2, R7.3, R7.3a-h, R7.4 live): escalation to the back office, consent before a
convenience transfer, dispatch to member units by work order, transfer or three-way call, and the
outcome of a live call."""
from __future__ import annotations

from ticketing.audit import Actor
from ticketing.deadlines import write_due
from ticketing.enums import (
    ACTIVE_WORK_ORDER_STATUSES,
    CaseStatus,
    DispatchMode,
    Role,
    Satisfaction,
    UnitType,
    WorkOrderRole,
    WorkOrderStatus,
)
from ticketing.errors import DomainError, Forbidden, InvalidInput
from ticketing.models import Case, WorkOrder
from ticketing.workflow.base import (
    CENTER_ROLES,
    CONVENIENCE_DISCLAIMER,
    RATED,
    WorkflowBase,
    _provisional_note,
    _require_role,
)
from ticketing.writer import Changes


class DispatchSteps(WorkflowBase):
    """Intake: accept, refuse, own, answer directly."""

    # ---- dispatch (R7.3, R7.3a-h, R3.1(6)) -----------------------------------------------
    def escalate(self, actor: Actor, case: Case, *, note: str = "", expected_version: int | None = None) -> Case:
        """R5.2/R7.3: the front desk hands a cross-cutting or unclear case to the back office."""
        _require_role(actor, {Role.FRONT_DESK}, "R7.3", "escalate to the back office")
        self._check_version(case, expected_version)
        self._check_owner(actor, case, "escalate it")
        self._status(case, {CaseStatus.NEW}, "R7.3", "escalate")
        ch = Changes()
        ch.set(case, status=CaseStatus.PENDING_BACK_OFFICE)
        self._due(ch, case, "dispatch_due_at", self.deadlines.back_office_dispatch_due(case.accepted_at))
        self._touch(ch, case)
        self._log(ch, actor, "escalate", case, note=note)
        self._apply(ch)
        return case

    def record_convenience_consent(self, actor: Actor, case: Case, *, disclaimer_read: bool, consent: bool,
                                   call_id: int | None = None) -> Case:
        """R7.3f: the citizen heard that the service may be paid and the center is not responsible."""
        _require_role(actor, CENTER_ROLES, "R7.3f", "record consent")
        if not disclaimer_read:
            raise DomainError("R7.3f", "read the disclaimer to the citizen before asking for consent")
        ch = Changes()
        self._log(ch, actor, "convenience_consent", case, call_id=call_id, consent=bool(consent),
                  disclaimer=CONVENIENCE_DISCLAIMER)
        ch.set(case, convenience_consent_at=self.now() if consent else None)
        self._touch(ch, case)
        self._apply(ch)
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
        version_required: bool = False,
    ) -> list[WorkOrder]:
        """``version_required``: a re-dispatch must name the case version it acted on (the API's
        clients; issue 11 §7). A call-control step acts on its own live call instead."""
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
        if version_required and (redispatch or case.work_orders):
            # It cancels the work under way: a repeated or concurrent one must not apply twice.
            self._check_version(case, expected_version, required_for="a re-dispatch")
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

        ch = Changes()
        round_no = 1
        if redispatch or case.work_orders:
            round_no = max((wo.round for wo in case.work_orders), default=0) + 1
            for wo in case.work_orders:
                if wo.status in ACTIVE_WORK_ORDER_STATUSES:
                    ch.set(wo, status=WorkOrderStatus.CANCELLED)
                    self._log(ch, actor, "cancel_work_order", case, wo, reason="re-dispatched")
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
            # A new row: written with its id, then tied to its case and unit as loaded state.
            created.append(ch.add(wo, case=case, unit=unit))
        if case.status == CaseStatus.PENDING_BACK_OFFICE and case.dispatch_due_at is not None:
            ch.set(case, dispatch_met=now <= case.dispatch_due_at)
        ch.set(case, dispatched_at=now, status=CaseStatus.DISPATCHED, reported_at=None, satisfaction=None,
               satisfaction_source=None)
        if live and any(u.type == UnitType.CONVENIENCE for u in resolved):
            ch.set(case, callback_required=False)  # R7.4: convenience services get no callback
        # Deadlines from the new work orders: one UPDATE of the case (one version step, checked
        # against the version read).
        self._recompute_case_deadlines(ch, case, [*case.work_orders, *created])
        self._touch(ch, case)
        for wo, unit in zip(created, resolved):
            self._log(ch, actor, "dispatch", case, wo, call_id=call_id, unit=unit.code, mode=mode.value,
                      role=wo.role.value, round=round_no, report_due_at=wo.report_due_at,
                      **_provisional_note(wo))
        self._apply(ch)
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
        ch = Changes()
        for wo in live:
            ch.set(wo, status=WorkOrderStatus.REPORTED, reported_at=now, report_met=True, answer=answer,
                   reported_satisfaction=satisfaction)
        ch.set(case, answer=answer, reported_at=now, callback_required=False)
        self._due(ch, case, "callback_due_at", None)
        ch.set(case, satisfaction=satisfaction if satisfaction in RATED else None, satisfaction_source="live_call")
        if satisfaction == Satisfaction.UNSATISFIED:
            ch.set(case, status=CaseStatus.UNSATISFIED)
        elif satisfaction in RATED:
            ch.set(case, status=CaseStatus.AWAITING_CLOSE)
        else:
            ch.set(case, status=CaseStatus.REPORTED)  # convenience transfer: nothing to rate, close next
        self._touch(ch, case)
        self._log(ch, actor, "live_outcome", case, call_id=call_id, answer=answer, satisfaction=satisfaction.value)
        self._apply(ch)
        return case
