"""Approval inside a member unit (Article 5 (二) 6: 呈批, 审结).

In a unit configured with `report_approval` (config/units.yaml), a clerk's report back is a
submission to the unit's leader (a user with the leader flag). The leader approves it -- only then
does it reach the center, as a report does in any other unit, and only then is it judged against
the R8.3 deadline, which keeps running meanwhile -- or sends it back with a note: the work order
stays with the clerk (still notified, still due), the text kept for editing. Who may decide is
ticketing.access's rule (R5.3: the same unit's leader). Every step is in the audit record (A1).
"""
from __future__ import annotations

from ticketing.access import require_approver
from ticketing.approval_model import ReportSubmission
from ticketing.audit import Actor
from ticketing.enums import ApprovalState, Satisfaction, WorkOrderStatus
from ticketing.errors import DomainError, InvalidInput
from ticketing.models import WorkOrder
from ticketing.workflow.base import WorkflowBase
from ticketing.writer import Changes, IdOf

# The unit's leader (R5.3) approving its reports (Article 5 (二) 6 has no R-number of its own).
RULE = "R5.3"


def pending_submission(wo: WorkOrder) -> ReportSubmission | None:
    return next((s for s in reversed(wo.submissions) if s.state == ApprovalState.PENDING), None)


class ApprovalSteps(WorkflowBase):
    """Submit a report to the unit's leader, approve it, send it back."""

    def needs_approval(self, actor: Actor, wo: WorkOrder) -> bool:
        # The leader's own report needs no one's approval but theirs.
        return bool(wo.unit.report_approval) and not actor.unit_leader

    def submit_report(self, actor: Actor, wo: WorkOrder, *, answer: str,
                      satisfaction: Satisfaction | str | None = None) -> WorkOrder:
        """呈批: the clerk's report waits for the leader; the work order stays with the unit (reached
        through `report`, which has checked the clerk, the case's version and the report itself)."""
        if pending_submission(wo) is not None:
            raise DomainError(RULE, f"the report on work order {wo.id} is already waiting for the unit's leader")
        ch = Changes()
        sub = ch.add(ReportSubmission(work_order_id=wo.id, answer=answer.strip(),
                                      satisfaction=Satisfaction(satisfaction) if satisfaction else None,
                                      state=ApprovalState.PENDING, submitted_at=self.now(),
                                      submitted_by_id=actor.user_id), work_order=wo)
        self._touch(ch, wo.case)
        self._log(ch, actor, "submit_report", wo.case, wo, submission_id=IdOf(sub), answer=sub.answer,
                  satisfaction=sub.satisfaction.value if sub.satisfaction else None)
        self._apply(ch)
        return wo

    def _pending(self, actor: Actor, wo: WorkOrder, what: str) -> ReportSubmission:
        require_approver(actor, wo)
        sub = pending_submission(wo)
        if sub is None or wo.status != WorkOrderStatus.NOTIFIED:
            raise DomainError(RULE, f"cannot {what}: no report on work order {wo.id} is waiting for approval")
        return sub

    def approve_report(self, actor: Actor, wo: WorkOrder, *, expected_version: int | None = None,
                       version_required: bool = False) -> WorkOrder:
        """审结: the leader approves; the report reaches the center now and is judged now (R8.3)."""
        require_approver(actor, wo)
        self._check_version(wo.case, expected_version, required_for="an approval" if version_required else None)
        sub = self._pending(actor, wo, "approve")
        self._check_reportable(wo, sub.answer)
        ch = Changes()
        ch.set(sub, state=ApprovalState.APPROVED, decided_at=self.now(), decided_by_id=actor.user_id)
        self._log(ch, actor, "approve_report", wo.case, wo, submission_id=sub.id, submitted_by_id=sub.submitted_by_id)
        self._report(ch, actor, wo, answer=sub.answer, satisfaction=sub.satisfaction,
                     submission_id=sub.id, submitted_by_id=sub.submitted_by_id)
        self._apply(ch)
        return wo

    def send_back_report(self, actor: Actor, wo: WorkOrder, *, note: str,
                         expected_version: int | None = None) -> WorkOrder:
        """The leader sends the report back to the clerk with a note; the deadline keeps running."""
        require_approver(actor, wo)
        self._check_version(wo.case, expected_version)
        sub = self._pending(actor, wo, "send back")
        if not note or not note.strip():
            raise InvalidInput(RULE, "say what the report needs (the note goes back to the clerk)")
        ch = Changes()
        ch.set(sub, state=ApprovalState.SENT_BACK, decided_at=self.now(), decided_by_id=actor.user_id,
               note=note.strip())
        self._touch(ch, wo.case)
        self._log(ch, actor, "send_back_report", wo.case, wo, submission_id=sub.id, note=note.strip())
        self._apply(ch)
        return wo
