"""漏接回拨 (国办函〔2025〕66号): callers who gave up in the operator queue are called back.

A number is on the front desk's list when, within `policy.missed_calls.within_hours`, a hotline
call from it was abandoned in the operator queue after waiting at least `min_wait_s` (the queue
rows and their waits are the figures' own, `CallFigures.queue_calls`), the number can be dialled
(`ticketing.dialing.is_callable`), and since its last abandon
- no call from it reached an operator (it got through meanwhile), and
- nobody called it back (`record_callback`; an unreached callback keeps it on the list).
Repeated abandons from one number are one entry.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ticketing import audit
from ticketing.audit import Actor
from ticketing.dialing import is_callable
from ticketing.enums import Role
from ticketing.errors import Forbidden, InvalidInput
from ticketing.figures.base import Period
from ticketing.figures.calls import CallFigures
from ticketing.missed_call_model import MissedCallback
from ticketing.models import Call

__all__ = ["MissedCall", "missed_calls", "record_callback", "store_callback"]

CALLING_ROLES = {Role.FRONT_DESK.value, Role.BACK_OFFICE.value}


@dataclass(frozen=True)
class MissedCall:
    number: str
    times: int                 # abandons since the last time the number got through or was reached
    first_at: datetime
    last_at: datetime
    longest_wait_s: float
    tries: int                 # callbacks that did not reach the caller since the last abandon


def missed_calls(session: Session, now: datetime, policy) -> list[MissedCall]:
    """The numbers to call back, the longest-waiting last abandon first."""
    rules = policy.missed_calls
    rows = CallFigures(session).queue_calls(Period(now - timedelta(hours=rules.within_hours), now))
    numbers = dict(session.execute(select(Call.id, Call.caller_number)
                                   .where(Call.id.in_([r.call_id for r in rows]))).all()) if rows else {}
    through: dict[str, datetime] = {}
    for r in rows:
        if r.answered:
            number = numbers.get(r.call_id, "")
            through[number] = max(through.get(number, r.queued_at), r.queued_at)
    reached, tried = _callbacks(session, {numbers.get(r.call_id, "") for r in rows if r.abandoned})
    entries: dict[str, list] = {}
    for r in rows:
        number = numbers.get(r.call_id, "")
        if not r.abandoned or r.wait_s is None or r.wait_s < rules.min_wait_s or not is_callable(number):
            continue
        settled = max((t for t in (through.get(number), reached.get(number)) if t is not None), default=None)
        if settled is not None and settled >= r.queued_at:
            continue
        entries.setdefault(number, []).append(r)
    out = []
    for number, abandons in entries.items():
        first = min(a.queued_at for a in abandons)
        out.append(MissedCall(number=number, times=len(abandons), first_at=first,
                              last_at=max(a.queued_at for a in abandons),
                              longest_wait_s=max(a.wait_s for a in abandons),
                              tries=sum(1 for t in tried.get(number, []) if t >= first)))
    return sorted(out, key=lambda m: m.last_at)


def _callbacks(session: Session, numbers: set[str]) -> tuple[dict[str, datetime], dict[str, list[datetime]]]:
    """Per number: the last callback that reached the caller, and the times of the others."""
    if not numbers:
        return {}, {}
    reached = dict(session.execute(
        select(MissedCallback.caller_number, func.max(MissedCallback.called_at))
        .where(MissedCallback.caller_number.in_(numbers), MissedCallback.reached.is_(True))
        .group_by(MissedCallback.caller_number)).all())
    tried: dict[str, list[datetime]] = {}
    for number, at in session.execute(select(MissedCallback.caller_number, MissedCallback.called_at)
                                      .where(MissedCallback.caller_number.in_(numbers),
                                             MissedCallback.reached.is_(False))):
        tried.setdefault(number, []).append(at)
    return reached, tried


def record_callback(session: Session, actor: Actor, number: str, *, reached: bool, note: str,
                    now: datetime) -> MissedCallback:
    """The front desk called a missed caller back: reached (off the list) or not (stays on it)."""
    if actor.role not in CALLING_ROLES:
        raise Forbidden("R5.1", f"a {actor.role} does not call citizens back")
    return store_callback(session, actor, number, reached=reached, note=note, now=now, called_by_id=actor.user_id)


def store_callback(session: Session, actor: Actor, number: str, *, reached: bool, note: str, now: datetime,
                   called_by_id: int | None) -> MissedCallback:
    """A callback made (by hand, or by the scheduler: callback/missed.py) and its audit record."""
    if not is_callable(number):
        raise InvalidInput("number", "not a number the hotline can call back")
    row = MissedCallback(caller_number=number, called_at=now, called_by_id=called_by_id, reached=reached,
                         note=note.strip())
    session.add(row)
    session.flush()
    audit.record(session, actor, "missed_call_callback", at=now, data={"reached": reached, "note": row.note,
                                                                       "missed_callback_id": row.id})
    return row
