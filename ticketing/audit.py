"""A1: the append-only, hash-chained record of every action.

Each event's hash covers its own fields and the previous event's hash, and the chain's head
(last id, last hash, count) is kept in one row that appenders lock. Editing, inserting or
deleting any event, including the last, breaks `verify`.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, event, insert, select, update
from sqlalchemy.orm import Session

from ticketing.models import AuditEvent, AuditHead

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who acts: a user, or the system (IVR, scheduler) under a name."""

    user_id: int | None
    name: str
    role: str
    unit_id: int | None = None


SYSTEM = Actor(user_id=None, name="system", role="system")


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if hasattr(value, "value") and not isinstance(value, (int, float, str, bool)):
        return value.value
    return value


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    payload = json.dumps(_canonical(fields), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256((prev_hash + payload).encode()).hexdigest()


def _hashed_fields(ev: AuditEvent) -> dict[str, Any]:
    return {
        "id": ev.id,
        "at": ev.at.astimezone(UTC).replace(microsecond=0) if ev.at else None,
        "case_id": ev.case_id,
        "work_order_id": ev.work_order_id,
        "actor_id": ev.actor_id,
        "actor_name": ev.actor_name,
        "actor_role": ev.actor_role,
        "action": ev.action,
        "data": ev.data,
        "channel": ev.channel,
        "call_id": ev.call_id,
    }


_HEAD_KEY = "audit_head_locked"

# Core statements, built once: appending is on every write path, and the ORM's unit of work
# (identity map, flush planning) costs several times the statements themselves.
_EVENTS = AuditEvent.__table__
_HEADS = AuditHead.__table__
_SELECT_HEAD = (select(_HEADS.c.last_id, _HEADS.c.last_hash, _HEADS.c.count)
                .where(_HEADS.c.id == 1).with_for_update())
_INSERT_HEAD = insert(_HEADS)
_UPDATE_HEAD = (update(_HEADS).where(_HEADS.c.id == 1)
                .values(last_id=bindparam("new_last_id"), last_hash=bindparam("new_last_hash"),
                        count=bindparam("new_count")))
_INSERT_EVENT = insert(_EVENTS)


def _lock_head(session: Session, conn) -> list:
    """The chain head [last_id, last_hash, count], locked until the transaction ends; later
    events of the same (sub)transaction reuse it instead of locking it again."""
    head = session.info.get(_HEAD_KEY)
    if head is not None:
        return head
    row = conn.execute(_SELECT_HEAD).first()
    if row is None:
        conn.execute(_INSERT_HEAD, {"id": 1, "last_id": 0, "last_hash": GENESIS, "count": 0})
        head = [0, GENESIS, 0]
    else:
        head = list(row)
    session.info[_HEAD_KEY] = head
    return head


@event.listens_for(Session, "after_transaction_end")
def _forget_head(session: Session, transaction) -> None:
    # Whatever (sub)transaction ends, read the head again next time: a savepoint rolled back
    # takes its events and head updates with it (and on PostgreSQL the lock taken inside it).
    session.info.pop(_HEAD_KEY, None)


def record(
    session: Session,
    actor: Actor,
    action: str,
    *,
    at: datetime,
    case_id: int | None = None,
    work_order_id: int | None = None,
    data: dict[str, Any] | None = None,
    channel: str | None = None,
    call_id: int | None = None,
) -> int:
    """Append one event to the chain in the caller's transaction; returns its id.

    Written at once (an INSERT and the head's UPDATE), so queries later in the transaction and
    savepoints see the chain as it is."""
    # Rows the event points at may still be pending: written first (as autoflush did). Also
    # keeps the lock order of the ORM days: the case's row, then the chain head.
    session.flush()
    conn = session.connection()
    head = _lock_head(session, conn)
    fields = {
        "id": head[0] + 1,
        "at": at.astimezone(UTC).replace(microsecond=0),
        "case_id": case_id,
        "work_order_id": work_order_id,
        "actor_id": actor.user_id,
        "actor_name": actor.name,
        "actor_role": str(actor.role),
        "action": action,
        "data": _canonical(data or {}),
        "channel": channel,
        "call_id": call_id,
    }
    digest = event_hash(head[1], fields)
    conn.execute(_INSERT_EVENT, {**fields, "prev_hash": head[1], "hash": digest})
    conn.execute(_UPDATE_HEAD, {"new_last_id": fields["id"], "new_last_hash": digest, "new_count": head[2] + 1})
    head[:] = [fields["id"], digest, head[2] + 1]
    return fields["id"]


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(session: Session, batch: int = 5000) -> VerifyReport:
    """Walk the whole chain; report every edited, inserted or deleted event."""
    report = VerifyReport()
    head = session.get(AuditHead, 1)
    prev_hash = GENESIS
    expected_id = 1
    last_id = 0
    while True:
        rows = session.execute(
            select(AuditEvent).where(AuditEvent.id > last_id).order_by(AuditEvent.id).limit(batch)
        ).scalars().all()
        if not rows:
            break
        for ev in rows:
            report.checked += 1
            if ev.id != expected_id:
                report.problems.append(f"event {expected_id}..{ev.id - 1} missing (deleted)")
            if ev.prev_hash != prev_hash:
                report.problems.append(f"event {ev.id}: does not follow the event before it (inserted or reordered)")
            if event_hash(ev.prev_hash, _hashed_fields(ev)) != ev.hash:
                report.problems.append(f"event {ev.id}: content does not match its hash (edited)")
            prev_hash = ev.hash
            expected_id = ev.id + 1
            last_id = ev.id
        session.expunge_all()
    if head is None:
        if report.checked:
            report.problems.append("chain head missing")
    else:
        if head.last_id != last_id or head.last_hash != prev_hash:
            report.problems.append(
                f"chain head says last event {head.last_id}, store ends at {last_id} (events deleted or appended outside the log)"
            )
        if head.count != report.checked:
            report.problems.append(f"chain head counts {head.count} events, store holds {report.checked}")
    return report
