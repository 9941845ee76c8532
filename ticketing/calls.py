"""A2: every call is logged to its case — parties, path through the menu, outcome, recording.

This module is the only writer of `calls` and `call_events` rows. The voice menu, call control,
the CEL gap-filler and the callback runner hand it what happened; the checks (known outcomes, which
outcome may follow which, fields set once) live here once.

Each write is one statement built once, run on whatever the caller holds: a Session (`on_session`)
or, on the voice menu's event-loop path, a DBAPI cursor with prepared statements (`on_cursor`,
ticketing.writer) -- the same SQL and stored values either way. Writes are idempotent on
Asterisk's uniqueid (calls) and on a dedup key (call events), so a replayed event or a reconnect
never logs anything twice.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, bindparam, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ticketing.models import Call, CallEvent
from ticketing.queue_entries import QUEUE_KINDS, refresh_call
from ticketing.writer import Run, on_connection, runner

OUTCOMES = frozenset({"self_served", "queued", "message_left", "abandoned", "failed", "answered", "no_answer",
                      "busy", "completed"})
# Outcomes a later event may still change (an operator answering, the caller giving up in the queue).
_OPEN_OUTCOMES = (None, "queued")
# The reason of a call closed because its node stopped (ticketing/nodes.py): a guess from silence,
# so a fact logged later (the node was only cut off) still changes the outcome.
NODE_LOST = "node_lost"

_CALLS = Call.__table__
_OPEN_COLUMNS = ("uniqueid", "linkedid", "direction", "purpose", "caller_number", "callee_number", "started_at",
                 "answered_at", "flow_path", "digits", "carrier")
CARRIERS = frozenset({"asterisk", "twilio"})  # the drivers a call can be carried by (calls.carrier)
_DIALECT_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _open_statement(dialect: str):
    insert = _DIALECT_INSERTS[dialect]
    stmt = insert(_CALLS).values({c: bindparam(c, type_=_CALLS.c[c].type) for c in _OPEN_COLUMNS})
    return stmt.on_conflict_do_nothing(index_elements=[_CALLS.c.uniqueid]).returning(_CALLS.c.id)


def _batch_open_statement(dialect: str):
    return (_DIALECT_INSERTS[dialect](_CALLS).on_conflict_do_nothing(index_elements=[_CALLS.c.uniqueid])
            .returning(_CALLS.c.uniqueid, _CALLS.c.id))


def _event_statement(dialect: str):
    ev = CallEvent.__table__
    stmt = _DIALECT_INSERTS[dialect](ev).values(
        {c: bindparam(c, type_=ev.c[c].type) for c in ("call_id", "at", "kind", "data", "dedup_key")})
    return stmt.on_conflict_do_nothing(index_elements=[ev.c.dedup_key]).returning(ev.c.id)


# Built once: the voice menu runs these for every call, and building a statement (coercions, cache
# key) cost more than executing it.
_OPEN_CALL = {d: _open_statement(d) for d in _DIALECT_INSERTS}
_OPEN_CALLS = {d: _batch_open_statement(d) for d in _DIALECT_INSERTS}
_ADD_EVENT = {d: _event_statement(d) for d in _DIALECT_INSERTS}
_JSON_OR_NULL = JSON(none_as_null=True)  # None is SQL NULL (keep the stored list), not JSON null
_CALL_ID_BY_UNIQUEID = select(_CALLS.c.id).where(_CALLS.c.uniqueid == bindparam("uniqueid"))


def _keep_unless_given(column: str):
    """SET column = the given value, or the stored one when None is given."""
    col = _CALLS.c[column]
    return func.coalesce(bindparam(column, type_=_JSON_OR_NULL if column in ("flow_path", "digits") else col.type),
                         col)


_FINISH_CALL = (
    update(_CALLS).where(_CALLS.c.id == bindparam("call_id"))
    .values(outcome=bindparam("outcome"), outcome_reason=bindparam("reason"),
            ended_at=func.coalesce(_CALLS.c.ended_at, bindparam("ended_at", type_=_CALLS.c.ended_at.type)),
            flow_path=_keep_unless_given("flow_path"), digits=_keep_unless_given("digits"),
            case_id=_keep_unless_given("case_id"), recording_path=_keep_unless_given("recording_path"))
)

def _statement(table: dict, run: Run):
    try:
        return table[run.dialect.name]
    except KeyError:
        raise NotImplementedError(f"the call log runs on SQLite and PostgreSQL, not {run.dialect.name}") from None


def check_outcome(outcome: str) -> str:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown call outcome {outcome!r}")
    return outcome


def check_carrier(carrier: str) -> str:
    if carrier not in CARRIERS:
        raise ValueError(f"unknown carrier {carrier!r}")
    return carrier


# -- the call's row ----------------------------------------------------------------------------

def open_call(where: Session | Run, *, uniqueid: str, linkedid: str = "", direction: str = "inbound",
              purpose: str = "hotline", caller_number: str = "", callee_number: str = "",
              started_at: datetime, answered_at: datetime | None = None, carrier: str = "asterisk") -> int:
    """The call's row, created on first sight; on a replay the id of the row already there (its
    first values kept). One INSERT .. ON CONFLICT DO NOTHING RETURNING id. `carrier`: the driver
    that carries the call (A2 says which one), asterisk unless the caller says otherwise."""
    run = runner(where)
    row = run(_statement(_OPEN_CALL, run), {
        "uniqueid": uniqueid, "linkedid": linkedid or uniqueid, "direction": direction, "purpose": purpose,
        "caller_number": caller_number, "callee_number": callee_number, "started_at": started_at,
        "answered_at": answered_at, "flow_path": [], "digits": [], "carrier": check_carrier(carrier)}).fetchone()
    if row is None:  # logged before (a replayed AGI session or event)
        row = run(_CALL_ID_BY_UNIQUEID, {"uniqueid": uniqueid}).fetchone()
    return row[0]


def node_prefix(node: str) -> str:
    """What every uniqueid made by cluster node `node` starts with: Asterisk's systemname and a dash
    (asterisk/asterisk.conf). The one place a call is attributed to its node."""
    return f"{node}-"


def of_node(node: str):
    """SQL condition: the call was made by node `node` (its uniqueid carries the node's name)."""
    return _CALLS.c.uniqueid.startswith(node_prefix(node), autoescape=True)


def node_of(uniqueid: str, nodes: Iterable[str]) -> str | None:
    """Which of `nodes` made the call with this uniqueid (None: none of them)."""
    return next((n for n in nodes if uniqueid.startswith(node_prefix(n))), None)


def is_open(call: Call) -> bool:
    """Not over as the log knows it: no final outcome yet, or no end time."""
    return call.outcome in _OPEN_OUTCOMES or call.ended_at is None


def open_condition():
    """`is_open` as an SQL condition on calls."""
    return _CALLS.c.outcome.is_(None) | (_CALLS.c.outcome == "queued") | _CALLS.c.ended_at.is_(None)


def _still_open(call: Call) -> bool:
    """Its outcome may still change: none yet, queued, or only guessed from its node's silence."""
    return call.outcome in _OPEN_OUTCOMES or (call.outcome == "failed" and call.outcome_reason == NODE_LOST)


def call_row(session: Session, **open_fields: Any) -> Call:
    """`open_call`, as the session's Call object (for callers that read it afterwards)."""
    return session.get(Call, open_call(session, **open_fields))


def finish_call(where: Session | Run, call_id: int, *, outcome: str, ended_at: datetime, reason: str | None = None,
                flow_path: list[str] | None = None, digits: list[dict[str, Any]] | None = None,
                case_id: int | None = None, recording_path: str | None = None) -> None:
    """The call's outcome: one UPDATE by id. None leaves a field as it is; the first end time stays.
    A Call object of this row already in a session is not refreshed."""
    run = runner(where)
    run(_FINISH_CALL, {
        "call_id": call_id, "outcome": check_outcome(outcome), "reason": reason, "ended_at": ended_at,
        "flow_path": list(flow_path) if flow_path is not None else None,
        "digits": list(digits) if digits is not None else None, "case_id": case_id,
        "recording_path": recording_path})


def log_finished_calls(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Rows of calls already over (the callback runner's batch), each with the open fields and
    outcome, outcome_reason, ended_at, case_id: one multi-row INSERT; a call logged before gets this
    outcome as `finish_call` gives it. Returns uniqueid -> call id."""
    if not rows:
        return {}
    for r in rows:
        check_outcome(r["outcome"])
        r.setdefault("carrier", "asterisk")
    run = on_connection(session)  # an executemany with RETURNING: Core's, not a DBAPI cursor's
    ids = dict(run(_statement(_OPEN_CALLS, run), rows).all())
    for r in rows:
        if r["uniqueid"] not in ids:
            call_id = ids[r["uniqueid"]] = open_call(run, **{k: r[k] for k in _OPEN_COLUMNS
                                                             if k in r and k not in ("flow_path", "digits")})
            finish_call(run, call_id, outcome=r["outcome"], ended_at=r["ended_at"], reason=r.get("outcome_reason"),
                        case_id=r.get("case_id"))
    return ids


def link_call(call: Call, *, case_id: int | None = None, operator_id: int | None = None) -> None:
    """The call's case and answering operator, each set once (the first one found stays)."""
    if case_id is not None and call.case_id is None:
        call.case_id = case_id
    if operator_id is not None and call.operator_id is None:
        call.operator_id = operator_id


def set_recording(call: Call, path: str | None) -> bool:
    """The call's recording file (None: purged); False when it says so already."""
    if call.recording_path == path:
        return False
    call.recording_path = path
    return True


def queued_by_operator_channel(call: Call, reason: str) -> None:
    """A call first seen in the operator queue (no menu record): queued, with the menu's reason."""
    if call.outcome is None:
        call.outcome = "queued"
        call.outcome_reason = reason[:64]


def apply_event(call: Call, kind: str, *, at: datetime, uniqueid: str, operator_id: int | None = None,
                operator_leg: bool = False) -> None:
    """What a logged event says about the call's outcome (the outcome transitions, once):
    an operator connected answers a queued call, a caller who hangs up in the queue abandoned it,
    the end of the call's own leg is its end time (the latest seen). After an outage (the hotline
    or its AMI link down, the store unreachable) the queue's own events may be missing, and Asterisk's
    CEL records stand in: an operator's leg entering the call's bridge answered an inbound call, and
    the call's end (LINKEDID_END) closes an inbound call still open -- nobody answered it, so the
    caller gave up: abandoned (in the queue if it was seen there, else `ended_unobserved`).
    `operator_leg`: the event is of an operator's phone's channel.
    `node_lost` (ticketing/nodes.py: the call's node stopped and never came back in time): a call not
    yet answered failed, an answered one keeps its outcome; both end at `at` (the node's last sign
    of life) if they had no end. A later fact of the call (the node was only cut off) still counts."""
    if kind == "operator_connected" or (kind == "bridge_enter" and operator_leg and call.direction == "inbound"):
        link_call(call, operator_id=operator_id)
        if _still_open(call) or _abandoned_after(call, at):
            if call.outcome == "abandoned" or call.outcome_reason == NODE_LOST:
                call.outcome_reason = None  # why it was taken for over: no longer so
            call.outcome = "answered"
    elif kind == "call_end" and call.direction == "inbound" and _still_open(call):
        call.outcome_reason = "caller_hung_up_in_queue" if call.outcome == "queued" else "ended_unobserved"
        call.outcome = "abandoned"
        if call.ended_at is None:
            call.ended_at = at
    elif kind == "queue_abandoned" and _still_open(call):
        call.outcome = "abandoned"
        call.outcome_reason = "caller_hung_up_in_queue"
    elif kind == NODE_LOST and is_open(call):
        if call.outcome in _OPEN_OUTCOMES:
            call.outcome, call.outcome_reason = "failed", NODE_LOST
        elif call.outcome_reason is None:  # answered: the talk happened; why it has no end of its own
            call.outcome_reason = NODE_LOST
        if call.ended_at is None:
            call.ended_at = at
    elif kind == "leg_end" and uniqueid == call.uniqueid:
        ended = _aware(call.ended_at)
        if ended is None or at > ended:
            call.ended_at = at


def _abandoned_after(call: Call, answered_at: datetime) -> bool:
    """Taken for abandoned, but the call ended after this answer: the end was logged first (after an
    outage the restarted hotline's live events come before the CEL backlog of what it missed), and
    the answer, which came first, decides. The log's facts count by their time, not their arrival."""
    ended = _aware(call.ended_at)
    return call.outcome == "abandoned" and ended is not None and _aware(answered_at) <= ended


def _aware(moment: datetime | None) -> datetime | None:
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)  # SQLite hands back naive UTC
    return moment


# -- the call's events -------------------------------------------------------------------------

def add_event(where: Session | Run, call_id: int, *, kind: str, at: datetime, dedup_key: str,
              data: dict[str, Any] | None = None) -> bool:
    """Log one leg, hold, transfer, recording or conference event; False if it was logged already
    (by this writer before, or a concurrent one: ON CONFLICT on the dedup key)."""
    run = runner(where)
    row = run(_statement(_ADD_EVENT, run), {"call_id": call_id, "at": at, "kind": kind, "data": data or {},
                                            "dedup_key": dedup_key}).fetchone()
    if row is not None and kind in QUEUE_KINDS:  # the queue figures' row of the call, in this transaction
        refresh_call(run, call_id)
    return row is not None
