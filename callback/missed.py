"""漏接回拨 by the scheduler (国办函〔2025〕66号, issue 14 item 4): the durable side of its callbacks.

Who is owed a callback is `ticketing.missed_calls` (one entry per number however often it gave up,
off the list once it got through or was reached); here, within service hours, each such number gets
one automatic callback at a time (a partial unique index holds it), at most `max_tries` that miss
the caller, `retry_minutes` apart; after that it stays on the front desk's list alone. An attempt's
life, like a 回访 attempt's (callback/attempts.py)::

    scheduled --claim (an operator chosen)--> dialing --operator answered--> answered
        --citizen answered--> reached | --not--> not_reached      (a missed_callbacks row either way)
    scheduled --the number got through or was reached meanwhile--> cancelled
    dialing --the operator did not answer / certainly not sent--> scheduled (the citizen was not dialled)

`claim` commits `dialing` BEFORE the Originate; every change is a conditional UPDATE, so a late or
repeated event never moves a finished attempt, and a dead runner's attempts are settled by asking
Asterisk (callback/fate.py). Pure store code: the calls are callback/missed_runner.py's.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from callback.attempts import CALLBACK_ACTOR
from ticketing.domain import Domain
from ticketing.missed_call_model import MISSED_OPEN_STATES, MissedCallback, MissedCallbackAttempt
from ticketing.missed_calls import missed_calls, store_callback
from ticketing.models import User

KEY_PREFIX = "mc-"  # the attempt's key, and so its call's channel id (after a test's prefix)
SCHEDULED, DIALING, ANSWERED = MISSED_OPEN_STATES
REACHED = "reached"
NOT_REACHED = "not_reached"
CANCELLED = "cancelled"
FINAL_STATES = frozenset({REACHED, NOT_REACHED, CANCELLED})
IN_FLIGHT_STATES = (DIALING, ANSWERED)
CITIZEN_ANSWERED = "ANSWER"  # Asterisk's DIALSTATUS when the citizen's leg answered


@dataclass(frozen=True)
class Claimed:
    attempt_id: int
    key: str
    phone: str
    operator: str


def key_of_channel(channel_id: str) -> str | None:
    """The attempt key in a call's channel id (the screen-pop finds the attempt by it)."""
    at = (channel_id or "").find(KEY_PREFIX)
    return channel_id[at:] if at >= 0 else None


def _now(domain: Domain) -> datetime:
    return domain.clock()


def _may_call(domain: Domain, now: datetime) -> bool:
    return domain.policy.missed_calls.automatic and domain.policy.ivr_open_at(now)


def plan(session: Session, domain: Domain) -> int:
    """A scheduled attempt for every number on the list that has none open and tries left."""
    now = _now(domain)
    if not _may_call(domain, now):
        return 0
    rules = domain.policy.missed_calls
    # the open attempts BEFORE the list: one that ends in between has already put its result on the
    # list when that is read (PostgreSQL reads each statement's own snapshot), so no second callback
    held = set(session.execute(select(MissedCallbackAttempt.caller_number).where(
        MissedCallbackAttempt.state.in_(MISSED_OPEN_STATES))).scalars())
    entries = missed_calls(session, now, domain.policy)
    if not entries:
        return 0
    numbers = [m.number for m in entries]
    last_try = dict(session.execute(
        select(MissedCallback.caller_number, func.max(MissedCallback.called_at))
        .where(MissedCallback.caller_number.in_(numbers), MissedCallback.reached.is_(False))
        .group_by(MissedCallback.caller_number)).all())
    made = 0
    for m in entries:
        if m.number in held or m.tries >= rules.max_tries:
            continue
        if m.tries and now - _aware(last_try[m.number], now) < timedelta(minutes=rules.retry_minutes):
            continue
        try:
            with session.begin_nested():  # another scheduler's attempt for the number: the index says no
                session.add(MissedCallbackAttempt(caller_number=m.number, state=SCHEDULED, scheduled_for=now,
                                                  idempotency_key=f"{KEY_PREFIX}{uuid.uuid4().hex[:16]}"))
        except IntegrityError:
            continue
        made += 1
    return made


def _aware(value: datetime, like: datetime) -> datetime:
    return value.replace(tzinfo=like.tzinfo) if value.tzinfo is None else value


def _move(session: Session, attempt_id: int, from_states: tuple[str, ...], to_state: str,
          now: datetime | None, **values) -> bool:
    """Conditional transition; False if the attempt was not in `from_states` (someone else moved it)."""
    if to_state in FINAL_STATES:
        values["finished_at"] = now
    res = session.execute(update(MissedCallbackAttempt).where(
        MissedCallbackAttempt.id == attempt_id, MissedCallbackAttempt.state.in_(from_states))
        .values(state=to_state, **values).execution_options(synchronize_session=False))
    return res.rowcount == 1


