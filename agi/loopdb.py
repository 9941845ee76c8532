"""The voice menu's own database connection on SQLite (the event loop's, no thread hop).

On a SQLite file a transaction is tried right on the event loop when the write lock is free and only
waits in a worker thread when another connection holds it; the call record's and the open-cases
statements run there as prepared statements (ticketing.writer). See docs/benchmarks.md for why.
"""
from __future__ import annotations

import asyncio
import select
import sqlite3
import threading
from collections.abc import Callable
from typing import Any

from sqlalchemy import event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ticketing.store import StoreTimeout
from ticketing.writer import Prepared


class LateWork(StoreTimeout):
    """The store missed its deadline; `work` is the worker thread's task, still running: a thread
    cannot be stopped, the connection's own TCP deadline (StoreDeadlines.dead_after_s) ends it."""

    def __init__(self, deadline: float, work: asyncio.Future) -> None:
        super().__init__(f"no answer from the store within {deadline:g} s")
        self.work = work


async def within_deadline(deadline: float | None, fn: Callable[..., Any], *args: Any) -> Any:
    """fn(*args) in a worker thread; past `deadline` seconds (None: no deadline) LateWork is raised,
    so a caller waiting on a store that stopped answering goes on (to the operator queue). The
    loop's default executor, as asyncio.to_thread, without its task and context copy (nothing here
    reads a context variable): three hops a call on PostgreSQL."""
    work = asyncio.get_running_loop().run_in_executor(None, fn, *args)
    if deadline is None:
        return await work
    try:
        done, _ = await asyncio.wait((work,), timeout=deadline)
    except asyncio.CancelledError:
        work.add_done_callback(_consume)
        raise
    if not done:
        work.add_done_callback(_consume)  # its late failure is expected, not "never retrieved"
        raise LateWork(deadline, work)
    return work.result()


def _consume(work: asyncio.Future) -> None:
    if not work.cancelled():
        work.exception()


class CallStoreWork:
    """One call's store work in worker threads, each within the store's deadline. Once the store
    missed it, the call's further store work fails at once (the caller is on the way to the queue;
    each would wait the deadline again), and the call's sessions are closed only when the late work
    ends (closing them earlier would wait, on the event loop, for the thread using their connection)."""

    _late: asyncio.Future | None = None

    @property
    def store_missed(self) -> bool:
        return self._late is not None

    async def store_thread(self, deadline: float | None, fn: Callable[..., Any], *args: Any) -> Any:
        if self._late is not None:
            raise StoreTimeout("the store missed its deadline earlier in this call")
        try:
            return await within_deadline(deadline, fn, *args)
        except LateWork as exc:
            self._late = exc.work
            raise

    def when_store_idle(self, close: Callable[[], None]) -> None:
        """close() now, or when the call's late store work ends."""
        if self._late is None or self._late.done():
            close()
        else:
            self._late.add_done_callback(lambda _work: close())


def nowait_sessions_for(session_factory: sessionmaker[Session]) -> sessionmaker[Session] | None:
    """For a SQLite file: sessions on a second engine whose BEGIN IMMEDIATE fails at once when another
    connection holds the write lock, instead of waiting up to the busy timeout. CallContext.tx tries
    a transaction with them on the event loop (no thread hop: ~20 % of the voice menu's CPU, see
    docs/benchmarks.md) and only when the lock is taken waits for it in a worker thread. Once the
    lock is ours nothing in the transaction waits for anyone else. None for other databases (a
    network round trip must not stall the loop) and for in-memory SQLite (a second engine would be
    another database)."""
    from ticketing.store import make_engine

    engine = session_factory.kw.get("bind")
    if engine is None or engine.dialect.name != "sqlite":
        return None
    database = engine.url.database or ""
    if database in ("", ":memory:") or "mode=memory" in str(engine.url):
        return None
    nowait = make_engine(engine.url.render_as_string(hide_password=False))

    @event.listens_for(nowait, "connect")
    def _no_busy_wait(dbapi_conn, _record) -> None:  # after make_engine's own connect setup
        dbapi_conn.execute("PRAGMA busy_timeout=0")

    return sessionmaker(nowait, expire_on_commit=False)


def lock_taken(exc: OperationalError) -> bool:
    return "database is locked" in str(exc.orig)


class LockTaken(Exception):
    pass


