"""回访 callback attempts (R7.4, R7.5): the durable state machine behind every callback call.

Pure domain + store code (no telephony): the runner (callback/runner.py) and the survey's AGI
handler (agi/hotline.py) both move attempts through it, each in short committed transactions.

An attempt's life::

    scheduled --claim--> dialing --answered--> answered --rated--> done
                            |                      |--not rated / survey broke--> not_rated | failed
                            |--busy / no answer / failure--> busy | no_answer | failed
    (an unsuccessful attempt schedules the next one with backoff, or puts the case on the front
     desk's manual-callback list after `policy.callback.max_attempts`)

Restart safety (issue 5 item 5): `claim` commits `dialing` BEFORE the Originate is sent, and
state changes are conditional UPDATEs (`WHERE state = ...`), so no two runners can claim one
attempt and a late or repeated event cannot move a finished attempt again. An idempotency key
is never dialled twice: an attempt found in `dialing` after a crash is settled by asking
Asterisk (callback/runner.py, `reconcile`).
"""
from __future__ import annotations

import functools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session

from callback.linked import linked_citizens_due
from ticketing import calls
from ticketing.audit import Actor
from ticketing.domain import Domain
from ticketing.enums import CaseStatus, Role, Satisfaction
from ticketing.merge_model import CaseMerge
from ticketing.models import CallbackAttempt, Case
from ticketing.queries import callbacks_due

log = logging.getLogger("callback")

CALLBACK_ACTOR = Actor(user_id=None, name="callback", role=Role.SYSTEM.value)

SCHEDULED = "scheduled"
DIALING = "dialing"
ANSWERED = "answered"
DONE = "done"
NO_ANSWER = "no_answer"
BUSY = "busy"
FAILED = "failed"
NOT_RATED = "not_rated"
CANCELLED = "cancelled"  # the case no longer needs this attempt (rated by hand meanwhile)

OPEN_STATES = (SCHEDULED, DIALING, ANSWERED)
IN_FLIGHT_STATES = (DIALING, ANSWERED)
UNSUCCESSFUL = frozenset({NO_ANSWER, BUSY, FAILED, NOT_RATED})
FINAL_STATES = frozenset({DONE, CANCELLED}) | UNSUCCESSFUL

# An unanswered callback dial (its word from ticketing.dialing) -> the attempt's state; a refused
# call (hangup while ringing) counts as not answered and is tried again like one.
STATE_AFTER_DIAL = {"no_answer": NO_ANSWER, "hangup": NO_ANSWER, "busy": BUSY, "unreachable": FAILED,
                    "failed": FAILED}
CALL_OUTCOME = {NO_ANSWER: "no_answer", BUSY: "busy", FAILED: "failed"}


def idempotency_key(case_number: str, attempt_no: int) -> str:
    return f"cb-{case_number}-{attempt_no}"


@dataclass(frozen=True)
class Claimed:
    """What the runner needs to place one call, read in the claiming transaction."""

    attempt_id: int
    key: str
    attempt_no: int
    case_id: int
    case_number: str
    phone: str


def _now(domain: Domain) -> datetime:
    now = domain.clock()
    if now.tzinfo is None:
        raise ValueError("the clock must return aware datetimes")
    return now


def _round_attempts(session: Session, case: Case) -> int:
    """Attempts made for the case's current report (a re-dispatched case is called again)."""
    q = select(func.count()).select_from(CallbackAttempt).where(
        CallbackAttempt.case_id == case.id,
        CallbackAttempt.state.in_(tuple(UNSUCCESSFUL) + (DONE,)),
    )
    if case.reported_at is not None:
        q = q.where(CallbackAttempt.scheduled_for >= case.reported_at)
    return session.execute(q).scalar_one()


# ---- planning ----------------------------------------------------------------------------------
def plan_due(session: Session, domain: Domain, *, batch: int = 500, pages: int | None = None) -> int:
    """Give every reported case that needs its 回访 and has no open attempt a scheduled attempt,
    and every citizen linked to it by a merge theirs (callback.linked).

    Exclusions (R7.3c discipline cases, direct answers, three-way calls rated live, convenience
    transfers) are the cases whose `callback_required` the workflow cleared. Works in pages of
    `batch` (at most `pages` pages) so memory does not grow with the backlog. Returns how many
    attempts were created.
    """
    now = _now(domain)
    policy = domain.policy
    slot = policy.next_callback_slot(now, domain.calendar)
    open_attempt = exists().where(CallbackAttempt.case_id == Case.id, CallbackAttempt.state.in_(OPEN_STATES))
    created = _schedule(session, linked_citizens_due(session), slot)
    while True:
        rows = session.execute(
            callbacks_due(now).with_only_columns(Case.id, Case.number)
            .where(~open_attempt).order_by(Case.callback_due_at, Case.id).limit(batch)
        ).all()
        created += _schedule(session, rows, slot)
        if pages is not None:
            pages -= 1
        if len(rows) < batch or pages == 0:
            return created


