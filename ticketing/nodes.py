"""Liveness of the Asterisk nodes of a cluster (docs/scaling.md), and the call records of a lost node.

Each node's application process heartbeats its node's name while it is linked to its Asterisk
(`heartbeat`, every few seconds), with the moment that Asterisk started. Any live process sweeps
(`sweep`): a node silent for longer than the grace period is lost, and so is the earlier life of a
node whose Asterisk started again; the calls it had open then can never end by themselves (a killed
Asterisk sends no hangup), so each is closed once through the call log's own transition
(ticketing.calls, reason `node_lost`) with a `node_lost` call event, and every sweep that closed
calls leaves one audit event. A node that comes back simply heartbeats again.

Calls are attributed to their node by the uniqueid (ticketing.calls.of_node).
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from ticketing import audit, calls
from ticketing.audit import Actor
from ticketing.enums import Role
from ticketing.models import Call
from ticketing.node_model import NodeHeartbeat

CLUSTER_ACTOR = Actor(user_id=None, name="cluster", role=Role.SYSTEM.value)
# no call runs a day: the bound keeps a sweep on the started_at index
LONGEST_CALL = timedelta(days=1)
# after its Asterisk started, a node's process fills its call log from the CEL file (records of calls
# of the earlier life appear then, open): the earlier life is swept again for as long as that looks back
AFTER_BOOT = timedelta(minutes=15)  # callcenter/callcontrol/cel.py CelFile.backlog_seconds


def heartbeat(session: Session, node: str, *, now: datetime, booted_at: datetime | None = None,
              holder: str = "") -> None:
    """Node `node` is alive now; one upsert. `booted_at`: its Asterisk's start (None: unknown, kept)."""
    table = NodeHeartbeat.__table__
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[session.get_bind().dialect.name]
    values = {"node": node, "beat_at": now, "holder": holder}
    changed = {"beat_at": now, "holder": holder}
    if booted_at is not None:
        values["booted_at"] = changed["booted_at"] = booted_at
    session.execute(insert(table).values(values).on_conflict_do_update(index_elements=[table.c.node], set_=changed))


@dataclass(frozen=True)
class Closed:
    node: str
    cause: str  # silent: no heartbeat for the grace period; restarted: its Asterisk started again
    call_ids: tuple[int, ...]


def sweep(session: Session, *, now: datetime, grace: timedelta) -> list[Closed]:
    """Close the open calls of every lost node (or lost earlier life of a node), in the caller's
    transaction. Safe to run in several processes at once: the node's row is locked while it is
    swept, and each call is closed at most once (the event's dedup key)."""
    done = []
    for node in session.scalars(select(NodeHeartbeat.node).order_by(NodeHeartbeat.node)).all():
        row = session.execute(select(NodeHeartbeat).where(NodeHeartbeat.node == node).with_for_update()
                              .execution_options(populate_existing=True)).scalar_one()
        if row.beat_at < now - grace and (row.swept_at is None or row.swept_at < row.beat_at):
            ids = _close(session, node, "silent", last_seen=row.beat_at, before=None)
            row.swept_at = row.beat_at
            done.append(Closed(node, "silent", ids))
        elif row.booted_at is not None and (row.boot_swept_at is None or row.boot_swept_at < row.booted_at
                                            or now < row.booted_at + AFTER_BOOT):
            ids = _close(session, node, "restarted", last_seen=row.booted_at, before=row.booted_at)
            row.boot_swept_at = row.booted_at
            done.append(Closed(node, "restarted", ids))
    closed = [c for c in done if c.call_ids]
    for c in closed:
        audit.record(session, CLUSTER_ACTOR, "node_lost_calls_closed", at=now,
                     data={"node": c.node, "cause": c.cause, "calls": len(c.call_ids), "call_ids": list(c.call_ids)})
    return closed


def _close(session: Session, node: str, cause: str, *, last_seen: datetime, before: datetime | None) -> tuple[int, ...]:
    """Close node's open calls (started before `before` if given), ending them at `last_seen`."""
    query = select(Call).where(calls.of_node(node), calls.open_condition(),
                               Call.started_at >= last_seen - LONGEST_CALL).order_by(Call.id).with_for_update()
    query = query.execution_options(populate_existing=True)
    if before is not None:
        query = query.where(Call.started_at < before)
    ids = []
    for call in session.scalars(query).all():
        at = max(last_seen, call.started_at)
        key = f"{calls.NODE_LOST}:{call.uniqueid}"  # once per call, whoever sweeps
        if calls.add_event(session, call.id, kind=calls.NODE_LOST, at=at, dedup_key=key,
                           data={"node": node, "cause": cause, "outcome_before": call.outcome,
                                 "reason_before": call.outcome_reason}):
            calls.apply_event(call, calls.NODE_LOST, at=at, uniqueid=call.uniqueid)
            ids.append(call.id)
    session.flush()
    return tuple(ids)


__all__ = ["CLUSTER_ACTOR", "Closed", "NodeHeartbeat", "heartbeat", "sweep"]
