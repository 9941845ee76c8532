"""Investigations and accountability (R6.1; 过错问责, Article 4).

The 2011 measures give supervision (市监察局, Article 6 (二)) the oversight of how member units
handle cases (2), the investigation of and accountability for serious problems in handling them
(3: 调查、问责), and a part in the units' assessment (4). An inquiry is that investigation:

    open (supervision: a case or a unit, a reason, what to explain, a limit in working days)
      -> the unit explains (a task on its page; urged like a work order when the limit nears or passes)
      -> supervision records its findings and the accountability decision, which closes it.

Every step is an audit event (A1) carrying the inquiry's id; one on a case carries the case too,
and for an R7.3c case no free text goes into the shared log (as for every step on such a case).
`inquiry_counts` gives the open and decided inquiries per unit, for the assessment.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import case as when
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ticketing.audit import Actor
from ticketing.deadlines import write_due
from ticketing.enums import AccountabilityDecision, InquiryReason, InquiryStatus, Role
from ticketing.errors import DomainError, Forbidden, InvalidInput, NotFound
from ticketing.inquiry_model import Inquiry
from ticketing.models import Case, MemberUnit, UnitNotification, WorkOrder
from ticketing.workflow.base import UNIT_ROLES, WorkflowBase, _require_role
from ticketing.writer import Changes

SUPERVISION = frozenset({Role.SUPERVISOR})
# The scheduler urges like it urges work orders (callback.deadlines); supervision may urge by hand.
URGERS = frozenset({Role.SUPERVISOR, Role.SYSTEM})
DEFAULT_EXPLANATION_WORKING_DAYS = 3
MAX_EXPLANATION_WORKING_DAYS = 30


class InquirySteps(WorkflowBase):
    """Supervision's inquiries into member units (R6.1)."""

    def get_inquiry(self, inquiry_id: int) -> Inquiry:
        inquiry = self.session.get(Inquiry, inquiry_id)
        if inquiry is None:
            raise NotFound("inquiry", inquiry_id)
        return inquiry

    def open_inquiry(self, actor: Actor, *, reason: InquiryReason | str, description: str,
                     unit: MemberUnit | None = None, case: Case | None = None, work_order: WorkOrder | None = None,
                     working_days: int = DEFAULT_EXPLANATION_WORKING_DAYS) -> Inquiry:
        """R6.1: ask a unit to explain, within `working_days` (counted by ticketing.deadlines).
        On a work order: its unit and case. On a case: `unit` must have held one of its work
        orders. On a unit alone: no case."""
        _require_role(actor, SUPERVISION, "R6.1", "open inquiries")
        try:
            reason = InquiryReason(reason)
        except ValueError:
            raise InvalidInput("R6.1", f"unknown inquiry reason '{reason}'") from None
        if not description or not description.strip():
            raise InvalidInput("R6.1", "say what the unit is asked to explain")
        if not 1 <= working_days <= MAX_EXPLANATION_WORKING_DAYS:
            raise InvalidInput("R6.1", f"the limit for an explanation is 1 to {MAX_EXPLANATION_WORKING_DAYS} working days")
        if work_order is not None:
            if unit is not None and unit.id != work_order.unit_id:
                raise InvalidInput("R6.1", f"work order {work_order.id} is not {unit.name}'s")
            if case is not None and case.id != work_order.case_id:
                raise InvalidInput("R6.1", f"work order {work_order.id} is not of case {case.number}")
            unit, case = work_order.unit, work_order.case
        if unit is None:
            raise InvalidInput("R6.1", "name the unit asked to explain")
        if case is not None and work_order is None and not any(wo.unit_id == unit.id for wo in case.work_orders):
            raise InvalidInput("R6.1", f"{unit.name} never held a work order of case {case.number}")
        now = self.now()
        inquiry = Inquiry(unit_id=unit.id, case_id=case.id if case is not None else None,
                          work_order_id=work_order.id if work_order is not None else None, reason=reason,
                          description=description.strip(), status=InquiryStatus.ASKED, opened_at=now,
                          opened_by_id=actor.user_id, urge_count=0, urged_thresholds=[])
        write_due(inquiry, "explanation_due_at", self.deadlines.explanation_due(now, working_days))
        # Written first: the notice names the inquiry by its id.
        ch = Changes()
        ch.add(inquiry, unit=unit, case=case, work_order=work_order)
        self._apply(ch)
        ch = Changes()
        self._log_inquiry(ch, actor, "inquiry_open", inquiry, reason=reason.value, unit=unit.code,
                          description=inquiry.description, working_days=working_days,
                          explanation_due_at=inquiry.explanation_due_at,
                          **({"provisional": ["explanation_due_at"]} if inquiry.provisional_deadlines else {}))
        ch.add(self._notice(unit.id, "inquiry", f"【12345监察】请就问责调查#{inquiry.id}在时限内作出说明",
                            work_order_id=inquiry.work_order_id, case_id=inquiry.case_id))
        self._apply(ch)
        return inquiry

    def explain_inquiry(self, actor: Actor, inquiry: Inquiry, *, explanation: str) -> Inquiry:
        """R6.1: the unit's explanation (说明); late ones are taken and marked late."""
        _require_role(actor, UNIT_ROLES, "R6.1", "explain to supervision")
        if actor.unit_id != inquiry.unit_id:
            raise Forbidden("R6.1", f"inquiry {inquiry.id} is about another unit")
        self._inquiry_status(inquiry, {InquiryStatus.ASKED}, "explain")
        if not explanation or not explanation.strip():
            raise InvalidInput("R6.1", "the explanation is empty")
        now = self.now()
        met = now <= inquiry.explanation_due_at
        ch = Changes()
        ch.set(inquiry, status=InquiryStatus.EXPLAINED, explanation=explanation.strip(), explained_at=now,
               explained_by_id=actor.user_id, explanation_met=met)
        self._log_inquiry(ch, actor, "inquiry_explain", inquiry, explanation=explanation.strip(), met=met)
        self._apply(ch)
        return inquiry

    def decide_inquiry(self, actor: Actor, inquiry: Inquiry, *, findings: str,
                       decision: AccountabilityDecision | str) -> Inquiry:
        """R6.1 / Article 4: supervision's findings and accountability decision; the inquiry closes.
        A unit that never explained can be decided on once its limit has passed."""
        _require_role(actor, SUPERVISION, "R6.1", "decide inquiries")
        self._inquiry_status(inquiry, {InquiryStatus.ASKED, InquiryStatus.EXPLAINED}, "decide")
        try:
            decision = AccountabilityDecision(decision)
        except ValueError:
            raise InvalidInput("R6.1", f"unknown accountability decision '{decision}'") from None
        if not findings or not findings.strip():
            raise InvalidInput("R6.1", "record the findings the decision rests on")
        now = self.now()
        if inquiry.status == InquiryStatus.ASKED and now <= inquiry.explanation_due_at:
            raise DomainError("R6.1", f"the unit may explain until {inquiry.explanation_due_at.isoformat()}; "
                                      "decide after its explanation or after that limit")
        ch = Changes()
        ch.set(inquiry, status=InquiryStatus.CLOSED, findings=findings.strip(), decision=decision, decided_at=now,
               decided_by_id=actor.user_id)
        self._log_inquiry(ch, actor, "inquiry_decide", inquiry, findings=findings.strip(), decision=decision.value,
                          explained=inquiry.explained_at is not None)
        self._apply(ch)
        return inquiry

    def urge_inquiry(self, actor: Actor, inquiry: Inquiry, *, note: str = "",
                     threshold: str | None = None) -> UnitNotification:
        """R7.7 as for a work order: remind the unit's duty staff that its explanation is due."""
        _require_role(actor, URGERS, "R7.7", "urge an explanation")
        self._inquiry_status(inquiry, {InquiryStatus.ASKED}, "urge")
        ch = Changes()
        urge_count = inquiry.urge_count + 1
        ch.set(inquiry, urge_count=urge_count, last_urged_at=self.now())
        if threshold is not None:
            ch.set(inquiry, urged_thresholds=[*inquiry.urged_thresholds, threshold])
        notice = ch.add(self._notice(
            inquiry.unit_id, "inquiry_urge", f"【12345监察催办】问责调查#{inquiry.id}：{note or '请按时作出说明'}",
            work_order_id=inquiry.work_order_id, case_id=inquiry.case_id))
        self._log_inquiry(ch, actor, "inquiry_urge", inquiry, note=note, threshold=threshold, urge_count=urge_count)
        self._apply(ch)
        return notice

    # ---- helpers -----------------------------------------------------------------------------
    def _inquiry_status(self, inquiry: Inquiry, allowed: set[InquiryStatus], what: str) -> None:
        if inquiry.status not in allowed:
            raise DomainError("R6.1", f"cannot {what}: inquiry {inquiry.id} is {inquiry.status}")

    def _log_inquiry(self, ch: Changes, actor: Actor, action: str, inquiry: Inquiry, **data: Any) -> None:
        # R7.3c: on a confidential case event_on keeps the fact of each step, not what was written.
        ch.event(actor, action, self.event_on(
            inquiry.case_id, inquiry.work_order_id, confidential=inquiry.case is not None and inquiry.case.confidential,
            data={"inquiry_id": inquiry.id, **data}))