def claim(session: Session, domain: Domain, operator: str) -> Claimed | None:
    """The longest-due attempt whose number is still owed a callback, moved to `dialing` for
    `operator` (the caller commits BEFORE dialling). A number that got through or was reached
    meanwhile is taken off (cancelled)."""
    now = _now(domain)
    if not _may_call(domain, now):
        return None
    rows = session.execute(
        select(MissedCallbackAttempt.id, MissedCallbackAttempt.idempotency_key, MissedCallbackAttempt.caller_number)
        .where(MissedCallbackAttempt.state == SCHEDULED, MissedCallbackAttempt.scheduled_for <= now)
        .order_by(MissedCallbackAttempt.scheduled_for, MissedCallbackAttempt.id).limit(20)).all()
    if not rows:
        return None
    owed = {m.number for m in missed_calls(session, now, domain.policy)}
    for attempt_id, key, number in rows:
        if number not in owed:
            _move(session, attempt_id, (SCHEDULED,), CANCELLED, now,
                  detail="off the list meanwhile: got through or called back")
        elif _move(session, attempt_id, (SCHEDULED,), DIALING, now, started_at=now, operator_extension=operator):
            return Claimed(attempt_id, key, number, operator)
    return None


def unclaim(session: Session, attempt_id: int, detail: str) -> bool:
    """The citizen was certainly not dialled (Originate not sent, operator did not answer): back to
    `scheduled`, same key, for the next free operator."""
    return _move(session, attempt_id, (DIALING,), SCHEDULED, None, started_at=None, operator_extension=None,
                 detail=detail)


def mark_answered(session: Session, domain: Domain, attempt_id: int) -> bool:
    """The operator answered: the dialplan notes the call in its ledger and dials the citizen."""
    return _move(session, attempt_id, (DIALING,), ANSWERED, _now(domain))


def finish(session: Session, domain: Domain, attempt_id: int, *, reached: bool, detail: str) -> bool:
    """The call ended: its result goes on the list as a callback (reached: off the list; not: a
    try, the number stays). False if the attempt was already settled."""
    now = _now(domain)
    if not _move(session, attempt_id, IN_FLIGHT_STATES, REACHED if reached else NOT_REACHED, now, detail=detail):
        return False
    attempt = session.get(MissedCallbackAttempt, attempt_id)
    user_id = session.execute(select(User.id).where(User.operator_extension == attempt.operator_extension,
                                                    User.active.is_(True)).order_by(User.id).limit(1)
                              ).scalar_one_or_none() if attempt.operator_extension else None
    row = store_callback(session, CALLBACK_ACTOR, attempt.caller_number, reached=reached, now=now,
                         note=f"automatic callback {attempt.idempotency_key}: {detail}", called_by_id=user_id)
    attempt.callback_id = row.id
    session.flush()
    return True


# ---- read side -------------------------------------------------------------------------------------
def orphans(session: Session, exclude) -> list[tuple[int, str, str]]:
    """Attempts in flight that this process is not driving: (id, key, state)."""
    q = select(MissedCallbackAttempt.id, MissedCallbackAttempt.idempotency_key, MissedCallbackAttempt.state).where(
        MissedCallbackAttempt.state.in_(IN_FLIGHT_STATES))
    ex = list(exclude)
    if ex:
        q = q.where(MissedCallbackAttempt.id.not_in(ex))
    return [tuple(r) for r in session.execute(q).all()]


def due(session: Session, domain: Domain) -> int:
    """Attempts still open: scheduled and due, or in flight."""
    return session.execute(select(func.count()).select_from(MissedCallbackAttempt).where(
        MissedCallbackAttempt.state.in_(MISSED_OPEN_STATES),
        MissedCallbackAttempt.scheduled_for <= _now(domain))).scalar_one()


def open_attempts(session: Session, numbers: list[str]) -> dict[str, str]:
    """Number -> the state of its automatic callback under way (the desk does not dial it then)."""
    if not numbers:
        return {}
    return dict(session.execute(select(MissedCallbackAttempt.caller_number, MissedCallbackAttempt.state).where(
        MissedCallbackAttempt.caller_number.in_(numbers), MissedCallbackAttempt.state.in_(MISSED_OPEN_STATES))).all())


def attempt_by_key(session: Session, key: str) -> MissedCallbackAttempt | None:
    return session.execute(select(MissedCallbackAttempt).where(
        MissedCallbackAttempt.idempotency_key == key)).scalar_one_or_none()


def why(session: Session, domain: Domain, key: str) -> dict | None:
    """What the operator's screen-pop says about the callback with this key: whom, and why."""
    attempt = attempt_by_key(session, key)
    if attempt is None:
        return None
    entry = next((m for m in missed_calls(session, _now(domain), domain.policy) if m.number == attempt.caller_number),
                 None)
    return {"key": key, "caller_number": attempt.caller_number,
            "times": entry.times if entry else None,
            "first_at": entry.first_at.isoformat() if entry else None,
            "last_at": entry.last_at.isoformat() if entry else None,
            "longest_wait_s": entry.longest_wait_s if entry else None,
            "tries": entry.tries if entry else None}


__all__ = ["ANSWERED", "CANCELLED", "CITIZEN_ANSWERED", "Claimed", "DIALING", "FINAL_STATES", "KEY_PREFIX",
           "NOT_REACHED", "REACHED", "SCHEDULED", "attempt_by_key", "claim", "due", "finish", "key_of_channel",
           "mark_answered", "open_attempts", "orphans", "plan", "unclaim", "why"]
