"""Issue 16 item 2: a store that stops answering without refusing (packets dropped, a partition, a
frozen server) must not hold a caller, the call log or an API request. The deadlines of
ticketing/store.py StoreDeadlines (values in callcenter/settings.py) end every wait: connecting,
each transaction of the voice menu (the caller then goes to the operator queue), and a dead TCP
connection (keepalives, TCP_USER_TIMEOUT on both ends). The drill under SIP load is
tests/live/test_drills_live.py::test_a2_drill_postgres_partitioned; here a relay in front of
PostgreSQL that goes silent (its kernel still acknowledges: only a client-side deadline helps).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import make_url, select, text
from sqlalchemy.exc import OperationalError

from agi.hotline import Hotline, router_for
from agi.loopdb import CallStoreWork, LateWork, LoopConnections
from agi.server import FastAGIServer
from agi.testing import FakeAsterisk, pressing
from callback.leader import AdvisoryLockLeadership
from callcenter.pbx.root import RECORDINGS_DIR
from ticketing import calls
from ticketing.models import Call
from ticketing.store import (
    StoreDeadlines,
    StoreTimeout,
    deadline_of,
    make_async_engine,
    make_engine,
    make_session_factory,
)
from ticketing.writer import on_cursor

DEADLINES = StoreDeadlines(connect_s=2, transaction_s=2.0, dead_after_s=2.0, keepalive_idle_s=5)
BOUND_S = 30  # a wait that ends at all: several times every deadline (no timing is asserted)


class Relay:
    """A TCP relay to the store that can go silent: connections stay open and new ones are accepted
    (the kernel acknowledges every byte), but nothing is forwarded: a server that stopped answering.
    `cut()` ends every connection and forwards again (the partition over, both ends gone)."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.silent = False
        self._links: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            with self._lock:
                self._links += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := src.recv(65536):
                if not self.silent:
                    dst.sendall(data)
        with contextlib.suppress(OSError):
            dst.shutdown(socket.SHUT_WR)

    def cut(self) -> None:
        with self._lock:
            links, self._links = self._links, []
        for s in links:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self.silent = False

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)
        self.server.close()
        self.cut()