def _schedule(session: Session, cases: Sequence[tuple[int, str]], slot: datetime) -> int:
    """The next attempt of each (case id, number), at `slot`."""
    if not cases:
        return 0
    last_no = dict(session.connection().execute(_LAST_ATTEMPT_NO, {"ids": [r[0] for r in cases]}).all())
    values = []
    for case_id, number in cases:
        n = (last_no.get(case_id) or 0) + 1
        values.append({"case_id": case_id, "attempt_no": n, "idempotency_key": idempotency_key(number, n),
                       "state": SCHEDULED, "scheduled_for": slot})
    # Core insert: no ORM objects pile up in the session however large the backlog
    session.execute(insert(CallbackAttempt), values)
    return len(values)


# ---- claiming (before the Originate) -----------------------------------------------------------
# Built once: the runner claims and settles a few attempts per transaction hundreds of times a
# second, and building a statement (coercions, cache key) cost more than running it.
_ATTEMPTS = CallbackAttempt.__table__
_CASES = Case.__table__
_LAST_ATTEMPT_NO = (select(_ATTEMPTS.c.case_id, func.max(_ATTEMPTS.c.attempt_no))
                    .where(_ATTEMPTS.c.case_id.in_(bindparam("ids", expanding=True))).group_by(_ATTEMPTS.c.case_id))
_IN_FLIGHT_COUNT = select(func.count()).select_from(_ATTEMPTS).where(
    _ATTEMPTS.c.state.in_(IN_FLIGHT_STATES), _ATTEMPTS.c.id.not_in(bindparam("exclude", expanding=True)))
_MERGES = CaseMerge.__table__
_DUE_FOR_CLAIM = (
    select(_ATTEMPTS.c.id, _ATTEMPTS.c.idempotency_key, _ATTEMPTS.c.attempt_no, _CASES.c.id, _CASES.c.number,
           _CASES.c.citizen_phone, _CASES.c.status, _CASES.c.callback_manual, _MERGES.c.surviving_case_id)
    .join(_CASES, _CASES.c.id == _ATTEMPTS.c.case_id)
    .outerjoin(_MERGES, _MERGES.c.duplicate_case_id == _CASES.c.id)  # a linked citizen's (callback.linked)
    .where(_ATTEMPTS.c.state == SCHEDULED, _ATTEMPTS.c.scheduled_for <= bindparam("now"),
           _ATTEMPTS.c.id.not_in(bindparam("exclude", expanding=True)))
    .order_by(_ATTEMPTS.c.scheduled_for, _ATTEMPTS.c.id)
    .limit(bindparam("limit"))
)
# conditional: an attempt another runner claimed meanwhile is not returned
_CLAIM = (update(_ATTEMPTS).where(_ATTEMPTS.c.id.in_(bindparam("ids", expanding=True)), _ATTEMPTS.c.state == SCHEDULED)
          .values(state=DIALING, started_at=bindparam("now")).returning(_ATTEMPTS.c.id))
_UNCLAIM = (update(_ATTEMPTS).where(_ATTEMPTS.c.id.in_(bindparam("ids", expanding=True)), _ATTEMPTS.c.state == DIALING)
            .values(state=SCHEDULED, started_at=None).returning(_ATTEMPTS.c.id))


_IN_FLIGHT_COUNT_BESIDES = _IN_FLIGHT_COUNT.where(
    _ATTEMPTS.c.idempotency_key.not_in(bindparam("exclude_keys", expanding=True)))


def in_flight_count(session: Session, *, exclude: Iterable[int] = (), exclude_keys: Iterable[str] = ()) -> int:
    """Attempts in flight but those `exclude`d (by id) and those with one of `exclude_keys`."""
    keys = list(exclude_keys)
    stmt, params = (_IN_FLIGHT_COUNT_BESIDES, {"exclude_keys": keys}) if keys else (_IN_FLIGHT_COUNT, {})
    return session.connection().execute(stmt, {"exclude": list(exclude), **params}).scalar_one()


