"""A2: every call is logged to its case — parties, path through the menu, outcome, recording.

Writes are idempotent on Asterisk's uniqueid (calls) and on a dedup key (call events), so a
replayed event or a reconnect never logs anything twice.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ticketing.models import Call, CallEvent
from ticketing.prepared import Prepared

OUTCOMES = frozenset({"self_served", "queued", "message_left", "abandoned", "failed", "answered", "no_answer",
                      "busy", "completed"})


def open_call(session: Session, *, uniqueid: str, linkedid: str = "", direction: str = "inbound",
              purpose: str = "hotline", caller_number: str = "", callee_number: str = "",
              started_at: datetime, answered_at: datetime | None = None) -> Call:
    """The call's row, created on first sight and returned as is afterwards."""
    call = session.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one_or_none()
    if call is not None:
        return call
    call = Call(uniqueid=uniqueid, linkedid=linkedid or uniqueid, direction=direction, purpose=purpose,
                caller_number=caller_number, callee_number=callee_number, started_at=started_at,
                answered_at=answered_at, flow_path=[], digits=[])
    session.add(call)
    session.flush()
    return call


def _open_call_statement(dialect: str):
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    cols = ("uniqueid", "linkedid", "direction", "purpose", "caller_number", "callee_number", "started_at",
            "answered_at", "flow_path", "digits")
    stmt = insert(Call).values({c: bindparam(c, type_=Call.__table__.c[c].type) for c in cols})
    return stmt.on_conflict_do_nothing(index_elements=[Call.uniqueid]).returning(Call.id)


# Built once: the voice menu runs these for every call, and building a statement (coercions, cache
# key) cost more than executing it.
_OPEN_CALL = {d: _open_call_statement(d) for d in ("postgresql", "sqlite")}
_JSON_OR_NULL = JSON(none_as_null=True)  # None is SQL NULL (keep the stored list), not JSON null
_CALL_ID_BY_UNIQUEID = select(Call.id).where(Call.uniqueid == bindparam("uniqueid"))
_FINISH_CALL = (
    update(Call).where(Call.id == bindparam("call_id"))
    .values(outcome=bindparam("outcome"), outcome_reason=bindparam("reason"),
            ended_at=func.coalesce(Call.ended_at, bindparam("ended_at", type_=Call.__table__.c.ended_at.type)),
            flow_path=func.coalesce(bindparam("flow_path", type_=_JSON_OR_NULL), Call.flow_path),
            digits=func.coalesce(bindparam("digits", type_=_JSON_OR_NULL), Call.digits),
            case_id=func.coalesce(bindparam("case_id", type_=Call.__table__.c.case_id.type), Call.case_id),
            recording_path=func.coalesce(bindparam("recording_path", type_=Call.__table__.c.recording_path.type),
                                         Call.recording_path))
)


def open_call_id(session: Session, *, uniqueid: str, linkedid: str = "", direction: str = "inbound",
                 purpose: str = "hotline", caller_number: str = "", callee_number: str = "",
                 started_at: datetime, answered_at: datetime | None = None) -> int:
    """`open_call` for the voice menu's hot path: one INSERT .. ON CONFLICT DO NOTHING RETURNING id
    (no ORM object, no SELECT first); the id of the row already there on a replay."""
    stmt = _OPEN_CALL.get(session.get_bind().dialect.name)
    if stmt is None:  # another database: the portable way
        return open_call(session, uniqueid=uniqueid, linkedid=linkedid, direction=direction, purpose=purpose,
                         caller_number=caller_number, callee_number=callee_number, started_at=started_at,
                         answered_at=answered_at).id
    conn = session.connection()
    call_id = conn.execute(stmt, {"uniqueid": uniqueid, "linkedid": linkedid or uniqueid, "direction": direction,
                                  "purpose": purpose, "caller_number": caller_number, "callee_number": callee_number,
                                  "started_at": started_at, "answered_at": answered_at, "flow_path": [],
                                  "digits": []}).scalar_one_or_none()
    if call_id is None:  # logged before (a replayed AGI session): keep the first row
        call_id = conn.execute(_CALL_ID_BY_UNIQUEID, {"uniqueid": uniqueid}).scalar_one()
    return call_id


