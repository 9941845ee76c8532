"""A1: the append-only, hash-chained record of every action.

Each event's hash covers its own fields (its time to the microsecond) and the previous event's
hash, and the chain's head (last id, last hash, count) is kept in one row that appenders lock.
Editing, inserting or deleting any event, including the last, breaks `verify`. The hash is an
HMAC under a key held outside the database, and every commit that moves the head writes a signed
checkpoint outside it (ticketing.audit_seal): a database writer can neither re-hash an edited
chain nor rewind its tail unseen. Events from before the first key keep their unkeyed SHA-256.
"""
from __future__ import annotations

import hashlib
import json
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, event, select, update
from sqlalchemy.orm import Session

from ticketing import audit_seal
from ticketing.audit_seal import AuditKey, key_for, seal
from ticketing.models import AuditEvent, AuditHead
from ticketing.writer import Run, insert_by_name, on_session

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who acts: a user, or the system (IVR, scheduler) under a name."""

    user_id: int | None
    name: str
    role: str
    unit_id: int | None = None
    # Article 5 (二) 6: the unit's leader, who approves its reports back (ticketing.access)
    unit_leader: bool = False


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


def _payload(fields: dict[str, Any]) -> str:
    return json.dumps(_canonical(fields), sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def event_hash(prev_hash: str, fields: dict[str, Any]) -> str:
    """The unkeyed SHA-256 of events older than the first audit key."""
    return hashlib.sha256((prev_hash + _payload(fields)).encode()).hexdigest()


def sealed_hash(key: AuditKey | None, prev_hash: str, fields: dict[str, Any]) -> str:
    """An event's hash: HMAC-SHA256 under its key (unkeyed SHA-256 before the first key)."""
    return seal(key, prev_hash, _payload(fields))


