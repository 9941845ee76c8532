"""The voice menu's cost per call (issue 3 benchmark (b)) without losing what a call must leave behind
(A2): the linkedid comes as the AGI argument, the menu's 6 prompts are one Read(), the answer to the
dialplan is one variable, and the call record is written by the call's first and last transactions
-- still one record per call with uniqueid, linkedid, caller, path, digits, outcome and case."""
from __future__ import annotations

import asyncio
import sqlite3
import threading
import time

import pytest
from sqlalchemy import event, select, update
from sqlalchemy.orm import Session

from callcenter.pbx.root import RECORDINGS_DIR
from agi.hotline import IVR_ACTOR, Hotline, ivr_result_value, router_for
from agi.loopdb import LoopConnection, LoopConnections, nowait_sessions_for
from agi.server import FastAGIServer
from agi.testing import FakeAsterisk, pressing
from ticketing import calls
from ticketing.models import Call, Case
from ticketing.store import session_scope
from ticketing.writer import on_cursor

CALLER = "13900000002"


@pytest.fixture
def store(seeded):
    yield seeded
    with session_scope(seeded) as s:  # cases <-> calls point at each other: cut before emptying
        s.execute(update(Case).values(created_by_call_id=None))


def answers(*, linkedid="1732512345.9", key="1", read_status="OK", hangup_at=None):
    """Asterisk's answers on a live channel; `hangup_at`: the first command the caller is gone for."""
    live = pressing(key, linkedid, read_status)

    def respond(command: str) -> str:
        if hangup_at and command.upper().startswith(hangup_at):
            return "511 result=-1 Command Not Permitted on a dead channel or intercepted channel"
        return live(command)
    return respond


async def call_menu(store, domain, responder, **header):
    hotline = Hotline.create(domain, store, RECORDINGS_DIR)
    server = FastAGIServer(router_for(hotline), "127.0.0.1", 0)
    await server.start()
    try:
        fake = FakeAsterisk("127.0.0.1", server.port, "ivr/main", callerid=CALLER, **header)
        await fake.connect()
        return await fake.run(responder, timeout=20)
    finally:
        await server.stop()
        await hotline.close()


def the_call(store, uniqueid):
    with session_scope(store) as s:
        call = s.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one()
        case = s.execute(select(Case).where(Case.created_by_call_id == call.id)).scalar_one_or_none()
        s.expunge_all()
        return call, case


async def test_a2_key_1_logs_call_and_case_with_linkedid_from_the_agi_argument(store, domain):
    commands = await call_menu(store, domain, answers(), uniqueid="1732512345.21", args=["1732512345.20"])
    call, case = the_call(store, "1732512345.21")
    assert not any(c.startswith("GET VARIABLE") for c in commands)  # no round trip for the linkedid
    assert (call.linkedid, call.caller_number, call.direction) == ("1732512345.20", CALLER, "inbound")
    assert (call.outcome, call.outcome_reason, call.case_id) == ("queued", "consultation", case.id)
    assert call.flow_path[:2] == ["greeting", "open_cases"] and "main_menu" in call.flow_path
    assert any(d.get("digits") == "1" for d in call.digits), call.digits
    assert call.ended_at is not None and case.citizen_phone == CALLER
    # the case is committed before its number is said: SAY DIGITS comes after create_case's transaction
    assert next(c for c in commands if c.startswith("SAY DIGITS")).split()[2] == case.number.replace("-", "")
    # one variable for the dialplan, and nothing after it
    sets = [c for c in commands if c.startswith("SET VARIABLE")]
    assert sets == [f"SET VARIABLE IVR_RESULT queue|consultation|{case.id}"] and commands[-1] == sets[0]


class _Transactions:
    """The thread of every transaction begun: ORM sessions, and the voice menu's direct connections
    (agi.loopdb: SQLite's on the event loop, PostgreSQL's asyncpg ones on the event loop too)."""

    def __init__(self, monkeypatch):
        self.threads = []
        monkeypatch.setattr(LoopConnection, "run", self._traced(LoopConnection.run))
        monkeypatch.setattr(LoopConnections, "enter", self._traced_async(LoopConnections.enter))

    def _traced(self, run):
        def traced(db, fn, *args):
            self.threads.append(threading.get_ident())
            return run(db, fn, *args)
        return traced

    def _traced_async(self, enter):
        async def traced(db, work, *args):
            self.threads.append(threading.get_ident())
            return await enter(db, work, *args)
        return traced

    def began(self, session, transaction, connection):
        self.threads.append(threading.get_ident())

    def __enter__(self):
        event.listen(Session, "after_begin", self.began)
        return self

    def __exit__(self, *exc):
        event.remove(Session, "after_begin", self.began)