@dataclass
class UnitInquiries:
    """One unit's inquiries in a period, for its assessment (R6.1: supervision takes part in it)."""

    opened: int = 0                     # opened in the period
    open: int = 0                       # of those, not yet decided
    decided: int = 0                    # decided in the period
    late_explanations: int = 0          # explained after the limit, or decided without one
    by_decision: dict[str, int] = field(default_factory=dict)  # decided in the period, per decision


def inquiry_counts(session: Session, start: datetime, end: datetime, *,
                   include_confidential: bool = False) -> dict[int, UnitInquiries]:
    """Per unit id: inquiries opened in [start, end) (and how many of those are still open) and
    inquiries decided in [start, end) by decision. Inquiries on R7.3c cases are left out unless
    asked for: such a case is not assessed (R7.3c). Two grouped queries, whatever the period."""
    def scoped(stmt):
        if include_confidential:
            return stmt
        return stmt.outerjoin(Case, Case.id == Inquiry.case_id).where(
            (Inquiry.case_id.is_(None)) | (Case.confidential.is_(False)))

    out: dict[int, UnitInquiries] = {}
    opened = scoped(select(Inquiry.unit_id, Inquiry.status, func.count())
                    .where(Inquiry.opened_at >= start, Inquiry.opened_at < end)
                    .group_by(Inquiry.unit_id, Inquiry.status))
    for unit_id, status, n in session.execute(opened):
        row = out.setdefault(unit_id, UnitInquiries())
        row.opened += n
        if status != InquiryStatus.CLOSED:
            row.open += n
    late = (Inquiry.explanation_met.is_(False)) | (Inquiry.explained_at.is_(None))
    decided = scoped(select(Inquiry.unit_id, Inquiry.decision, func.count(),
                            func.sum(when((late, 1), else_=0)))
                     .where(Inquiry.status == InquiryStatus.CLOSED,
                            Inquiry.decided_at >= start, Inquiry.decided_at < end)
                     .group_by(Inquiry.unit_id, Inquiry.decision))
    for unit_id, decision, n, n_late in session.execute(decided):
        row = out.setdefault(unit_id, UnitInquiries())
        row.decided += n
        row.late_explanations += int(n_late or 0)
        row.by_decision[decision.value] = row.by_decision.get(decision.value, 0) + n
    return out


# ---- deadline keeping (callback.deadlines urges these as it urges work orders) ----------------
def explanations_overdue(now: datetime):
    """Inquiries whose explanation is past its limit and not given."""
    return select(Inquiry).where(Inquiry.status == InquiryStatus.ASKED, Inquiry.explanation_due_at < now)


def explanations_due_soon(now: datetime, horizon: datetime):
    """Inquiries whose explanation falls due between now and `horizon`."""
    return select(Inquiry).where(Inquiry.status == InquiryStatus.ASKED, Inquiry.explanation_due_at >= now,
                                 Inquiry.explanation_due_at <= horizon)