def bounded(fn):
    """fn() in a thread; its result or exception, or AssertionError if it is still waiting after BOUND_S."""
    out: dict = {}

    def run():
        try:
            out["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            out["result"] = exc
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(BOUND_S)
    assert not worker.is_alive(), "still waiting on the store"
    return out["result"]


ONLY_POSTGRESQL = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has no link to lose


@pytest.fixture
def pg_url(db_url, engine):
    """A network store's deadlines: the tests using it run on PostgreSQL only (ONLY_POSTGRESQL)."""
    return db_url


@pytest.fixture
def relay(pg_url):
    url = make_url(pg_url)
    r = Relay(url.host, url.port or 5432)
    yield r
    r.close()


def through(relay: Relay, pg_url: str) -> str:
    return make_url(pg_url).set(host="127.0.0.1", port=relay.port).render_as_string(hide_password=False)


def test_connecting_to_a_server_that_accepts_and_never_answers_gives_up():
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody ever answers
        engine = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/x", DEADLINES)
        try:
            result = bounded(engine.connect)
        finally:
            engine.dispose()
    assert isinstance(result, OperationalError), result


def test_the_deadlines_reach_both_ends_of_each_connection(db_url, engine):
    """The client's socket (keepalives, TCP_USER_TIMEOUT), the server's session (the same, so a backend
    whose client vanished releases its locks) and the menu's deadline; the URL's own options kept.
    SQLite: nothing to bound."""
    store = make_engine(db_url, DEADLINES)
    try:
        if not db_url.startswith("postgresql"):
            assert deadline_of(store) is None
            return
        assert deadline_of(store) == DEADLINES.transaction_s and deadline_of(engine) is None
        leader = AdvisoryLockLeadership(store)._engine  # the scheduler's lock: a connection of its own
        for each in (store, leader):
            with each.connect() as conn:
                sock = socket.socket(fileno=os.dup(conn.connection.dbapi_connection.fileno()))
                try:
                    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 2000
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 5
                finally:
                    sock.close()
                shown = {name: conn.execute(text(f"SHOW {name}")).scalar_one()
                         for name in ("tcp_user_timeout", "tcp_keepalives_idle", "search_path")}
            assert shown["tcp_user_timeout"] in ("2000", "2s") and shown["tcp_keepalives_idle"] in ("5", "5s"), shown
            assert shown["search_path"] == make_url(db_url).query["options"].split("=", 1)[1]  # the schema kept
        leader.dispose()
    finally:
        store.dispose()


@ONLY_POSTGRESQL
async def test_the_voice_menus_own_connections_get_the_servers_deadlines_and_the_same_session(pg_url):
    """The menu's asyncpg engine (agi/loopdb.py): the server's side of the deadlines, the URL's search
    path and the store's session settings (jit off). Its client side is the menu's own deadline."""
    store = make_engine(pg_url, DEADLINES)
    menu = make_async_engine(store, 1)
    try:
        async with menu.connect() as conn:
            shown = {name: (await conn.execute(text(f"SHOW {name}"))).scalar_one()
                     for name in ("tcp_user_timeout", "tcp_keepalives_idle", "search_path", "jit")}
    finally:
        await menu.dispose()
        store.dispose()
    assert shown["tcp_user_timeout"] in ("2000", "2s") and shown["tcp_keepalives_idle"] in ("5", "5s"), shown
    assert shown["search_path"] == make_url(pg_url).query["options"].split("=", 1)[1] and shown["jit"] == "off"


@ONLY_POSTGRESQL
async def test_r2_1_a_menu_transaction_past_its_deadline_gives_its_connection_up_at_once(pg_url, relay, clock):
    """The relay goes silent and stays so (its kernel acknowledges every byte: no TCP deadline would
    ever fire). The transaction gives up at its deadline, its connection is closed at once, so the
    late work ends and frees its place; nothing of it is stored; the next transaction, once the
    store answers again, runs on a fresh connection."""
    store = make_engine(through(relay, pg_url), DEADLINES)
    db = LoopConnections(store, 1)  # one place: a late transaction holding it would block the next
    try:
        await db.run(lambda cur: calls.open_call(on_cursor(db, cur), uniqueid="u.before", started_at=clock()))
        relay.silent = True
        with pytest.raises(LateWork) as missed:
            await db.run(lambda cur: calls.open_call(on_cursor(db, cur), uniqueid="u.lost", started_at=clock()),
                         deadline=0.5)
        await asyncio.wait((missed.value.work,), timeout=BOUND_S)
        assert missed.value.work.done() and not db._idle  # ended, and its connection not kept
        relay.silent = False  # the old link is still open on the relay's side: only ours was closed
        call_id = await db.run(lambda cur: calls.open_call(on_cursor(db, cur), uniqueid="u.after", started_at=clock()),
                               deadline=BOUND_S)
    finally:
        relay.cut()
        await db.close()
        store.dispose()
    with make_session_factory(make_engine(pg_url))() as s:
        stored = dict(s.execute(select(Call.uniqueid, Call.id)).all())
    assert stored == {"u.before": stored["u.before"], "u.after": call_id}


@ONLY_POSTGRESQL
async def test_r2_1_a_caller_reaches_the_queue_when_the_store_stops_answering(pg_url, relay, domain, sessions):
    """The menu's first transaction (the call record, before the greeting) waits at most the deadline:
    the server sends the caller to the queue (the dialplan's agi-incomplete). Once the partition is
    over, the next call opens a fresh connection and is recorded: the dead one is not reused."""
    store = make_engine(through(relay, pg_url), DEADLINES)
    store.connect().close()  # the engine's first connection (the dialect's own queries) before the calls
    hotline = Hotline.create(domain, make_session_factory(store), RECORDINGS_DIR)
    server = FastAGIServer(router_for(hotline), "127.0.0.1", 0)
    await server.start()
    try:
        async with FakeAsterisk("127.0.0.1", server.port, "ivr/main", uniqueid="1732512345.1") as warm:
            await warm.run(pressing("0"), timeout=BOUND_S)  # a connection in use before the store goes quiet
        relay.silent = True
        async with FakeAsterisk("127.0.0.1", server.port, "ivr/main", uniqueid="1732512345.2") as fake:
            commands = await fake.run(pressing("0"), timeout=BOUND_S)
        assert commands[-2:] == ["SET VARIABLE IVR_NEXT queue", "SET VARIABLE AGI_ERROR LateWork"], commands
        assert not any(c.startswith(("STREAM FILE", "EXEC Read")) for c in commands)  # no greeting first
        relay.cut()
        async with FakeAsterisk("127.0.0.1", server.port, "ivr/main", uniqueid="1732512345.3") as fake:
            commands = await fake.run(pressing("0"), timeout=BOUND_S)
        assert "SET VARIABLE IVR_RESULT queue|operator|" in commands, commands
    finally:
        relay.cut()
        await server.stop()
        await hotline.close()
        store.dispose()
    with sessions() as s:
        recorded = dict(s.execute(select(Call.uniqueid, Call.outcome)).all())
    assert recorded == {"1732512345.1": "queued", "1732512345.3": "queued"}  # .2: the call log's to complete


async def test_a_call_waits_on_a_missed_store_once():
    """After one miss the call's further store work fails at once (each would wait the deadline
    again while the caller is on the way to the queue), and its sessions are closed only when the
    late work ends (the thread still uses their connection)."""
    call, release, closed = CallStoreWork(), threading.Event(), []
    with pytest.raises(StoreTimeout):
        await call.store_thread(0.05, release.wait, BOUND_S)
    assert call.store_missed
    ran = []
    with pytest.raises(StoreTimeout):
        await call.store_thread(BOUND_S, ran.append, 1)
    assert ran == []
    call.when_store_idle(lambda: closed.append("session"))
    assert closed == []
    release.set()
    for _ in range(BOUND_S * 100):
        if closed:
            break
        await asyncio.sleep(0.01)
    assert closed == ["session"]


def test_the_api_answers_503_when_the_store_does_not_answer(domain, tmp_path):
    from fastapi.testclient import TestClient

    from callcenter.api.app import create_app
    from callcenter.settings import Settings
    from tests.conftest import CONFIG_DIR

    with socket.create_server(("127.0.0.1", 0)) as silent:
        store = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{silent.getsockname()[1]}/x", DEADLINES)
        try:
            app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=store)
            answer = bounded(lambda: TestClient(app).get("/api/v1/public/cases"))
        finally:
            store.dispose()
    assert answer.status_code == 503, answer.text
    assert answer.json()["error"] == "store_unavailable"


