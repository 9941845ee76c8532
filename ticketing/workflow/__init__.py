"""The center's and the member units' procedure (Articles 3, 7 and 8) as explicit operations.

Every operation checks who acts and what the case's state allows, changes the case in the
caller's transaction, and appends an audit event (A1). A refused operation raises a
`DomainError` naming the rule. Persistence is the caller's: commit or roll back the session.

One facade, `Workflow`, over one module per part of the procedure: intake.py (R2, R3, R7.1, R7.2),
dispatch.py (R7.3), unit_orders.py (Article 8, R7.7), approval.py (Article 5 (二) 6), closing.py
(R7.4-R7.6), inquiries.py (R6.1), merging.py (重复诉求并单); base.py holds what they share.
"""
from __future__ import annotations

from ticketing.workflow.base import (
    ANSWERING_ROLES,
    CENTER_ROLES,
    CONVENIENCE_DISCLAIMER,
    DISCIPLINE_MESSAGE,
    RATED,
    SYSTEM_ACTOR,
    UNIT_ROLES,
    Clock,
    WorkflowBase,
    utcnow,
)
from ticketing.workflow.approval import ApprovalSteps
from ticketing.workflow.closing import ClosingSteps
from ticketing.workflow.dispatch import DispatchSteps
from ticketing.workflow.inquiries import InquirySteps
from ticketing.workflow.intake import IntakeSteps
from ticketing.workflow.merging import MergeSteps
from ticketing.workflow.unit_orders import UnitOrderSteps

__all__ = ["ANSWERING_ROLES", "CENTER_ROLES", "CONVENIENCE_DISCLAIMER", "DISCIPLINE_MESSAGE", "RATED",
           "SYSTEM_ACTOR", "UNIT_ROLES", "Clock", "Workflow", "utcnow"]


class Workflow(IntakeSteps, DispatchSteps, UnitOrderSteps, ApprovalSteps, ClosingSteps, InquirySteps, MergeSteps,
               WorkflowBase):
    """Every step of the procedure, on one session (see the modules named above)."""
