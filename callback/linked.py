"""Who else the surviving case's 回访 calls (重复诉求并单, 国办函〔2025〕66号; issue 13 item 7): the
citizen of every case merged into it (ticketing.workflow.merging) is linked to it and gets its
callback (R7.4), one survey call per distinct number:

- while the surviving case's own callback is due (reported, with `callback_required`: no survivor
  whose callback the workflow excluded, so no R7.3c case, which is never merged anyway);
- a number that is the surviving case's own, or an earlier merged case's, is not called twice
  (the same caller calling again is the usual repeat); a merged case without a number is not called;
- once per report of the surviving case: a merged case with an attempt since that report is not
  planned again (its retries come from the attempt machinery, callback/attempts.py).

The attempt is the merged case's own (`case_id` = the merged case): its number is dialled and read
out in the survey, its retries count for it alone, and the rating goes to
`Workflow.record_merged_callback`.
"""
from __future__ import annotations

import re

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased

from ticketing.enums import CaseStatus
from ticketing.merge_model import CaseMerge
from ticketing.models import CallbackAttempt, Case

__all__ = ["linked_citizens_due", "same_number"]

_NOT_DIGIT = re.compile(r"\D")


def same_number(phone: str | None) -> str:
    """A number as compared for "one call per number": its digits (0510-87654321 = 051087654321)."""
    return _NOT_DIGIT.sub("", phone or "")


def linked_citizens_due(session: Session) -> list[tuple[int, str]]:
    """(case id, case number) of the merged cases whose citizen is owed a callback now, in order."""
    survivor, merged = aliased(Case), aliased(Case)
    called = (select(CallbackAttempt.id).where(CallbackAttempt.case_id == merged.id,
                                               CallbackAttempt.scheduled_for >= survivor.reported_at)
              .exists())
    rows = session.execute(
        select(survivor.id, survivor.citizen_phone, merged.id, merged.number, merged.citizen_phone, called)
        .join(CaseMerge, CaseMerge.surviving_case_id == survivor.id)
        .join(merged, merged.id == CaseMerge.duplicate_case_id)
        .where(and_(survivor.status == CaseStatus.REPORTED, survivor.callback_required.is_(True),
                    survivor.reported_at.is_not(None)))
        .order_by(survivor.id, merged.id)).all()
    due: list[tuple[int, str]] = []
    seen: dict[int, set[str]] = {}
    for survivor_id, survivor_phone, case_id, number, phone, already in rows:
        numbers = seen.setdefault(survivor_id, {same_number(survivor_phone)})
        digits = same_number(phone)
        if not digits or digits in numbers:
            continue
        numbers.add(digits)  # this merged case is the one that number is called on
        if not already:
            due.append((case_id, number))
    return due