def finish_call_id(session: Session, call_id: int, *, outcome: str, ended_at: datetime, reason: str | None = None,
                   flow_path: list[str] | None = None, digits: list[dict[str, Any]] | None = None,
                   case_id: int | None = None, recording_path: str | None = None) -> None:
    """`finish_call` as one UPDATE by id (no load of the row first); None leaves a field as it is,
    like `finish_call`. A Call object of this row already in the session is not refreshed: callers
    that hold one use `finish_call`."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown call outcome {outcome!r}")
    session.connection().execute(_FINISH_CALL, {
        "call_id": call_id, "outcome": outcome, "reason": reason, "ended_at": ended_at,
        "flow_path": list(flow_path) if flow_path is not None else None,
        "digits": list(digits) if digits is not None else None, "case_id": case_id,
        "recording_path": recording_path})


_PREPARED: dict[tuple[str, str], Prepared] = {}


def _prepared(key: str, statement, dialect) -> Prepared:
    prepared = _PREPARED.get((key, dialect.name))
    if prepared is None:
        prepared = _PREPARED[(key, dialect.name)] = Prepared(statement, dialect)
    return prepared


def open_call_id_dbapi(cursor, dialect, *, uniqueid: str, linkedid: str = "", direction: str = "inbound",
                       purpose: str = "hotline", caller_number: str = "", callee_number: str = "",
                       started_at: datetime, answered_at: datetime | None = None) -> int:
    """`open_call_id` on a DBAPI cursor of a SQLite connection already in a transaction (the voice
    menu's event-loop path, agi/hotline.py): the same statements and stored values."""
    row = _prepared("open", _OPEN_CALL["sqlite"], dialect).execute(cursor, {
        "uniqueid": uniqueid, "linkedid": linkedid or uniqueid, "direction": direction, "purpose": purpose,
        "caller_number": caller_number, "callee_number": callee_number, "started_at": started_at,
        "answered_at": answered_at, "flow_path": [], "digits": []}).fetchone()
    if row is None:  # logged before (a replayed AGI session): keep the first row
        row = _prepared("by_uniqueid", _CALL_ID_BY_UNIQUEID, dialect).execute(cursor, {"uniqueid": uniqueid}).fetchone()
    return row[0]


def finish_call_id_dbapi(cursor, dialect, call_id: int, *, outcome: str, ended_at: datetime, reason: str | None = None,
                         flow_path: list[str] | None = None, digits: list[dict[str, Any]] | None = None,
                         case_id: int | None = None, recording_path: str | None = None) -> None:
    """`finish_call_id` on a DBAPI cursor (see open_call_id_dbapi)."""
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown call outcome {outcome!r}")
    _prepared("finish", _FINISH_CALL, dialect).execute(cursor, {
        "call_id": call_id, "outcome": outcome, "reason": reason, "ended_at": ended_at,
        "flow_path": list(flow_path) if flow_path is not None else None,
        "digits": list(digits) if digits is not None else None, "case_id": case_id,
        "recording_path": recording_path})


def finish_call(call: Call, *, outcome: str, ended_at: datetime, reason: str | None = None,
                flow_path: list[str] | None = None, digits: list[dict[str, Any]] | None = None,
                case_id: int | None = None, recording_path: str | None = None) -> Call:
    if outcome not in OUTCOMES:
        raise ValueError(f"unknown call outcome {outcome!r}")
    call.outcome = outcome
    call.outcome_reason = reason
    call.ended_at = call.ended_at or ended_at
    if flow_path is not None:
        call.flow_path = list(flow_path)
    if digits is not None:
        call.digits = list(digits)
    if case_id is not None:
        call.case_id = case_id
    if recording_path is not None:
        call.recording_path = recording_path
    return call


def add_event(session: Session, call: Call, *, kind: str, at: datetime, dedup_key: str,
              data: dict[str, Any] | None = None) -> CallEvent | None:
    """Log one leg, hold, transfer or conference event; None if it was logged already."""
    existing = session.execute(select(CallEvent).where(CallEvent.dedup_key == dedup_key)).scalar_one_or_none()
    if existing is not None:
        return None
    ev = CallEvent(call_id=call.id, at=at, kind=kind, data=data or {}, dedup_key=dedup_key)
    try:
        with session.begin_nested():
            session.add(ev)
            session.flush()
    except IntegrityError:
        return None  # a concurrent writer logged it first
    return ev
