"""A2 across a cluster (issue 16 item 4, docs/scaling.md): the call records of a node that died are
closed, once, as `node_lost`, after its heartbeat has been silent for the grace period; a live
node's calls are never touched; a node that comes back heartbeats again and its later facts count.
SQLite and PostgreSQL (the `engine` fixture)."""
from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select

from callcenter.liveness import NodeLiveness
from ticketing import calls
from ticketing.models import AuditEvent, Call, CallEvent
from ticketing.node_model import NodeHeartbeat
from ticketing.nodes import heartbeat, sweep
from ticketing.store import session_scope

T0 = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
GRACE = timedelta(seconds=60)


def _call(s, uniqueid: str, *, outcome: str | None = None, ended: bool = False, started: datetime = T0) -> int:
    call_id = calls.open_call(s, uniqueid=uniqueid, caller_number="13800000001", started_at=started)
    if outcome is not None:
        calls.finish_call(s, call_id, outcome=outcome, reason="agi-unreachable" if outcome == "queued" else None,
                          ended_at=started + timedelta(seconds=30))
        if not ended:  # queued or answered and still going: no end yet
            s.execute(Call.__table__.update().where(Call.id == call_id).values(ended_at=None))
    return call_id


def _row(s, call_id: int) -> tuple:
    c = s.get(Call, call_id)
    s.refresh(c)
    return c.outcome, c.outcome_reason, c.ended_at is not None


def _closings(s) -> tuple[int, int]:
    """(node_lost call events, node_lost audit events)."""
    return (s.scalar(select(func.count()).select_from(CallEvent).where(CallEvent.kind == calls.NODE_LOST)),
            s.scalar(select(func.count()).select_from(AuditEvent).where(AuditEvent.action == "node_lost_calls_closed")))


def _setup(sessions):
    with session_scope(sessions) as s:
        for node in ("node1", "node2"):
            heartbeat(s, node, now=T0, booted_at=T0 - timedelta(hours=1))
        ids = {
            "menu": _call(s, "node1-1772413200.1"),  # in the menu when node1 died: no outcome yet
            "queued": _call(s, "node1-1772413200.2", outcome="queued"),
            "talking": _call(s, "node1-1772413200.3", outcome="answered"),
            "over": _call(s, "node1-1772413200.4", outcome="self_served", ended=True),
            "live": _call(s, "node2-1772413200.1", outcome="queued"),
            "node10": _call(s, "node10-1772413200.1"),  # another node whose name starts the same
            "single": _call(s, "1772413200.9"),  # a one-machine install's call: no node in its name
        }
    return ids


def test_a2_a_silent_node_s_open_calls_are_closed_once_as_node_lost(sessions):
    ids = _setup(sessions)
    with session_scope(sessions) as s:  # within the grace period: nothing is closed
        heartbeat(s, "node2", now=T0 + GRACE)
        assert sweep(s, now=T0 + GRACE, grace=GRACE) == []
    with session_scope(sessions) as s:
        heartbeat(s, "node2", now=T0 + GRACE + timedelta(seconds=5))
        closed = sweep(s, now=T0 + GRACE + timedelta(seconds=5), grace=GRACE)
    assert [(c.node, c.cause, sorted(c.call_ids)) for c in closed] == [
        ("node1", "silent", sorted([ids["menu"], ids["queued"], ids["talking"]]))]
    with session_scope(sessions) as s:
        assert _row(s, ids["menu"]) == ("failed", calls.NODE_LOST, True)
        assert _row(s, ids["queued"]) == ("failed", calls.NODE_LOST, True)
        assert _row(s, ids["talking"]) == ("answered", calls.NODE_LOST, True)  # the talk happened
        assert _row(s, ids["over"]) == ("self_served", None, True)
        assert _row(s, ids["live"]) == ("queued", "agi-unreachable", False)  # node2 is alive
        assert _row(s, ids["node10"]) == (None, None, False)
        assert _row(s, ids["single"]) == (None, None, False)
        # they ended at the node's last sign of life, not at the sweep
        assert s.get(Call, ids["queued"]).ended_at.replace(tzinfo=UTC) == T0
        assert _closings(s) == (3, 1)
        event = s.scalars(select(AuditEvent).where(AuditEvent.action == "node_lost_calls_closed")).one()
        assert event.data["node"] == "node1" and event.data["calls"] == 3
        lost = s.scalars(select(CallEvent).where(CallEvent.call_id == ids["queued"],
                                                 CallEvent.kind == calls.NODE_LOST)).one()
        assert lost.data["outcome_before"] == "queued" and lost.data["reason_before"] == "agi-unreachable"

    # idempotent: later sweeps, by this process or another, close nothing again
    for minutes in (2, 3):
        with session_scope(sessions) as s:
            heartbeat(s, "node2", now=T0 + timedelta(minutes=minutes))
            assert sweep(s, now=T0 + timedelta(minutes=minutes), grace=GRACE) == []
    with session_scope(sessions) as s:
        assert _closings(s) == (3, 1)