def settled_keys(session: Session, keys: Iterable[str]) -> set[str]:
    """Of these idempotency keys, those whose attempt is settled (its ledger entry may go)."""
    q = select(CallbackAttempt.idempotency_key).where(CallbackAttempt.idempotency_key.in_(list(keys)),
                                                      CallbackAttempt.state.in_(FINAL_STATES))
    return set(session.execute(q).scalars())


def claim(session: Session, domain: Domain, limit: int, *, exclude: Iterable[int] = ()) -> list[Claimed]:
    """Move up to `limit` due attempts to `dialing` (caller commits BEFORE dialling).

    Only within calling hours and days (policy.callback). A case without a phone number goes
    straight to the manual list.
    """
    now = _now(domain)
    if limit <= 0 or not domain.policy.callback_may_call_at(now, domain.calendar):
        return []
    conn = session.connection()
    rows = conn.execute(_DUE_FOR_CLAIM, {"now": now, "exclude": list(exclude), "limit": limit}).all()
    callable_rows = []
    for row in rows:
        attempt_id, _key, _no, case_id, _number, phone, status, manual, merged_into = row
        if merged_into is None and (status != CaseStatus.REPORTED or manual):
            _set_state(session, attempt_id, (SCHEDULED,), CANCELLED, now, detail=f"case is {status}")
        elif not phone:
            if _set_state(session, attempt_id, (SCHEDULED,), FAILED, now, detail="no phone number"):
                wf = domain.workflow(session)
                wf.mark_callback_manual(CALLBACK_ACTOR, wf.get_case(case_id), reason="no phone number to call")
        else:
            callable_rows.append(row)
    if not callable_rows:
        return []
    won = set(conn.execute(_CLAIM, {"ids": [r[0] for r in callable_rows], "now": now}).scalars())
    return [Claimed(aid, key, no, case_id, number, phone)
            for aid, key, no, case_id, number, phone, *_ in callable_rows if aid in won]


def _set_state(session: Session, attempt_id: int, from_states: tuple[str, ...], to_state: str, now: datetime, *,
               detail: str | None = None, started: bool = False, result: Satisfaction | None = None,
               call_id: int | None = None) -> bool:
    """Conditional transition; False if the attempt was not in `from_states` (someone else moved it)."""
    values: dict = {"state": to_state}
    if started:
        values["started_at"] = now
    if to_state in FINAL_STATES:
        values["finished_at"] = now
    if detail is not None:
        values["detail"] = detail
    if result is not None:
        values["result"] = result.value
    if call_id is not None:
        values["call_id"] = call_id
    res = session.execute(
        update(CallbackAttempt).where(CallbackAttempt.id == attempt_id, CallbackAttempt.state.in_(from_states))
        .values(**values).execution_options(synchronize_session=False)
    )
    return res.rowcount == 1


def unclaim(session: Session, attempt_id: int) -> bool:
    """The Originate was certainly NOT sent (AMI link down before writing): back to scheduled."""
    return bool(unclaim_many(session, [attempt_id]))


def unclaim_many(session: Session, attempt_ids: Iterable[int]) -> list[int]:
    """`unclaim` for several attempts in one statement; returns the ids that went back."""
    ids = list(attempt_ids)
    if not ids:
        return []
    return list(session.connection().execute(_UNCLAIM, {"ids": ids}).scalars())


# ---- outcomes ----------------------------------------------------------------------------------
def mark_answered(session: Session, domain: Domain, attempt_id: int) -> bool:
    return _set_state(session, attempt_id, (DIALING,), ANSWERED, _now(domain))


def record_unsuccessful(session: Session, domain: Domain, attempt_id: int, outcome: str, *, detail: str = "",
                        from_states: tuple[str, ...] = IN_FLIGHT_STATES, log_call: bool = False,
                        channel_id: str | None = None, carrier: str = "asterisk") -> str | None:
    """No answer, busy, failure or not rated: retry with backoff, or the manual list after the
    configured number of attempts. Returns "retry", "manual", or None if the attempt had already
    moved on (e.g. the survey recorded a rating)."""
    return record_unsuccessful_many(session, domain, [Unsuccessful(attempt_id, outcome, detail, from_states, log_call,
                                                                   channel_id, carrier=carrier)])[0]