@ONLY_POSTGRESQL
async def test_a2_the_call_log_keeps_entries_through_a_silent_store_and_writes_them_once(pg_url, relay, sessions,
                                                                                       monkeypatch):
    from callcenter.callcontrol import calllog as calllog_module
    from callcenter.callcontrol.calllog import CallLog
    from callcenter.callcontrol.cel import LogEntry

    monkeypatch.setattr(calllog_module, "RETRY_MAX_S", 0.2)
    store = make_engine(through(relay, pg_url), DEADLINES)
    log = CallLog(make_session_factory(store), "hotline-12345")
    at = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
    entry = LogEntry(linkedid="1700000009.1", uniqueid="1700000009.1", kind="queued", at=at,
                     dedup_key="ami:queued:1700000009.1:1", data={"queue": "hotline-12345", "reason": "agi-incomplete",
                                                                  "caller_number": "13800000001"}, create_call=True)
    relay.silent = True
    log.start()
    try:
        log.add(entry)
        deadline = time.monotonic() + BOUND_S
        while log.stats.store_retries < 2:  # each try ends (connect deadline): the writer is not stuck
            assert time.monotonic() < deadline, "the call log is stuck on the silent store"
            await asyncio.sleep(0.1)
        relay.cut()
        log.add(entry)  # the same fact again (a replay)
        assert await log.flush(timeout=BOUND_S)
    finally:
        await log.stop()
        relay.cut()
        store.dispose()
    with sessions() as s:
        assert s.execute(select(Call.uniqueid, Call.outcome)).all() == [("1700000009.1", "queued")]


