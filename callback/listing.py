"""The callback attempts as `callcenter callbacks list` shows them (phone numbers masked)."""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from ticketing.models import CallbackAttempt, Case
from ticketing.privacy import mask_phone

__all__ = ["AttemptRow", "list_attempts"]


@dataclass(frozen=True)
class AttemptRow:
    key: str
    case_number: str
    phone_masked: str
    attempt_no: int
    state: str
    scheduled_for: datetime
    result: str | None
    detail: str | None


def list_attempts(session: Session, *, states: Iterable[str] | None = None, limit: int = 100) -> list[AttemptRow]:
    q = (select(CallbackAttempt, Case.number, Case.citizen_phone).join(Case, Case.id == CallbackAttempt.case_id)
         .order_by(CallbackAttempt.scheduled_for.desc(), CallbackAttempt.id.desc()).limit(limit))
    if states:
        q = q.where(CallbackAttempt.state.in_(list(states)))
    return [AttemptRow(a.idempotency_key, number, mask_phone(phone), a.attempt_no, a.state, a.scheduled_for,
                       a.result.value if a.result else None, a.detail)
            for a, number, phone in session.execute(q).all()]