@dataclass(frozen=True)
class Unsuccessful:
    """One result for `record_unsuccessful_many` (the arguments of `record_unsuccessful`)."""

    attempt_id: int
    outcome: str
    detail: str = ""
    from_states: tuple[str, ...] = IN_FLIGHT_STATES
    log_call: bool = False
    channel_id: str | None = None
    started_at: datetime | None = None  # when the Originate went out (default: when it was claimed)
    carrier: str = "asterisk"  # the driver that placed the call (the call log's carrier)


# The attempts' rows are locked for the transaction (PostgreSQL FOR UPDATE; SQLite's BEGIN
# IMMEDIATE already holds the write lock): the state read here is the one the UPDATEs below see.
_SETTLE_READ = (
    select(_ATTEMPTS.c.id, _ATTEMPTS.c.case_id, _ATTEMPTS.c.idempotency_key, _ATTEMPTS.c.started_at,
           _CASES.c.citizen_phone, _ATTEMPTS.c.state)
    .join(_CASES, _CASES.c.id == _ATTEMPTS.c.case_id).where(_ATTEMPTS.c.id.in_(bindparam("ids", expanding=True)))
    .with_for_update(of=_ATTEMPTS)
)


@functools.cache
def _settle_statement(from_states: tuple[str, ...]):
    """Conditional like _set_state (a call or rating already on the attempt is kept); run as one
    executemany for the results of a batch leaving the same states."""
    return (
        update(_ATTEMPTS).where(_ATTEMPTS.c.id == bindparam("aid"),  # (no expanding IN with executemany)
                                or_(*(_ATTEMPTS.c.state == state for state in from_states)))
        .values(state=bindparam("to_state"), finished_at=bindparam("now"), detail=bindparam("detail"),
                call_id=func.coalesce(bindparam("call_id", type_=_ATTEMPTS.c.call_id.type), _ATTEMPTS.c.call_id),
                result=func.coalesce(bindparam("result", type_=_ATTEMPTS.c.result.type), _ATTEMPTS.c.result))
    )
_SETTLE_CASES = (select(_CASES.c.id, _CASES.c.number, _CASES.c.status, _CASES.c.callback_manual,
                         _MERGES.c.surviving_case_id).outerjoin(_MERGES, _MERGES.c.duplicate_case_id == _CASES.c.id)
                 .where(_CASES.c.id.in_(bindparam("ids", expanding=True))))