async def test_a2_key_1_leaves_one_record_with_its_path_its_case_and_the_open_cases_lookup(store, domain):
    # (How many transactions this takes is a cost, measured by benchmarks/ivr_menu_vs_dialplan.py.)
    await call_menu(store, domain, answers(), uniqueid="1732512345.71", args=["1732512345.70"])
    call, case = the_call(store, "1732512345.71")
    assert call.flow_path[:3] == ["greeting", "open_cases", "hours_check"] and case is not None
    assert (call.outcome, call.outcome_reason, call.case_id, call.linkedid) == (
        "queued", "consultation", case.id, "1732512345.70")
    assert case.created_by_call_id == call.id and case.citizen_phone == CALLER


async def test_menu_prompts_are_one_read_and_without_argument_the_linkedid_is_asked(store, domain):
    commands = await call_menu(store, domain, answers(linkedid="1732512345.30"), uniqueid="1732512345.31")
    call, _ = the_call(store, "1732512345.31")
    assert commands[0] == "GET VARIABLE CHANNEL(linkedid)" and call.linkedid == "1732512345.30"
    read = [c for c in commands if c.startswith("EXEC Read")]
    assert len(read) == 1 and "hotline/menu_consultation&" in read[0] and "&hotline/menu_operator,1,,1," in read[0]
    assert not any(c.startswith("GET DATA") for c in commands)


async def test_a2_hangup_in_the_greeting_still_leaves_a_call_record(store, domain):
    commands = await call_menu(store, domain, answers(hangup_at="STREAM FILE"), uniqueid="1732512345.41",
                               args=["1732512345.40"])
    call, case = the_call(store, "1732512345.41")
    assert (call.outcome, call.linkedid, case) == ("abandoned", "1732512345.40", None)
    assert call.flow_path == ["greeting"] and not any(c.startswith("SET VARIABLE") for c in commands)


async def test_missing_menu_prompt_sends_the_caller_to_an_operator_and_logs_it(store, domain):
    # Read() returns at once with READSTATUS=ERROR when a prompt exists in no language
    commands = await call_menu(store, domain, answers(read_status="ERROR", key=""), uniqueid="1732512345.51",
                               args=["1732512345.50"])
    call, case = the_call(store, "1732512345.51")
    assert "SET VARIABLE IVR_RESULT queue|error|" in commands  # the dialplan queues: nobody stranded
    assert (call.outcome, call.outcome_reason, case) == ("queued", "error", None)


async def test_r7_3_open_cases_are_looked_up_in_the_first_transaction_and_spoken(store, domain):
    with session_scope(store) as s:
        wf = domain.workflow(s)
        older = wf.accept(IVR_ACTOR, kind="consultation", channel="mobile", title="t", description="d",
                          citizen_phone=CALLER)
        domain.clock.advance(minutes=1)
        latest = wf.accept(IVR_ACTOR, kind="complaint", channel="mobile", title="t", description="d",
                           citizen_phone=CALLER)
        # R7.3c: a confidential case is neither counted nor spoken
        secret = wf.accept(IVR_ACTOR, kind="complaint", channel="mobile", title="t", description="d",
                           citizen_phone=CALLER)
        secret.confidential = True
        numbers = older.number, latest.number
    commands = await call_menu(store, domain, answers(), uniqueid="1732512345.61", args=["1732512345.60"])
    assert any(c.startswith("SAY NUMBER 2 ") for c in commands), commands  # two open cases, not three
    said = [c.split()[2] for c in commands if c.startswith("SAY DIGITS")]
    assert said[0] == numbers[1].replace("-", "")
    call, case = the_call(store, "1732512345.61")
    assert call.flow_path[:3] == ["greeting", "open_cases", "open_cases_count"] and case is not None


@pytest.mark.parametrize("outcome, reason, case_id, value", [
    ("queued", "consultation", 42, "queue|consultation|42"),
    ("queued", None, None, "queue|operator|"),
    ("queued", "bad|reason:x,y", None, "queue|bad_reason_x_y|"),
    ("self_served", None, 7, "done||"),
    ("abandoned", "hangup", None, "done||"),
])
def test_the_dialplan_answer_is_one_variable_it_can_cut(outcome, reason, case_id, value):
    # [citizen-in] cuts IVR_RESULT at "|": IVR_NEXT (only "done" hangs up), IVR_QUEUE_REASON, CALLCENTER_CASE_ID
    assert ivr_result_value(outcome, reason, case_id) == value


