"""R7.1 / A1: a case the voice menu creates with prepared statements on its direct connection
(`Workflow.accept_on` through ticketing.writer; agi.loopdb: the event loop's own on SQLite, pooled
asyncpg ones on PostgreSQL) is stored exactly as `Workflow.accept` stores it: the same columns, the next
number of the day, one accept event in the same hash chain; the same rules refuse."""
from __future__ import annotations

from inspect import isawaitable

import pytest
from sqlalchemy import inspect, select

from agi.hotline import IVR_ACTOR, Hotline
from agi.loopdb import nowait_sessions_for
from ticketing import audit
from ticketing.audit import Actor
from ticketing.errors import Forbidden
from ticketing.models import AuditEvent, Case, CaseCounter
from ticketing.store import session_scope
from ticketing.writer import on_cursor

REQUEST = dict(kind="consultation", channel="mobile", title="电话咨询", description="来电经语音菜单选择。",
               citizen_phone="13900000002")


def _loop_db(sessions):
    """The hotline's direct connection on this database (the name kept from SQLite's loop)."""
    return Hotline(domain=None, session_factory=sessions, recordings_dir="", flows={}, prompts=set(),
                   nowait_sessions=nowait_sessions_for(sessions)).direct_db


async def _run(db, fn):
    """fn(cursor) in a transaction on the direct connection (awaited on PostgreSQL's)."""
    result = db.run(fn)
    return await result if isawaitable(result) else result


async def _close(db) -> None:
    closed = db.close()
    if isawaitable(closed):
        await closed


def _columns(case: Case) -> dict:
    return {attr.key: getattr(case, attr.key) for attr in inspect(Case).column_attrs
            if attr.key not in ("id", "number")}


def _event(ev: AuditEvent) -> dict:
    return {c: getattr(ev, c) for c in ("at", "actor_id", "actor_name", "actor_role", "action", "data", "channel",
                                        "call_id", "work_order_id")}


async def test_r7_1_a1_case_on_the_cursor_is_stored_as_accept_stores_it(sessions, domain, clock):
    loop_db = _loop_db(sessions)
    with session_scope(sessions) as s:
        by_orm = domain.workflow(s).accept(IVR_ACTOR, **REQUEST)
        orm_id, orm_number = by_orm.id, by_orm.number
    cursor_id, cursor_number = await _run(
        loop_db, lambda cur: domain.workflow(None).accept_on(on_cursor(loop_db, cur), IVR_ACTOR, **REQUEST))
    await _close(loop_db)

    day = orm_number.split("-")[0]
    assert cursor_number == f"{day}-{int(orm_number.split('-')[1]) + 1:06d}"  # the day's next number
    with session_scope(sessions) as s:
        a, b = s.get(Case, orm_id), s.get(Case, cursor_id)
        assert b.number == cursor_number
        assert _columns(b) == _columns(a)
        assert b.version == 1 and b.accepted_at.tzinfo is not None and b.status.value == "new"
        assert s.get(CaseCounter, day).last == 2
        events = {ev.case_id: ev for ev in s.execute(select(AuditEvent)).scalars()}
        assert set(events) == {orm_id, cursor_id}
        assert _event(events[cursor_id]) == _event(events[orm_id])
        assert events[cursor_id].prev_hash == events[orm_id].hash  # one chain, in order
        report = audit.verify(s)
        assert report.ok and report.checked == 2, report.problems


async def test_a1_the_first_event_on_the_cursor_starts_the_chain_and_the_orm_continues_it(sessions, domain):
    loop_db = _loop_db(sessions)
    first_id, _ = await _run(
        loop_db, lambda cur: domain.workflow(None).accept_on(on_cursor(loop_db, cur), IVR_ACTOR, **REQUEST))
    await _close(loop_db)
    with session_scope(sessions) as s:
        domain.workflow(s).accept(IVR_ACTOR, **REQUEST)
    with session_scope(sessions) as s:
        report = audit.verify(s)
        assert report.ok and report.checked == 2, report.problems


async def test_r5_1_the_same_rules_refuse_and_nothing_is_written(sessions, domain):
    loop_db = _loop_db(sessions)
    clerk = Actor(user_id=None, name="unit clerk", role="unit_staff")
    with pytest.raises(Forbidden):
        await _run(loop_db, lambda cur: domain.workflow(None).accept_on(on_cursor(loop_db, cur), clerk, **REQUEST))
    with pytest.raises(ValueError):  # not a case kind
        await _run(loop_db, lambda cur: domain.workflow(None).accept_on(on_cursor(loop_db, cur), IVR_ACTOR,
                                                            **{**REQUEST, "kind": "gossip"}))
    await _close(loop_db)
    with session_scope(sessions) as s:
        assert s.execute(select(Case)).first() is None and s.execute(select(CaseCounter)).first() is None
        assert s.execute(select(AuditEvent)).first() is None