def _hashed_fields(ev: AuditEvent, *, full_precision: bool = True) -> dict[str, Any]:
    at = ev.at.astimezone(UTC) if ev.at else None
    return {
        "id": ev.id,
        # keyed events hash their time to the microsecond; older ones were stored to the second
        "at": at if full_precision or at is None else at.replace(microsecond=0),
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
# On PostgreSQL one event and the head after it in one statement, one round trip: the same INSERT
# and UPDATE, the INSERT as a data-modifying WITH (always run to completion; SQLite has none).
_APPEND_ONE = {"postgresql": _UPDATE_HEAD.add_cte(_INSERT_EVENT.cte("appended"))}


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
    last_id, last_hash, count = head
    moved = {"new_last_id": last_id, "new_last_hash": last_hash, "new_count": count}
    both = _APPEND_ONE.get(run.dialect.name) if len(events) == 1 else None
    if both is not None:
        run(both, {**events[0], **moved})
        return
    run(_INSERT_EVENT, events)
    run(_UPDATE_HEAD, moved)

_CHAIN = "audit_chain"          # session.info: the chain as this transaction sees it
_SNAPSHOTS = "audit_snapshots"  # session.info: that state when each savepoint began


class _Chain:
    """The locked head (including the events not yet written) and those events' rows.

    A transaction's events are written together — one multi-row INSERT and one UPDATE of the
    head — before it commits and before any query through the session, so whatever reads the
    chain through the session, or after commit, sees every event."""

    __slots__ = ("head", "pending", "keys", "start_id")

    def __init__(self, head: list, pending: list, keys: tuple = (), start_id: int = 0):
        self.head = head
        self.pending = pending
        self.keys = keys          # the audit keys, read under the head lock
        self.start_id = start_id  # the head's last id when this transaction locked it

    def copy(self) -> _Chain:
        return _Chain(list(self.head), list(self.pending), self.keys, self.start_id)


def _chain(session: Session) -> _Chain:
    """The chain head, locked (SELECT … FOR UPDATE; on SQLite the write lock is already held)
    until the transaction ends."""
    chain = session.info.get(_CHAIN)
    if chain is None:
        head = _locked_head(on_session(session))
        chain = session.info[_CHAIN] = _Chain(head, [], _keys_after(head), head[0])
    return chain


def _keys_after(head: list) -> tuple[AuditKey, ...]:
    """The audit keys, asked for under the head lock (so a rotation is seen by the next event)."""
    return tuple(audit_seal.current_vault().keys(head[0] + 1))


def next_event_id(session: Session) -> int:
    """The id the next event will get, the head locked until the transaction ends (a key rotation
    starts its key there)."""
    return _chain(session).head[0] + 1


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


@event.listens_for(Session, "after_commit")
def _checkpoint_after_commit(session: Session) -> None:
    if session.in_nested_transaction():
        return  # a savepoint released: nothing is committed yet
    # the head this transaction moved: through the Session's chain, or by `record` on its connection
    chain = session.info.get(_CHAIN)
    moved = chain.head if chain is not None and chain.head[0] != chain.start_id else None
    by_runner = _take_uncommitted()
    if by_runner is not None and (moved is None or by_runner[0] > moved[0]):
        moved = by_runner
    if moved is not None:
        audit_seal.announce(moved)


@event.listens_for(Session, "after_rollback")
def _forget_uncommitted(session: Session) -> None:
    discard_uncommitted()


# The head `record` wrote on a statement runner, until its caller's transaction commits
# (announce_committed) or not. A context variable, not a thread's: on PostgreSQL the voice menu's
# transactions take turns on the event loop's thread (agi/loopdb.py), each in its call's own task.
_uncommitted: ContextVar[tuple | None] = ContextVar("audit_uncommitted_head", default=None)


def _take_uncommitted() -> tuple | None:
    head = _uncommitted.get()
    if head is not None:
        _uncommitted.set(None)
    return head


def announce_committed() -> None:
    """For callers of `record` on a DBAPI cursor: their transaction committed, checkpoint it."""
    head = _take_uncommitted()
    if head is not None:
        audit_seal.announce(head)


def discard_uncommitted() -> None:
    _uncommitted.set(None)


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
    where: Session | Run,
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

    On a Session, the transaction's events are written together before it commits or queries (the
    hooks above). On a statement runner (ticketing.writer) — a transaction that appends one event
    and holds no Session, the voice menu's case on a DBAPI cursor — the head is read and locked and
    the event and head written at once, by the same statements; call `announce_committed` after
    such a commit (a Session's commit does it)."""
    fields = {"at": at, "case_id": case_id, "work_order_id": work_order_id, "data": data, "channel": channel,
              "call_id": call_id}
    if not isinstance(where, Session):
        locked = _locked_head(where)
        row, head = _next_event(locked, _keys_after(locked), actor, action, **fields)
        _append(where, [row], head)
        _uncommitted.set(head)  # checkpointed when the caller's transaction commits
        return row["id"]
    chain = where.info.get(_CHAIN)
    if chain is None:
        # Before taking the head lock, write what is pending (the ORM's query for the head did
        # this by autoflush): rows are locked before the head, as always. Later events of the
        # transaction do not flush; whatever they point at has an id, so it is in the database.
        where.flush()
        chain = _chain(where)
    row, chain.head = _next_event(chain.head, chain.keys, actor, action, **fields)
    chain.pending.append(row)
    return row["id"]


def _next_event(head: list, keys: tuple[AuditKey, ...], actor: Actor, action: str, *, at: datetime, case_id: int | None,
                work_order_id: int | None, data: dict[str, Any] | None, channel: str | None,
                call_id: int | None) -> tuple[dict[str, Any], list]:
    """The event row that follows `head` (last id, last hash, count), and the head after it."""
    last_id, last_hash, count = head
    key = key_for(keys, last_id + 1)
    if key is None:
        raise RuntimeError(f"A1: no audit key covers event {last_id + 1}")
    fields = {
        "id": last_id + 1,
        "at": at.astimezone(UTC),
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
    digest = sealed_hash(key, last_hash, fields)
    return {**fields, "prev_hash": last_hash, "hash": digest}, [fields["id"], digest, count + 1]


@dataclass
class VerifyReport:
    checked: int = 0
    problems: list[str] = field(default_factory=list)
    unkeyed: int = 0  # events from before the first audit key (plain SHA-256)
    checkpoint: str | None = None  # the latest signed checkpoint compared with

    @property
    def ok(self) -> bool:
        return not self.problems


_MAX_EDITED = 100  # events named one by one; a chain re-hashed without the key is summed up


def verify(session: Session, batch: int = 5000) -> VerifyReport:
    """Walk the whole chain; report every edited, inserted or deleted event, each event checked
    with its audit key, and the chain compared with the signed checkpoints.

    Besides the stored hashes, the chain is recomputed from the events' contents alone with the
    keys: where it first departs from a checkpoint whose hash the store no longer holds, an event
    since the checkpoint before was edited — named even when whoever edited it re-hashed the whole
    chain and head."""
    report = VerifyReport()
    vault = audit_seal.current_vault()
    keys = tuple(vault.keys(None))
    points, signature_problems = audit_seal.signed_checkpoints(vault.checkpoint_lines(), keys)
    report.problems.extend(signature_problems)
    latest = points[max(points)] if points else None
    if latest is not None:
        report.checkpoint = (f"event {latest.last_id}, {latest.count} events, at {latest.at} "
                             f"(line {latest.line_no} of the checkpoint log)")
    head = session.get(AuditHead, 1)
    prev_hash = GENESIS
    true_hash = GENESIS  # the chain as the contents and the keys make it
    agreed = 0           # the last checkpointed event the recomputed chain agrees with
    departed = False
    edited = 0
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
            key = key_for(keys, ev.id)
            report.unkeyed += key is None
            fields = _hashed_fields(ev, full_precision=key is not None)
            own = sealed_hash(key, ev.prev_hash, fields)
            true_hash = own if ev.prev_hash == true_hash else sealed_hash(key, true_hash, fields)
            if own != ev.hash:
                edited += 1
                if edited <= _MAX_EDITED:
                    report.problems.append(f"event {ev.id}: content does not match its hash (edited)")
            point = points.get(ev.id)
            if point is not None and not departed:
                if true_hash == point.last_hash:
                    agreed = ev.id
                elif ev.hash != point.last_hash:  # stored hashes rewritten: the checks above cannot tell
                    # which event was edited, the checkpoints can
                    departed = True
                    which = f"event {ev.id}" if agreed + 1 == ev.id else f"one of events {agreed + 1}..{ev.id}"
                    report.problems.append(f"{which}: not what the signed checkpoint of {point.at} sealed "
                                           "(edited, the chain re-hashed after it)")
            if latest is not None and ev.id == latest.last_id and ev.hash != latest.last_hash:
                report.problems.append(f"event {ev.id}: hash differs from the signed checkpoint of {latest.at} "
                                       "(chain rewritten)")
            prev_hash = ev.hash
            expected_id = ev.id + 1
            last_id = ev.id
        session.expunge_all()
    if edited > _MAX_EDITED:
        report.problems.append(f"... and {edited - _MAX_EDITED} more events whose content does not match their hash "
                               "(re-hashed without the audit key?)")
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
    if latest is not None and (last_id < latest.last_id or report.checked < latest.count):
        report.problems.append(
            f"signed checkpoint of {latest.at} names event {latest.last_id} ({latest.count} events), "
            f"store ends at {last_id} ({report.checked} events): newest events deleted (tail truncated)")
    return report
