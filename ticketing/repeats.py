"""Repeated requests (重复诉求, 国办函〔2025〕66号): which earlier case a new one repeats.

A case repeats an earlier one of the same category accepted within `policy.repeats.within_days`
before it, when either
- the same caller: the same phone number (the 重复来电率 figure counts these), or
- the same place: the same location, spaces around it ignored (a burst of 停水 in one street).
The desk's flag offers the earlier cases still open for merging (ticketing.workflow.merging);
R7.3c cases are never offered nor flagged (their content is the discipline commission's alone).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from ticketing.enums import OPEN_CASE_STATUSES
from ticketing.models import Case

__all__ = ["Repeat", "open_repeats", "same_caller_within"]

SAME_CALLER = "same_caller"
SAME_PLACE = "same_place"


def same_caller_within(earlier, phone, category, since) -> list:
    """`earlier` (the cases table or an alias) is a case of the same caller and category accepted
    at or after `since` (the later case's acceptance less `within_days`; a value, or an SQL
    expression where the later side is a column too)."""
    return [earlier.c.citizen_phone == phone, earlier.c.category_code == category, earlier.c.accepted_at >= since]


@dataclass(frozen=True)
class Repeat:
    """An open earlier case the new one repeats, and on which ground."""

    case_id: int
    number: str
    status: str
    ground: str


def open_repeats(session: Session, case: Case, within_days: int) -> list[Repeat]:
    """The open earlier cases `case` repeats, newest first (none for an R7.3c case or one with no
    category: nothing to compare it on)."""
    if case.confidential or case.category_code is None:
        return []
    phone, place = case.citizen_phone.strip(), case.location.strip()
    if not phone and not place:
        return []
    earlier = Case.__table__.alias("earlier")
    since = case.accepted_at - timedelta(days=within_days)
    caller = same_caller_within(earlier, phone, case.category_code, since) if phone else None
    same_place = ([func.trim(earlier.c.location) == place, earlier.c.category_code == case.category_code,
                   earlier.c.accepted_at >= since] if place else None)
    grounds = [g for g in (caller, same_place) if g is not None]
    rows = session.execute(
        select(earlier.c.id, earlier.c.number, earlier.c.status, earlier.c.citizen_phone)
        .where(earlier.c.id < case.id, earlier.c.status.in_([s.value for s in OPEN_CASE_STATUSES]),
               earlier.c.confidential.is_(False), or_(*(and_(*g) for g in grounds)))
        .order_by(earlier.c.id.desc())).all()
    return [Repeat(row.id, row.number, str(row.status),
                   SAME_CALLER if phone and row.citizen_phone == phone else SAME_PLACE) for row in rows]