async def test_a2_a_citizen_call_that_ended_before_the_menu_recorded_it_gets_its_record(sessions):
    """A citizen who hung up while the menu waited on the store (before the queue, which records a call
    too) is recorded from Asterisk's live events at the call's end, with the number Asterisk has; the
    trunk leg of a call the hotline placed (its call is the dialling channel's) is not a citizen's call."""
    from callcenter.ami.protocol import Message
    from callcenter.callcontrol.calllog import CallLog

    def cel(event: str, second: int, uid: str, linked: str, channel: str) -> Message:
        return Message.from_mapping({"Event": "CEL", "EventName": event, "EventTime": f"2026-03-02 01:00:{second:02d}",
                                     "Timestamp": f"{1772413200 + second}.000001", "UniqueID": uid, "LinkedID": linked,
                                     "Channel": channel, "CallerIDnum": "13800000007", "Extra": ""})

    log = CallLog(sessions, "hotline-12345")
    log.start()
    try:
        for event, second in (("CHAN_START", 1), ("ANSWER", 1), ("HANGUP", 2), ("LINKEDID_END", 2)):
            log.on_event("cel", cel(event, second, "1700000010.1", "1700000010.1", "PJSIP/trunk-0000000a"))
            log.on_event("cel", cel(event, second, "1700000010.3", "1700000010.2", "PJSIP/trunk-0000000b"))
        assert await log.flush(timeout=BOUND_S)  # with what the call's end put back in the queue
    finally:
        await log.stop()
    with sessions() as s:
        rows = s.execute(select(Call.uniqueid, Call.caller_number, Call.outcome, Call.outcome_reason)).all()
    assert rows == [("1700000010.1", "13800000007", "abandoned", "ended_unobserved")]


@ONLY_POSTGRESQL
async def test_a_held_connection_idle_past_the_keepalive_is_pinged_and_replaced_if_gone(pg_url, clock, monkeypatch):
    """A partition long enough for the server to drop an idle session leaves this end's socket open
    (asyncpg sets no keepalives): nothing says it is gone until it is used. A connection idle past
    the server's keepalive idle is pinged first, and a dead one replaced, so the next call does not
    fail on it. (The server ending the session stands in for the partition; the socket is made to
    look open, as a half-open one would.)"""
    store = make_engine(pg_url, DEADLINES)
    db = LoopConnections(store, 1)
    try:
        await db.run(lambda cur: calls.open_call(on_cursor(db, cur), uniqueid="u.one", started_at=clock()))
        ((aconn, _),) = db._idle
        driver = aconn.sync_connection.connection.driver_connection
        gone = driver.get_server_pid()
        with store.begin() as conn:
            conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": gone})
        monkeypatch.setattr(type(driver), "is_closed", lambda _self: False)  # half-open: this end saw no end
        db.stale_after_s = 0.0  # idle past the keepalive
        call_id = await db.run(lambda cur: calls.open_call(on_cursor(db, cur), uniqueid="u.two", started_at=clock()))
        ((fresh, _),) = db._idle
        assert fresh.sync_connection.connection.driver_connection.get_server_pid() != gone
    finally:
        await db.close()
        store.dispose()
    with make_session_factory(make_engine(pg_url))() as s:
        assert s.get(Call, call_id).uniqueid == "u.two"