# attempts made for each case's current report (see _round_attempts)
_ROUND_ATTEMPTS = (
    select(_ATTEMPTS.c.case_id, func.count()).join(_CASES, _CASES.c.id == _ATTEMPTS.c.case_id)
    .where(_ATTEMPTS.c.case_id.in_(bindparam("ids", expanding=True)),
           _ATTEMPTS.c.state.in_(sorted(UNSUCCESSFUL) + [DONE]),
           or_(_CASES.c.reported_at.is_(None), _ATTEMPTS.c.scheduled_for >= _CASES.c.reported_at))
    .group_by(_ATTEMPTS.c.case_id)
)
_INSERT_ATTEMPT = insert(_ATTEMPTS)
def record_unsuccessful_many(session: Session, domain: Domain, results: Sequence[Unsuccessful]) -> list[str | None]:
    """`record_unsuccessful` for the results of several calls in one transaction, with a fixed
    number of statements per batch besides one or two per call; returns what each result led to
    ("retry", "manual", "given_up" for a linked citizen's last attempt, or None), in order. Cases
    going on the manual list go through the workflow (audit events appended under the chain-head
    lock the transaction already holds)."""
    out: list[str | None] = [None] * len(results)
    if not results:
        return out
    for r in results:
        if r.outcome not in UNSUCCESSFUL:
            raise ValueError(f"not an unsuccessful outcome: {r.outcome}")
    now = _now(domain)
    session.flush()  # the Core reads below must see the ORM changes of this transaction
    conn = session.connection()
    info = {row[0]: row for row in conn.execute(_SETTLE_READ, {"ids": [r.attempt_id for r in results]})}
    moved: dict[int, tuple[int, str, str]] = {}  # case id -> (index, key, outcome)
    later: list[int] = []
    now_batch: list[tuple[int, Unsuccessful, int, str | None]] = []  # (index, result, case id, call uniqueid)
    call_rows: dict[str, dict] = {}
    seen_cases: set[int] = set()
    for i, r in enumerate(results):
        row = info.get(r.attempt_id)
        if row is None:
            continue
        _aid, case_id, key, claimed_at, phone, _state = row
        if case_id in seen_cases:  # a second result for one case: after this batch has settled the first
            later.append(i)
            continue
        seen_cases.add(case_id)
        uniqueid = None
        if r.log_call and r.outcome in CALL_OUTCOME:
            uniqueid = r.channel_id or key
            call_rows[uniqueid] = {
                "uniqueid": uniqueid, "linkedid": uniqueid, "direction": "outbound", "purpose": "callback",
                "caller_number": "12345", "callee_number": phone or "", "started_at": r.started_at or claimed_at or now,
                "answered_at": None, "ended_at": now, "outcome": CALL_OUTCOME[r.outcome],
                "outcome_reason": r.detail or None, "case_id": case_id, "flow_path": [], "digits": [],
                "carrier": r.carrier}
        now_batch.append((i, r, case_id, uniqueid))
    call_ids = calls.log_finished_calls(session, list(call_rows.values()))
    # the results whose attempt is still in one of their from_states move (the read above locked
    # the rows): one executemany per set of from_states instead of one UPDATE per result
    settle: dict[tuple[str, ...], list[dict]] = {}
    for i, r, case_id, uniqueid in now_batch:
        if info[r.attempt_id][5] not in r.from_states:
            continue  # moved on meanwhile (e.g. the survey stored a rating): nothing to do
        settle.setdefault(tuple(r.from_states), []).append({
            "aid": r.attempt_id, "to_state": r.outcome, "now": now,
            "detail": r.detail or r.outcome, "call_id": call_ids.get(uniqueid) if uniqueid else None,
            "result": Satisfaction.NOT_RATED if r.outcome == NOT_RATED else None})
        moved[case_id] = (i, info[r.attempt_id][2], r.outcome)
    for from_states, params in settle.items():
        res = conn.execute(_settle_statement(from_states), params)
        if res.rowcount >= 0 and res.rowcount != len(params):  # cannot happen with the rows locked
            raise RuntimeError(f"callback results: {len(params)} attempts to settle, {res.rowcount} moved")
    if moved:
        ids = list(moved)
        cases = {row[0]: row for row in conn.execute(_SETTLE_CASES, {"ids": ids})}
        ids = [c for c in ids if c in cases and (cases[c][4] is not None  # a linked citizen's: tried again
                                                 or (cases[c][2] == CaseStatus.REPORTED and not cases[c][3]))]
        # (a case settled by someone else meanwhile, e.g. a manual callback, gets nothing more)
        made = dict(conn.execute(_ROUND_ATTEMPTS, {"ids": ids}).all()) if ids else {}
        last_no = dict(conn.execute(_LAST_ATTEMPT_NO, {"ids": ids}).all()) if ids else {}
        retries, manual = [], {}
        debug = log.isEnabledFor(logging.DEBUG)
        for case_id in ids:
            i, key, outcome = moved[case_id]
            n_made = made.get(case_id, 0)
            delay = domain.policy.callback.retry_delay(max(n_made, 1))
            if delay is None and cases[case_id][4] is not None:  # no manual list for a merged (closed) case
                out[i] = "given_up"
                continue
            if delay is None:
                manual[case_id] = f"{n_made} automatic callback attempts without a rating (last: {outcome})"
                out[i] = "manual"
                log.debug("callback %s: %s; case on the manual-callback list", key, outcome)
                continue
            n = (last_no.get(case_id) or 0) + 1
            when = domain.policy.next_callback_slot(now + delay, domain.calendar)
            retries.append({"case_id": case_id, "attempt_no": n, "idempotency_key": idempotency_key(cases[case_id][1], n),
                            "state": SCHEDULED, "scheduled_for": when})
            out[i] = "retry"
            if debug:
                log.debug("callback %s: %s; attempt %d at %s", key, outcome, n, when.isoformat())
        # one line per batch, not per result: at hundreds a second a line each cost ~0.05 ms CPU per callback
        log.info("callback results: %d settled, %d retries scheduled, %d on the manual-callback list",
                 len(moved), len(retries), len(manual))
        if retries:
            conn.execute(_INSERT_ATTEMPT, retries)
        if manual:  # one read and one UPDATE for the batch, no ORM load or flush per case
            domain.workflow(session).mark_callback_manual_many(CALLBACK_ACTOR, manual)
    if later:
        for i, res in zip(later, record_unsuccessful_many(session, domain, [results[i] for i in later])):
            out[i] = res
    return out