def test_a2_open_call_is_idempotent_and_finish_keeps_what_it_is_not_given(sessions, clock):
    with session_scope(sessions) as s:
        first = calls.open_call(s, uniqueid="u.1", linkedid="l.1", caller_number=CALLER, started_at=clock())
    with session_scope(sessions) as s:  # a replayed AGI session: the same row
        assert calls.open_call(s, uniqueid="u.1", caller_number="other", started_at=clock()) == first
        calls.finish_call(s, first, outcome="queued", reason="operator", ended_at=clock(),
                             flow_path=["greeting"], digits=[{"node": "main_menu", "digits": "0"}], recording_path="r.wav")
    ended = clock()
    clock.advance(seconds=30)
    with session_scope(sessions) as s:
        calls.finish_call(s, first, outcome="abandoned", reason="hangup", ended_at=clock())
        with pytest.raises(ValueError):
            calls.finish_call(s, first, outcome="nonsense", ended_at=clock())
    with session_scope(sessions) as s:
        call = s.get(Call, first)
        assert (call.linkedid, call.caller_number, call.outcome, call.outcome_reason) == ("l.1", CALLER, "abandoned", "hangup")
        assert call.flow_path == ["greeting"] and call.digits == [{"node": "main_menu", "digits": "0"}]
        assert call.recording_path == "r.wav" and call.ended_at == ended  # the first end time stays


def _sqlite_file(store) -> str:
    return store.kw["bind"].url.database


async def test_transactions_run_on_the_event_loop_without_a_thread_hop(store, domain, monkeypatch):
    """SQLite file while the write lock is free, PostgreSQL always: the call's transactions run on
    the event loop's thread (PostgreSQL's round trips are awaited, so they stall no other call)."""
    with _Transactions(monkeypatch) as tx:
        await call_menu(store, domain, answers(), uniqueid="1732512345.81", args=["1732512345.80"])
    threads = tx.threads
    assert len(threads) == 3  # the call's transactions ran: record + open cases, the case, the outcome
    assert set(threads) == {threading.get_ident()}  # no thread hop
    call, case = the_call(store, "1732512345.81")
    assert (call.outcome, call.case_id) == ("queued", case.id)


HOLD_S = 1.0


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # a lock held by another SQLite writer
async def test_sqlite_lock_held_elsewhere_the_call_waits_off_the_loop_and_is_still_logged(store, domain):
    path = _sqlite_file(store)
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock for HOLD_S
    release = threading.Timer(HOLD_S, holder.rollback)
    threads, gaps = [], []

    def began(session, transaction, connection):
        threads.append(threading.get_ident())

    async def ticker():
        last = time.monotonic()
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    event.listen(Session, "after_begin", began)
    tick = asyncio.create_task(ticker())
    t0 = time.monotonic()
    release.start()
    try:
        await call_menu(store, domain, answers(), uniqueid="1732512345.91", args=["1732512345.90"])
    finally:
        tick.cancel()
        event.remove(Session, "after_begin", began)
        release.join()
        holder.close()
    assert time.monotonic() - t0 >= HOLD_S - 0.05  # it waited for the lock rather than failing
    assert threading.get_ident() != threads[0]  # ... in a worker thread
    # while the event loop (every other call) went on: a loop that waited for the lock would show one
    # gap of the whole hold; a busy machine's scheduling shows shorter ones
    assert max(gaps) < HOLD_S * 0.8
    call, case = the_call(store, "1732512345.91")
    assert (call.outcome, call.outcome_reason, call.case_id) == ("queued", "consultation", case.id)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the event loop's DBAPI path is SQLite's
