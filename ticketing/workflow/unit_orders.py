"""The member unit's side (Article 8) and urging (R7.7): receive, notify, report back, extensions,
returns, and notices to the unit's duty staff."""
from __future__ import annotations

from datetime import datetime, timedelta

from ticketing.audit import Actor
from ticketing.deadlines import met, read_due
from ticketing.enums import (
    ACTIVE_WORK_ORDER_STATUSES,
    CaseStatus,
    RequestState,
    Role,
    Satisfaction,
    WorkOrderRole,
    WorkOrderStatus,
)
from ticketing.errors import DomainError, InvalidInput
from ticketing.models import Case, ExtensionRequest, UnitNotification, WorkOrder
from ticketing.workflow.base import (
    ANSWERING_ROLES,
    CENTER_ROLES,
    SYSTEM_ACTOR,
    WorkflowBase,
    _provisional_note,
    _require_role,
)
from ticketing.writer import Changes, IdOf


class UnitOrderSteps(WorkflowBase):
    """The unit's steps (R8.1-R8.6) and urging (R7.7)."""

    def receive(self, actor: Actor, wo: WorkOrder) -> WorkOrder:
        """R8.1: the unit checks and takes in its new work orders."""
        self._check_unit_actor(actor, wo, "receive work orders")
        self._wo_status(wo, {WorkOrderStatus.DISPATCHED}, "R8.1", "receive")
        ch = Changes()
        ch.set(wo, status=WorkOrderStatus.RECEIVED, received_at=self.now())
        self._touch(ch, wo.case)
        self._log(ch, actor, "receive", wo.case, wo)
        self._apply(ch)
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
        ch = Changes()
        if wo.received_at is None:
            ch.set(wo, received_at=now)
        notify_met = at <= wo.notify_due_at
        ch.set(wo, status=WorkOrderStatus.NOTIFIED, notified_at=at, notify_channel=channel, notify_met=notify_met)
        self._touch(ch, wo.case)
        self._log(ch, actor, "notify", wo.case, wo, notify_channel=channel, notified_at=at, met=notify_met, note=note)
        self._apply(ch)
        return wo

    def report(self, actor: Actor, wo: WorkOrder, *, answer: str,
               satisfaction: Satisfaction | str | None = None, expected_version: int | None = None,
               version_required: bool = False) -> WorkOrder:
        """R8.3/R8.4: the unit files its answer, with the notification time and satisfaction.
        ``expected_version`` is the version of the work order's case the unit saw (every step
        bumps it); ``version_required`` as in `close` (issue 11 §7). In a unit with approval
        (Article 5 (二) 6) a clerk's report goes to the leader first (ticketing.workflow.approval)."""
        self._check_unit_actor(actor, wo, "report back")
        self._check_version(wo.case, expected_version, required_for="a report" if version_required else None)
        self._check_reportable(wo, answer)
        if self.needs_approval(actor, wo):
            return self.submit_report(actor, wo, answer=answer, satisfaction=satisfaction)
        ch = Changes()
        self._report(ch, actor, wo, answer=answer, satisfaction=satisfaction)
        self._apply(ch)
        return wo

    def _check_reportable(self, wo: WorkOrder, answer: str) -> None:
        """What a report back needs, whether filed or put to the unit's leader (R8.4, R7.3h)."""
        self._wo_status(wo, {WorkOrderStatus.NOTIFIED}, "R8.4",
                        "report back before notifying the citizen (the report holds the notification time)")
        if not answer or not answer.strip():
            raise InvalidInput("R8.4", "the report must hold the answer given to the citizen")
        if wo.role == WorkOrderRole.LEAD:
            pending = [o for o in wo.case.work_orders if o.role == WorkOrderRole.CO_UNIT
                       and o.round == wo.round and o.status in ACTIVE_WORK_ORDER_STATUSES]
            if pending:
                names = ", ".join(o.unit.name for o in pending)
                raise DomainError("R7.3h", f"the lead answers for the case once its co-units have reported to it (waiting for {names})")

    def _report(self, ch: Changes, actor: Actor, wo: WorkOrder, *, answer: str,
                satisfaction: Satisfaction | str | None, **audit_data) -> None:
        """The report reaches the center now: the one place a report back is judged met or late (R8.3)."""
        case = wo.case
        now = self.now()
        report_met = met(now, wo.report_due_at)
        rated = Satisfaction(satisfaction) if satisfaction else None
        ch.set(wo, status=WorkOrderStatus.REPORTED, reported_at=now, report_met=report_met, answer=answer,
               reported_satisfaction=rated)
        self._log(ch, actor, "report", case, wo, answer=answer, met=report_met,
                  satisfaction=rated.value if rated else None, **audit_data)
        if wo.role != WorkOrderRole.CO_UNIT and not self._answering(case, include_reported=False, ch=ch):
            self._case_reported(ch, case, wo.round)
        self._touch(ch, case)

    def _case_reported(self, ch: Changes, case: Case, round_no: int) -> None:
        """Every answering unit of the round has reported: the case's answer is theirs (R8.4)."""
        # This round's answers: after a re-dispatch the answer the citizen rejected is not the case's.
        answers = [ch.value(o, "answer") for o in self._answering(case, ch=ch)
                   if ch.value(o, "answer") and o.round == round_no]
        ch.set(case, answer="\n\n".join(answers), reported_at=self.now(), status=CaseStatus.REPORTED)
        self._log(ch, SYSTEM_ACTOR, "case_reported", case, callback_required=case.callback_required,
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
        ch = Changes()
        ext = ch.add(ExtensionRequest(
            work_order_id=wo.id, legal_basis=legal_basis.strip(), extra_working_days=extra_working_days,
            state=RequestState.PENDING, requested_at=self.now(), requested_by_id=actor.user_id,
            old_due_at=wo.report_due_at,
        ), work_order=wo)
        self._touch(ch, wo.case)
        self._log(ch, actor, "request_extension", wo.case, wo, extension_id=IdOf(ext), legal_basis=ext.legal_basis,
                  extra_working_days=extra_working_days)
        self._apply(ch)
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
        ch = Changes()
        ch.set(ext, state=RequestState.APPROVED if approve else RequestState.DENIED, decided_at=self.now(),
               decided_by_id=actor.user_id, decision_note=note)
        if approve:
            due = self.deadlines.extended(read_due(wo, "report_due_at"), ext.extra_working_days)
            ch.set(ext, new_due_at=due.at)
            self._due(ch, wo, "report_due_at", due)
            self._recompute_case_deadlines(ch, wo.case)
        self._touch(ch, wo.case)
        self._log(ch, actor, "decide_extension", wo.case, wo, extension_id=ext.id, approved=approve,
                  new_due_at=ch.value(ext, "new_due_at"), note=note,
                  **_provisional_note(ch.view(wo)) if approve else {})
        self._apply(ch)
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
        ch = Changes()
        ch.set(wo, status=WorkOrderStatus.RETURN_REQUESTED, return_reason=reason.strip())
        self._touch(ch, wo.case)
        self._log(ch, actor, "request_return", wo.case, wo, reason=reason.strip())
        self._apply(ch)
        return wo

    def decide_return(self, actor: Actor, wo: WorkOrder, *, approve: bool, note: str = "") -> WorkOrder:
        """R8.6: approved, the case goes back into dispatch; denied, the unit keeps it."""
        _require_role(actor, CENTER_ROLES, "R8.6", "decide returns")
        self._wo_status(wo, {WorkOrderStatus.RETURN_REQUESTED}, "R8.6", "decide a return")
        case = wo.case
        ch = Changes()
        if approve:
            ch.set(wo, status=WorkOrderStatus.RETURNED)
            if not self._answering(case, include_reported=False, ch=ch):
                if any(o.status == WorkOrderStatus.REPORTED and o.role in ANSWERING_ROLES and o.round == wo.round
                       for o in case.work_orders):
                    # The other units of this round have all answered: the case is answered by them
                    # (the back office may still re-dispatch); without this it would wait forever.
                    self._case_reported(ch, case, wo.round)
                else:
                    ch.set(case, status=CaseStatus.PENDING_BACK_OFFICE)
                    self._due(ch, case, "dispatch_due_at", self.deadlines.back_office_dispatch_due(self.now()))
        else:
            ch.set(wo, status=WorkOrderStatus.NOTIFIED if wo.notified_at else (
                WorkOrderStatus.RECEIVED if wo.received_at else WorkOrderStatus.DISPATCHED))
        self._touch(ch, case)
        self._log(ch, actor, "decide_return", case, wo, approved=approve, note=note)
        self._apply(ch)
        return wo

    # ---- urging (R7.7) -------------------------------------------------------------------
    def urge(self, actor: Actor, wo: WorkOrder, *, note: str = "", threshold: str | None = None) -> UnitNotification:
        """R7.7: remind a unit; the notice goes to its current duty staff (R5.3)."""
        _require_role(actor, {Role.FRONT_DESK, Role.BACK_OFFICE, Role.SYSTEM}, "R7.7", "urge units")
        self._wo_status(wo, ACTIVE_WORK_ORDER_STATUSES, "R7.7", "urge")
        ch = Changes()
        urge_count = wo.urge_count + 1
        ch.set(wo, urge_count=urge_count, last_urged_at=self.now())
        if threshold is not None:
            ch.set(wo, urged_thresholds=[*wo.urged_thresholds, threshold])
        notice = ch.add(self._notice(wo.unit_id, "urge", f"【12345催办】工单{wo.case.number}/{wo.id}：{note or '请按时办理并报结'}",
                                     work_order_id=wo.id, case_id=wo.case_id))
        self._touch(ch, wo.case)
        self._log(ch, actor, "urge", wo.case, wo, note=note, threshold=threshold, urge_count=urge_count)
        self._apply(ch)
        return notice
