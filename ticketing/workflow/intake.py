"""Intake (R2, R3, R4.1, R7.1, R7.2): accepting a request from any channel, refusing one with its
ground and referral, the first-contact operator's ownership, and the direct answer."""
from __future__ import annotations

from typing import Any

from ticketing import audit
from ticketing.audit import Actor
from ticketing.deadlines import Due
from ticketing.enums import (
    CaseKind,
    CaseStatus,
    Channel,
    RejectReason,
    Role,
    Satisfaction,
)
from ticketing.errors import DomainError, InvalidInput
from ticketing.knowledge import record_use
from ticketing.models import Case
from ticketing.numbering import next_case_number
from ticketing.workflow.base import CENTER_ROLES, RATED, WorkflowBase, _require_role
from ticketing.writer import Changes, Run, insert_row


class IntakeSteps(WorkflowBase):
    """Intake: accept, refuse, own, answer directly."""

    # ---- intake (R2, R3, R4.1, R7.1) -----------------------------------------------------
    def accept(self, actor: Actor, **request: Any) -> Case:
        """R7.1: accept a request from any channel; R4.1: the accepting operator owns it.
        `request`: `new_case`'s keywords (kind, channel, title, description, citizen, location,
        category_code, call_id)."""
        values, event = self.new_case(actor, **request)
        # work_orders known empty: answering with the case needs no query for them
        case = Case(**values, work_orders=[])
        case.number = next_case_number(self.session, case.accepted_at.astimezone(self.calendar.tz))
        ch = Changes()
        ch.add(case)
        self._log(ch, actor, "accept", case, call_id=case.created_by_call_id, **event)
        self._apply(ch)
        return case

    def accept_on(self, run: Run, actor: Actor, **request: Any) -> tuple[int, str]:
        """`accept` without an ORM object (building one costs more than its INSERT on the voice
        menu's hot path, agi/hotline.py): the same rules, number, row and accept event, written
        through `run` (ticketing.writer) in its caller's transaction; this Workflow's session is
        not used. Returns the new case's id and number. tests/test_intake_cursor.py and
        tests/test_store_golden.py check the rows against `accept`'s."""
        case, event = self.new_case(actor, **request)
        case["number"] = next_case_number(run, case["accepted_at"].astimezone(self.calendar.tz))
        case_id = insert_row(run, Case, case)
        audit.record(run, actor, "accept", **self.event_on(
            case_id, confidential=case["confidential"], channel=event.pop("channel"),
            call_id=case["created_by_call_id"], data=event))
        return case_id, case["number"]

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
        accept event's fields, which `accept` and `accept_on` write."""
        _require_role(actor, {Role.FRONT_DESK, Role.BACK_OFFICE, Role.SYSTEM}, "R5.1", "accept requests")
        kind = CaseKind(kind)
        channel = Channel(channel)
        discipline = self._category_rules(kind, category_code)
        now = self.now()
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

    def _category_rules(self, kind: CaseKind, category_code: str | None) -> bool:
        """R2.1: the category takes this kind; whether it is an R7.3c report (confidential, no
        callback, not assessed)."""
        cat = self.category(category_code)
        if cat is not None and kind.value not in cat.kinds:
            raise InvalidInput("R2.1", f"category '{category_code}' does not take {kind} cases")
        return cat is not None and cat.route.mode == "discipline"

    def complete_intake(self, actor: Actor, case: Case, *, kind: CaseKind | str, category_code: str | None, title: str,
                        description: str, citizen_name: str, citizen_phone: str, location: str,
                        expected_version: int | None = None) -> Case:
        """R7.1, R2.2: the front desk completes a case that arrived with little (a fax: only its PDF;
        the voice menu's case) before handling it as any other: the same rules as accepting it.
        Only while it is new; the audit event names the fields changed (not their personal data)."""
        _require_role(actor, {Role.FRONT_DESK, Role.BACK_OFFICE}, "R5.1", "complete a case's intake")
        if case.status != CaseStatus.NEW:
            raise DomainError("R7.1", f"case {case.number} is {case.status}: its intake is done")
        self._check_version(case, expected_version)
        kind = CaseKind(kind)
        discipline = self._category_rules(kind, category_code)
        values = {"kind": kind, "category_code": category_code, "title": title, "description": description,
                  "citizen_name": citizen_name, "citizen_phone": citizen_phone, "location": location}
        changed = sorted(k for k, v in values.items() if getattr(case, k) != v)
        ch = Changes()
        ch.set(case, **values, confidential=discipline, callback_required=not discipline, assessed=not discipline)
        self._touch(ch, case)
        self._log(ch, actor, "complete_intake", case, changed=changed, kind=kind.value, category=category_code)
        self._apply(ch)
        return case

    def take_ownership(self, actor: Actor, case: Case, *, call_id: int | None = None) -> Case:
        """R4.1: a case created by the voice menu gets its owner when an operator takes the call."""
        _require_role(actor, {Role.FRONT_DESK}, "R4.1", "take ownership of a case")
        if case.owner_id is not None and case.owner_id != actor.user_id:
            raise DomainError("R4.1", f"case {case.number} already has its first-contact operator")
        if case.owner_id is None:
            ch = Changes()
            ch.set(case, owner_id=actor.user_id)
            self._touch(ch, case)
            self._log(ch, actor, "take_ownership", case, call_id=call_id)
            self._apply(ch)
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
        ch = Changes()
        ch.set(case, status=CaseStatus.REJECTED, reject_reason=reason, referral=referral.strip(),
               callback_required=False, assessed=False, closed_at=self.now())
        self._touch(ch, case)
        self._log(ch, actor, "reject", case, reason=reason.value, referral=referral.strip())
        self._apply(ch)
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
        ch = Changes()
        ch.set(case, answer=answer, answered_directly=True, satisfaction=satisfaction, satisfaction_source="direct",
               callback_required=False, reported_at=now)
        self._due(ch, case, "deadline_at", Due.fixed(now))
        self._due(ch, case, "close_due_at", self.deadlines.close_due(Due.fixed(now)))
        ch.set(case, status=CaseStatus.UNSATISFIED if satisfaction == Satisfaction.UNSATISFIED else CaseStatus.AWAITING_CLOSE)
        self._touch(ch, case)
        read = {}
        if knowledge_entry_id is not None:  # which entry, and which version of it, the operator read
            read = {"knowledge_version": record_use(self.session, actor, knowledge_entry_id, case, now=now).version}
        self._log(ch, actor, "answer_directly", case, call_id=call_id, answer=answer,
                  satisfaction=satisfaction.value, knowledge_entry_id=knowledge_entry_id, **read)
        self._apply(ch)
        return case