def test_a2_call_record_written_on_the_loop_connection_reads_back_as_the_orm_writes_it(sessions, clock):
    """The menu's call-record statements on a DBAPI cursor (LoopConnection, ticketing.writer) store
    the same values as through the ORM: aware UTC times, JSON path and digits, None keeps a field."""
    hotline = Hotline(domain=None, session_factory=sessions, recordings_dir="", flows={}, prompts=set(),
                      nowait_sessions=nowait_sessions_for(sessions))
    loop_db = hotline.loop_db
    digits = [{"node": "main_menu", "digits": "1"}]
    with session_scope(sessions) as s:
        by_orm = calls.open_call(s, uniqueid="u.orm", linkedid="l.1", caller_number=CALLER, started_at=clock(),
                                    answered_at=clock())
        calls.finish_call(s, by_orm, outcome="queued", reason="consultation", ended_at=clock(),
                             flow_path=["greeting", "main_menu"], digits=digits)
    kwargs = dict(uniqueid="u.dbapi", linkedid="l.1", caller_number=CALLER, started_at=clock(), answered_at=clock())
    by_dbapi = loop_db.run(lambda cur: calls.open_call(on_cursor(loop_db, cur), **kwargs))
    assert loop_db.run(lambda cur: calls.open_call(on_cursor(loop_db, cur), **kwargs)) == by_dbapi  # replay
    loop_db.run(lambda cur: calls.finish_call(on_cursor(loop_db, cur), by_dbapi, outcome="queued",
                                                       reason="consultation", ended_at=clock(),
                                                       flow_path=["greeting", "main_menu"], digits=digits))
    clock.advance(seconds=5)
    loop_db.run(lambda cur: calls.finish_call(on_cursor(loop_db, cur), by_dbapi, outcome="queued",
                                                       reason="consultation", ended_at=clock()))
    with pytest.raises(ValueError):
        loop_db.run(lambda cur: calls.finish_call(on_cursor(loop_db, cur), by_dbapi, outcome="x",
                                                           ended_at=clock()))
    loop_db.close()
    with session_scope(sessions) as s:
        a, b = s.get(Call, by_orm), s.get(Call, by_dbapi)
        fields = ("linkedid", "direction", "purpose", "caller_number", "started_at", "answered_at", "ended_at",
                  "outcome", "outcome_reason", "flow_path", "digits", "case_id", "recording_path")
        assert {f: getattr(b, f) for f in fields} == {f: getattr(a, f) for f in fields}
        assert b.started_at.tzinfo is not None and b.digits == digits


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_failed_loop_transaction_leaves_nothing_and_the_lock_free(sessions, clock):
    hotline = Hotline(domain=None, session_factory=sessions, recordings_dir="", flows={}, prompts=set(),
                      nowait_sessions=nowait_sessions_for(sessions))
    loop_db = hotline.loop_db

    def fail(cur):
        calls.open_call(on_cursor(loop_db, cur), uniqueid="u.fail", started_at=clock())
        raise RuntimeError("boom")
    with pytest.raises(RuntimeError):
        loop_db.run(fail)
    loop_db.close()
    with session_scope(sessions) as s:  # BEGIN IMMEDIATE would wait (30 s) if the lock were still held
        assert s.execute(select(Call).where(Call.uniqueid == "u.fail")).first() is None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_failed_transaction_on_postgresql_leaves_nothing_and_keeps_its_connection(sessions, clock):
    """PostgreSQL (LoopConnections): a statement's error rolls the whole transaction back, and the
    connection, which is fine, serves the next call's transaction (it is not dropped as a broken link)."""
    db = LoopConnections(sessions.kw["bind"], 2)

    def fail(cur):
        calls.open_call(on_cursor(db, cur), uniqueid="u.pgfail", started_at=clock())
        cur.execute("SELECT 1 / 0")
    try:
        with pytest.raises(db.dialect.loaded_dbapi.Error):
            await db.run(fail)
        held = [aconn for aconn, _ in db._idle]
        call_id = await db.run(lambda cur: calls.open_call(on_cursor(db, cur), uniqueid="u.pgnext", started_at=clock()))
        assert [aconn for aconn, _ in db._idle] == held and len(held) == 1
    finally:
        await db.close()
    with session_scope(sessions) as s:
        assert s.execute(select(Call.uniqueid).where(Call.uniqueid.like("u.pg%"))).scalars().all() == ["u.pgnext"]
        assert s.get(Call, call_id).uniqueid == "u.pgnext"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_one_write_transaction_is_durable_alone_and_the_next_transaction_is_one_again(sessions, clock):
    """PostgreSQL (run(one_write=True), the menu's first and last transactions): the one write is
    committed by itself, and the connection's next transaction is one transaction again: its
    failure leaves none of its statements."""
    db = LoopConnections(sessions.kw["bind"], 2)

    def open_then_fail(cur):
        calls.open_call(on_cursor(db, cur), uniqueid="u.pgsecond", started_at=clock())
        cur.execute("SELECT 1 / 0")
    try:
        call_id = await db.run(lambda cur: calls.open_call(on_cursor(db, cur), uniqueid="u.pgone", started_at=clock()),
                               one_write=True)
        with pytest.raises(db.dialect.loaded_dbapi.Error):
            await db.run(open_then_fail)
        assert len(db._idle) == 1
    finally:
        await db.close()
    with session_scope(sessions) as s:
        assert s.execute(select(Call.uniqueid).where(Call.uniqueid.like("u.pg%"))).scalars().all() == ["u.pgone"]
        assert s.get(Call, call_id).uniqueid == "u.pgone"
