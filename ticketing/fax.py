"""A fax to the hotline (R2.2, R7.1; issue 14 item 3).

Whatever pages arrived become a case on the fax channel for the front desk to complete, the document
attached as a PDF; a fax cut off part-way says so in the case, so the operator calls back. A fax of
which no page arrived makes no case: it stays on the call log as a failed fax call, which the front
desk sees in its fax list. Nothing received is dropped.
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ticketing import attachments
from ticketing.audit import Actor
from ticketing.enums import CaseKind, Channel, Role
from ticketing.models import Call, Case
from ticketing.workflow import Workflow

FAX_ACTOR = Actor(user_id=None, name="fax", role=Role.SYSTEM.value)
TITLE = "传真来件（待补录）"
SOURCE = "fax"
PDF = frozenset({"application/pdf"})
MAX_PDF_BYTES = 20 * 1024 * 1024  # a long fax at fine resolution stays far below


def accept_fax(session: Session, workflow: Workflow, *, caller: str, pdf: bytes | None, pages: int,
               complete: bool, call_id: int | None, now: datetime) -> Case | None:
    """The case of a received fax with its PDF attached, or None when no page arrived."""
    if not pdf or pages <= 0:
        return None
    cut_off = "" if complete else "；传真未收全，只收到以上页数，请回电请来电人补发"
    case = workflow.accept(
        FAX_ACTOR, kind=CaseKind.CONSULTATION, channel=Channel.FAX, title=TITLE,
        description=f"传真来件共 {pages} 页{cut_off}。内容见附件，请补录诉求类型、分类与诉求内容后办理。",
        citizen_phone=caller, call_id=call_id)
    attachments.attach(session, FAX_ACTOR, case, pdf, source=SOURCE, allowed=PDF, max_bytes=MAX_PDF_BYTES, now=now)
    return case


def failed_faxes(session: Session, since: datetime, limit: int = 50) -> list[Call]:
    """Fax calls since `since` of which nothing arrived (newest first): the front desk calls back."""
    return list(session.execute(select(Call).where(Call.purpose == "fax", Call.outcome == "failed",
                                                   Call.started_at >= since)
                                .order_by(Call.started_at.desc(), Call.id.desc()).limit(limit)).scalars())


__all__ = ["FAX_ACTOR", "SOURCE", "TITLE", "accept_fax", "failed_faxes"]
