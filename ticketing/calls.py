"""A2: every call is logged to its case — parties, path through the menu, outcome, recording.

Writes are idempotent on Asterisk's uniqueid (calls) and on a dedup key (call events), so a
replayed event or a reconnect never logs anything twice.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ticketing.models import Call, CallEvent

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
