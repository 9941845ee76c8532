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

from sqlalchemy import bindparam, event, select, update
from sqlalchemy.orm import Session

from ticketing.models import AuditEvent, AuditHead
from ticketing.prepared import Run, insert_by_name, on_session

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


# Core statements, built once: appending is on every write path, and the ORM's unit of work
# (identity map, flush planning) costs several times the statements themselves.
_EVENTS = AuditEvent.__table__
_HEADS = AuditHead.__table__
_SELECT_HEAD = (select(_HEADS.c.last_id, _HEADS.c.last_hash, _HEADS.c.count)
                .where(_HEADS.c.id == 1).with_for_update())
_UPDATE_HEAD = (update(_HEADS).where(_HEADS.c.id == 1)
                .values(last_id=bindparam("new_last_id"), last_hash=bindparam("new_last_hash"),
                        count=bindparam("new_count")))
# Every column a named bind: the same statement runs through a Session or prepared on a cursor.
_INSERT_HEAD = insert_by_name(_HEADS)
_INSERT_EVENT = insert_by_name(_EVENTS)


def _locked_head(run: Run) -> list:
    """The chain head (last id, last hash, count), locked until the transaction ends (SELECT … FOR
    UPDATE; on SQLite the write lock is already held); made on the first event ever."""
    row = run(_SELECT_HEAD, {}).fetchone()
    if row is None:
        run(_INSERT_HEAD, {"id": 1, "last_id": 0, "last_hash": GENESIS, "count": 0})
        return [0, GENESIS, 0]
    return list(row)


def _append(run: Run, events: list[dict[str, Any]], head: list) -> None:
    """Write `events` (rows that follow the stored head) and the head after them."""
    run(_INSERT_EVENT, events)
    last_id, last_hash, count = head
    run(_UPDATE_HEAD, {"new_last_id": last_id, "new_last_hash": last_hash, "new_count": count})

_CHAIN = "audit_chain"          # session.info: the chain as this transaction sees it
_SNAPSHOTS = "audit_snapshots"  # session.info: that state when each savepoint began


class _Chain:
    """The locked head (including the events not yet written) and those events' rows.

    A transaction's events are written together — one multi-row INSERT and one UPDATE of the
    head — before it commits and before any query through the session, so whatever reads the
    chain through the session, or after commit, sees every event."""

    __slots__ = ("head", "pending")

    def __init__(self, head: list, pending: list):
        self.head = head
        self.pending = pending

    def copy(self) -> _Chain:
        return _Chain(list(self.head), list(self.pending))


def _chain(session: Session) -> _Chain:
    """The chain head, locked (SELECT … FOR UPDATE; on SQLite the write lock is already held)
    until the transaction ends."""
    chain = session.info.get(_CHAIN)
    if chain is None:
        chain = session.info[_CHAIN] = _Chain(_locked_head(on_session(session)), [])
    return chain


def write_pending(session: Session) -> None:
    """Write the events recorded in this transaction and not yet written (the hooks below call
    this; call it before reading the chain through `session.connection()` yourself)."""
    chain = session.info.get(_CHAIN)
    if chain is not None and chain.pending:
        _append(on_session(session), chain.pending, chain.head)
        chain.pending = []


@event.listens_for(Session, "before_commit")
def _write_before_commit(session: Session) -> None:
    write_pending(session)


@event.listens_for(Session, "do_orm_execute")
def _write_before_query(orm_execute_state) -> None:
    write_pending(orm_execute_state.session)


@event.listens_for(Session, "after_transaction_create")
def _remember_at_savepoint(session: Session, transaction) -> None:
    if transaction.nested:
        chain = session.info.get(_CHAIN)
        session.info.setdefault(_SNAPSHOTS, {})[transaction] = chain.copy() if chain is not None else None


@event.listens_for(Session, "after_soft_rollback")
def _restore_at_savepoint_rollback(session: Session, previous_transaction) -> None:
    # The database is back where the savepoint began (events written inside it are gone, and on
    # PostgreSQL a head lock taken inside it): so is the chain as we see it.
    snapshots = session.info.get(_SNAPSHOTS)
    if snapshots and previous_transaction in snapshots:
        chain = snapshots.pop(previous_transaction)
        if chain is None:
            session.info.pop(_CHAIN, None)
        else:
            session.info[_CHAIN] = chain


@event.listens_for(Session, "after_transaction_end")
def _forget_at_end(session: Session, transaction) -> None:
    if transaction.parent is None:  # the transaction itself, not a savepoint: lock released
        session.info.pop(_CHAIN, None)
        session.info.pop(_SNAPSHOTS, None)


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
    """Append one event to the chain in the caller's transaction; returns its id."""
    chain = session.info.get(_CHAIN)
    if chain is None:
        # Before taking the head lock, write what is pending (the ORM's query for the head did
        # this by autoflush): rows are locked before the head, as always. Later events of the
        # transaction do not flush; whatever they point at has an id, so it is in the database.
        session.flush()
        chain = _chain(session)
    row, chain.head = _next_event(chain.head, actor, action, at=at, case_id=case_id, work_order_id=work_order_id,
                                  data=data, channel=channel, call_id=call_id)
    chain.pending.append(row)
    return row["id"]


def _next_event(head: list, actor: Actor, action: str, *, at: datetime, case_id: int | None,
                work_order_id: int | None, data: dict[str, Any] | None, channel: str | None,
                call_id: int | None) -> tuple[dict[str, Any], list]:
    """The event row that follows `head` (last id, last hash, count), and the head after it."""
    last_id, last_hash, count = head
    fields = {
        "id": last_id + 1,
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
    digest = event_hash(last_hash, fields)
    return {**fields, "prev_hash": last_hash, "hash": digest}, [fields["id"], digest, count + 1]


def record_now(run: Run, actor: Actor, action: str, *, at: datetime, case_id: int | None = None,
               work_order_id: int | None = None, data: dict[str, Any] | None = None, channel: str | None = None,
               call_id: int | None = None) -> int:
    """`record` through a statement runner (ticketing.prepared), written at once: the head read and
    locked, the event and the head written, by the same statements as `record`'s. For a transaction
    that appends one event and holds no Session chain (the voice menu's case, ticketing.intake)."""
    event, head = _next_event(_locked_head(run), actor, action, at=at, case_id=case_id,
                              work_order_id=work_order_id, data=data, channel=channel, call_id=call_id)
    _append(run, [event], head)
    return event["id"]


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