def attempt_by_key(session: Session, key: str) -> CallbackAttempt | None:
    return session.execute(select(CallbackAttempt).where(CallbackAttempt.idempotency_key == key)).scalar_one_or_none()


def record_survey_answer(session: Session, domain: Domain, *, key: str, case_number: str, value: str,
                         call_id: int | None = None) -> dict:
    """The survey's `record_satisfaction` action: the rating is stored on the case with the call
    (R7.4); satisfied / basically satisfied cases are closed (R7.5), unsatisfied ones go to the
    back office's list (status `unsatisfied`)."""
    satisfaction = Satisfaction(value)
    now = _now(domain)
    attempt = attempt_by_key(session, key) if key else None
    wf = domain.workflow(session)
    case = wf.get_case(case_number)
    if attempt is not None and attempt.case_id != case.id:
        raise ValueError(f"callback {key} is not for case {case_number}")
    if case.status == CaseStatus.REPORTED:
        wf.record_callback(CALLBACK_ACTOR, case, satisfaction=satisfaction, call_id=call_id,
                           note=f"automatic callback {key}" if key else "automatic callback")
        if satisfaction != Satisfaction.UNSATISFIED:
            wf.close(CALLBACK_ACTOR, case, note="satisfied in the callback survey")
    elif wf.surviving_case(case) is not None:  # a linked citizen (callback.linked)
        wf.record_merged_callback(CALLBACK_ACTOR, case, satisfaction=satisfaction, call_id=call_id,
                                  note=f"automatic callback {key}" if key else "automatic callback")
    else:
        log.warning("callback %s: case %s is %s, rating %s kept on the attempt only", key, case.number, case.status,
                    satisfaction.value)
    if attempt is not None:
        _set_state(session, attempt.id, (SCHEDULED, DIALING, ANSWERED), DONE, now, result=satisfaction,
                   call_id=call_id, detail="rated")
    return {"status": case.status.value}


def finish_survey(session: Session, domain: Domain, *, key: str, satisfaction: str | None,
                  call_id: int | None = None, reason: str = "") -> str | None:
    """The survey call ended. Without a rating the attempt counts as unsuccessful (retry / manual)."""
    attempt = attempt_by_key(session, key) if key else None
    if attempt is None:
        return None
    if call_id is not None and attempt.call_id is None:
        attempt.call_id = call_id
        session.flush()
    if satisfaction and satisfaction != Satisfaction.NOT_RATED.value and attempt.state == DONE:
        return "done"
    return record_unsuccessful(session, domain, attempt.id, NOT_RATED, detail=reason or "no key pressed",
                               from_states=(DIALING, ANSWERED))


# ---- read side (CLI, API; the attempts listed: callback.listing) -------------------------------------------------------------------
def manual_list(session: Session, limit: int = 100) -> list[Case]:
    """The front desk's manual-callback list."""
    return list(session.execute(
        select(Case).where(Case.status == CaseStatus.REPORTED, Case.callback_manual.is_(True))
        .order_by(Case.callback_due_at).limit(limit)).scalars())


def counts(session: Session) -> dict[str, int]:
    return dict(session.execute(select(CallbackAttempt.state, func.count()).group_by(CallbackAttempt.state)).all())


def due_count(session: Session, domain: Domain) -> int:
    now = _now(domain)
    return session.execute(select(func.count()).select_from(CallbackAttempt).where(
        CallbackAttempt.state == SCHEDULED, CallbackAttempt.scheduled_for <= now)).scalar_one()


def orphans(session: Session, exclude: Iterable[int]) -> list[tuple[int, str, str]]:
    """Attempts in flight that this process is not driving: (id, key, state)."""
    q = select(CallbackAttempt.id, CallbackAttempt.idempotency_key, CallbackAttempt.state).where(
        CallbackAttempt.state.in_(IN_FLIGHT_STATES))
    ex = list(exclude)
    if ex:
        q = q.where(CallbackAttempt.id.not_in(ex))
    return [tuple(r) for r in session.execute(q).all()]


__all__ = [
    "CALLBACK_ACTOR", "Claimed", "plan_due", "claim", "unclaim", "in_flight_count", "mark_answered",
    "record_unsuccessful", "record_unsuccessful_many", "Unsuccessful", "unclaim_many",
    "record_survey_answer", "finish_survey", "manual_list", "counts",
    "due_count", "orphans", "idempotency_key", "attempt_by_key", "STATE_AFTER_DIAL", "settled_keys",
]