def test_a2_a_returning_node_heartbeats_again_and_its_later_facts_count(sessions):
    ids = _setup(sessions)
    later = T0 + timedelta(minutes=5)
    with session_scope(sessions) as s:
        sweep(s, now=later, grace=GRACE)  # node1 and node2 both silent by now: both lost
    with session_scope(sessions) as s:
        assert _row(s, ids["live"]) == ("failed", calls.NODE_LOST, True)
        # node2 was only cut off (its Asterisk went on): it heartbeats again, the same Asterisk
        heartbeat(s, "node2", now=later, booted_at=T0 - timedelta(hours=1))
        fresh = _call(s, "node2-1772413500.1", started=later)
        # what its log then learns of the call it had queued: an operator answered it
        call = s.get(Call, ids["live"])
        assert calls.add_event(s, call.id, kind="operator_connected", at=later, dedup_key="ami:oc:node2-1")
        calls.apply_event(call, "operator_connected", at=later, uniqueid=call.uniqueid)
    with session_scope(sessions) as s:
        assert _row(s, ids["live"]) == ("answered", None, True)
        assert sweep(s, now=later + timedelta(seconds=30), grace=GRACE) == []  # alive: untouched
        assert _row(s, fresh) == (None, None, False)
    # silent again later: its new open call is closed then, the answered one stays as it is
    with session_scope(sessions) as s:
        closed = sweep(s, now=later + 2 * GRACE, grace=GRACE)
    assert [(c.node, c.call_ids) for c in closed] == [("node2", (fresh,))]
    with session_scope(sessions) as s:
        assert _row(s, ids["live"]) == ("answered", None, True)


def test_a2_a_node_whose_asterisk_started_again_loses_only_the_calls_of_its_earlier_life(sessions):
    ids = _setup(sessions)
    reboot = T0 + timedelta(seconds=20)  # back within the grace period: the heartbeat never stopped long
    with session_scope(sessions) as s:
        heartbeat(s, "node1", now=reboot + timedelta(seconds=5), booted_at=reboot)
        new = _call(s, "node1-1772413230.1", outcome="queued", started=reboot + timedelta(seconds=3))
        closed = sweep(s, now=reboot + timedelta(seconds=5), grace=GRACE)
    assert [(c.node, c.cause, sorted(c.call_ids)) for c in closed] == [
        ("node1", "restarted", sorted([ids["menu"], ids["queued"], ids["talking"]]))]
    with session_scope(sessions) as s:
        assert _row(s, new) == ("queued", "agi-unreachable", False)
        assert _row(s, ids["live"]) == ("queued", "agi-unreachable", False)
        heartbeat(s, "node1", now=reboot + timedelta(seconds=10), booted_at=reboot)
        assert sweep(s, now=reboot + timedelta(seconds=10), grace=GRACE) == []
        assert _closings(s) == (3, 1)
        # the earlier life's call that only Asterisk's CEL file knew, logged after the restart
        late = _call(s, "node1-1772413200.5", started=T0 - timedelta(seconds=1))
        heartbeat(s, "node2", now=reboot + timedelta(minutes=1))
        closed = sweep(s, now=reboot + timedelta(minutes=1), grace=GRACE)
        assert [(c.cause, c.call_ids) for c in closed] == [("restarted", (late,))]
        assert _row(s, new) == ("queued", "agi-unreachable", False)


def test_a_call_is_attributed_to_its_node_by_the_uniqueid_alone():
    assert calls.node_of("node1-1772413200.1", ("node1", "node10")) == "node1"
    assert calls.node_of("node10-1772413200.1", ("node1", "node10")) == "node10"
    assert calls.node_of("1772413200.1", ("node1",)) is None
    clause = calls.of_node("node_1").compile(compile_kwargs={"literal_binds": True})
    assert "/_" in str(clause)  # a name's _ is not a LIKE wildcard: nodeX1-... is not node_1's


class _Ami:
    """What NodeLiveness asks of the node's AMI link."""

    def __init__(self, uptime: int) -> None:
        self.connected, self.uptime, self.handlers = True, uptime, []

    def on_connected(self, handler):
        self.handlers.append(handler)

    async def command(self, command: str, timeout: float | None = None) -> list[str]:
        assert command == "core show uptime seconds"
        return [f"System uptime: {self.uptime}", f"Last reload: {self.uptime}"]


async def test_the_node_process_heartbeats_while_linked_and_sweeps(engine, sessions):
    now = [T0]
    ami = _Ami(uptime=600)
    service = NodeLiveness("node1", ami, engine, interval_s=0.01, grace_s=60, clock=lambda: now[0])
    with session_scope(sessions) as s:
        heartbeat(s, "node2", now=T0 - timedelta(minutes=5))  # died long ago
        lost = _call(s, "node2-1772412900.1", started=T0 - timedelta(minutes=6))
    await service.start()
    try:
        for _ in range(500):
            if service.beats >= 2 and service.swept:
                break
            await asyncio.sleep(0.01)
        ami.connected = False  # its Asterisk gone: no more beats
        beats = service.beats
        await asyncio.sleep(0.1)
        assert service.beats == beats
    finally:
        await service.stop()
    with session_scope(sessions) as s:
        row = s.get(NodeHeartbeat, "node1")
        assert row.beat_at.replace(tzinfo=UTC) == T0
        assert row.booted_at.replace(tzinfo=UTC) == T0 - timedelta(seconds=601)
        assert _row(s, lost) == ("failed", calls.NODE_LOST, True)