class _PreparedStatements:
    """One dialect's prepared statements, built on first use (ticketing.writer.Statements)."""

    def __init__(self, engine):
        self.engine = engine
        self.dialect = engine.dialect
        self._prepared: dict[int, Prepared] = {}

    def prepared(self, statement) -> Prepared:
        prepared = self._prepared.get(id(statement))
        if prepared is None:  # module-level statements only (they live as long as the process);
            # from several threads a race builds the same one twice, harmlessly
            prepared = self._prepared[id(statement)] = Prepared(statement, self.dialect)
        return prepared


class LoopConnection(_PreparedStatements):
    """One DBAPI connection of the no-wait engine, used only on the event loop thread and only
    between two awaits, so never by two transactions at once. The call record's and the open-cases
    statements run on it as prebuilt statements (ticketing.writer): SQLAlchemy's Session and
    execution machinery cost ~10x the statements themselves (docs/benchmarks.md). Same SQL, same
    stored values, same BEGIN IMMEDIATE; a lock held by another connection fails at once
    (busy_timeout=0) and the caller falls back to the ORM transaction in a worker thread."""

    def __init__(self, engine):
        super().__init__(engine)
        self._fairy = None

    def run(self, fn: Callable[[Any], Any], one_write: bool = False) -> Any:
        """fn(cursor) in one transaction; LockTaken (nothing done) if another connection writes.
        (`one_write`: see ThreadConnections.run; here the transaction takes the write lock, as always.)"""
        if self._fairy is None:
            self._fairy = self.engine.raw_connection()  # the engine's connect setup + busy_timeout=0
        cursor = self._fairy.driver_connection.cursor()
        try:
            try:
                cursor.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "database is locked" in str(exc):
                    raise LockTaken from exc
                raise
            try:
                result = fn(cursor)
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            return result
        finally:
            cursor.close()

    def close(self) -> None:
        if self._fairy is not None:
            self._fairy.close()
            self._fairy = None


class ThreadConnections(_PreparedStatements):
    """The voice menu's statements on other databases (PostgreSQL): in worker threads (a network
    round trip must not stall the event loop), each thread holding one pooled DBAPI connection for
    its transactions, with the same prepared statements as on SQLite's loop connection instead of an
    ORM Session, whose machinery costs several times the statements (docs/benchmarks.md). Holding
    the connection saves the pool's checkout and pre-ping round trip on every transaction; one that
    fails at the connection level is dropped and the next transaction takes a fresh one."""

    def __init__(self, engine):
        super().__init__(engine)
        self._held = threading.local()
        self._all: list[Any] = []  # every held connection, to give back at close
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        conn = getattr(self._held, "conn", None)
        if conn is not None and _ended(conn):
            self._drop(conn)  # the server ended it while it was held (a restart; a partition's keepalives)
            conn = None
        if conn is None:
            conn = self._held.conn = self.engine.raw_connection()
            with self._lock:
                self._all.append(conn)
        return conn

    def _drop(self, conn: Any) -> None:
        self._held.conn = None
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        conn.invalidate()  # not back into the pool: its state is unknown

    def run(self, fn: Callable[[Any], Any], one_write: bool = False) -> Any:
        """fn(cursor) in one transaction, on the calling (worker) thread. `one_write`: fn writes
        with one statement at most, and reads nothing that must agree with that write: each of its
        statements runs in autocommit, a transaction of its own, without the BEGIN and COMMIT
        round trips (two of a one-statement transaction's three)."""
        conn = self._connection()
        driver = conn.driver_connection
        try:
            if one_write:
                driver.autocommit = True
            cursor = conn.cursor()
            try:
                result = fn(cursor)
                conn.commit()
                return result
            except BaseException:
                conn.rollback()
                raise
            finally:
                cursor.close()
                if one_write and not driver.closed:
                    driver.autocommit = False
        except self.dialect.loaded_dbapi.OperationalError:
            self._drop(conn)  # the link to the server failed: a fresh connection next time
            raise

    def close(self) -> None:
        with self._lock:
            held, self._all = self._all, []
        for conn in held:
            conn.close()


def _ended(conn: Any) -> bool:
    """An idle held connection with something to read or an error pending: the server closed it or the
    kernel gave it up (StoreDeadlines' keepalives). One poll, no round trip: it is not used again."""
    try:
        fd = conn.driver_connection.fileno()
    except Exception:  # noqa: BLE001 - closed already
        return True
    idle = select.poll()
    idle.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return bool(idle.poll(0))
