"""The voice menu's own database connections: on a SQLite file the event loop's own connection
(`LoopConnection`, no thread hop), on PostgreSQL asyncpg connections on the event loop
(`LoopConnections`). The call record's, the open-cases and the case's statements run there as
prepared statements (ticketing.writer). See docs/benchmarks.md for why.

On a SQLite file a transaction is tried right on the event loop when the write lock is free and only
waits in a worker thread when another connection holds it.
"""
from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
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
        """fn(*args) in a worker thread, within `deadline`."""
        return await self.store_work(lambda: within_deadline(deadline, fn, *args))

    async def store_work(self, start: Callable[[], Awaitable[Any]]) -> Any:
        """await start(), which raises LateWork past its deadline."""
        if self._late is not None:
            raise StoreTimeout("the store missed its deadline earlier in this call")
        try:
            return await start()
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


STALE_AFTER_S = 5.0  # LoopConnections.stale_after_s for a store without StoreDeadlines


class LoopConnections(_PreparedStatements):
    """The voice menu's statements on PostgreSQL, on the event loop: asyncpg through SQLAlchemy's
    asyncio adaptation (ticketing.store.make_async_engine), so the transaction code that takes a
    DBAPI cursor (fn(cursor), as on SQLite's LoopConnection) runs unchanged in a greenlet and each
    round trip is an await. No worker thread (whose hop cost two wake-ups and GIL hand-offs, three
    times a call), and asyncpg's per-statement work is a fraction of psycopg's (docs/benchmarks.md).

    Up to `size` connections, each held between transactions (no pool checkout or pre-ping per
    transaction). A transaction that misses its deadline has its connection closed at once (asyncpg
    sets no TCP deadlines): it ends with an error, nothing of it committed unless its COMMIT had
    reached the server. A connection that failed, or whose transaction was cut short, is dropped;
    the next transaction takes a fresh one. One idle for `stale_after_s` (the server's keepalive idle:
    past it the server may have dropped the session in a partition, and nothing tells this end) is
    pinged before use."""

    def __init__(self, engine, size: int):
        from ticketing.store import deadlines_of, make_async_engine

        self.async_engine = make_async_engine(engine, size)
        super().__init__(self.async_engine.sync_engine)
        deadlines = deadlines_of(engine)
        self.stale_after_s = deadlines.keepalive_idle_s if deadlines is not None else STALE_AFTER_S
        self._slots = asyncio.Semaphore(size)
        self._idle: list[tuple[Any, float]] = []  # (AsyncConnection, when it was given back) between transactions

    async def run(self, fn: Callable[[Any], Any], one_write: bool = False, deadline: float | None = None) -> Any:
        """fn(cursor) in one transaction (`one_write`: see _Held.run), run by `enter`."""
        return await self.enter(lambda held: held.run(fn, one_write), deadline)

    async def enter(self, work: Callable[[Any], Any], deadline: float | None = None) -> Any:
        """work(held) in a greenlet on one connection, `held.run(fn, one_write)` running a
        transaction on it. Past `deadline` seconds (waiting for a free connection included) the
        connection is closed and LateWork raised; its `work` ends soon after."""
        holder: list[Any] = []
        task = asyncio.ensure_future(self._enter(work, holder))
        try:
            done, _ = await asyncio.wait((task,), timeout=deadline)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if not done:
            task.add_done_callback(_consume)  # its failure is expected, not "never retrieved"
            if holder:
                _driver(holder[0]).terminate()
            else:
                task.cancel()  # still waiting for a connection
            raise LateWork(deadline, task)
        return task.result()

    async def _enter(self, work: Callable[[Any], Any], holder: list[Any]) -> Any:
        async with self._slots:
            aconn = await self._take() or await self.async_engine.connect()
            holder.append(aconn)
            ended = False
            try:
                result = await aconn.run_sync(lambda sync: work(_Held(self, sync.connection)))
                ended = True
                return result
            except Exception:
                ended = True  # a rule refused (rolled back), or the link failed (closed)
                raise
            finally:  # cancelled, closed, or left in a transaction: its state is unknown
                if ended and not _in_use(aconn):
                    self._idle.append((aconn, time.monotonic()))
                else:
                    _later(self._discard(aconn))

    async def _take(self) -> Any:
        """An idle connection that is still open (the last given back first), or None."""
        while self._idle:
            aconn, since = self._idle.pop()
            driver = _driver(aconn)
            if not driver.is_closed():
                if time.monotonic() - since < self.stale_after_s:
                    return aconn
                try:
                    await driver.execute("SELECT 1")  # outside any transaction (between ours)
                    return aconn
                except BaseException as exc:  # gone (a fresh one instead), or cut short by the deadline
                    _later(self._discard(aconn))
                    if not isinstance(exc, Exception):
                        raise
                    continue
            _later(self._discard(aconn))  # the server ended it (a restart, a partition)
        return None

    @staticmethod
    async def _discard(aconn: Any) -> None:
        await aconn.invalidate()
        await aconn.close()

    async def close(self) -> None:
        idle, self._idle = self._idle, []
        for aconn, _since in idle:
            await aconn.close()
        await self.async_engine.dispose()


def _driver(aconn: Any) -> Any:
    """A held AsyncConnection's asyncpg connection."""
    return aconn.sync_connection.connection.driver_connection


def _in_use(aconn: Any) -> bool:
    """A held connection that is not cleanly between transactions (closed, or one still open)."""
    driver = _driver(aconn)
    return driver.is_closed() or driver.is_in_transaction()


class _Held:
    """One LoopConnections connection inside its greenlet (a `Statements` for ticketing.writer)."""

    __slots__ = ("owner", "conn", "dialect")

    def __init__(self, owner: LoopConnections, conn: Any):
        self.owner, self.conn, self.dialect = owner, conn, owner.dialect

    def prepared(self, statement) -> Prepared:
        return self.owner.prepared(statement)

    def run(self, fn: Callable[[Any], Any], one_write: bool = False) -> Any:
        """fn(cursor) in one transaction. `one_write`: fn writes with one statement at most, and
        reads nothing that must agree with that write: each of its statements runs in autocommit, a
        transaction of its own, without the BEGIN and COMMIT round trips (two of a one-statement
        transaction's three)."""
        conn, driver = self.conn, self.conn.dbapi_connection
        if one_write:
            driver.autocommit = True
        cursor = conn.cursor()
        try:
            result = fn(cursor)
            conn.commit()
            return result
        except Exception:
            if not conn.driver_connection.is_closed():
                conn.rollback()
            raise  # (cancelled: no more round trips; the connection is dropped)
        finally:
            cursor.close()
            if one_write:
                driver.autocommit = False


_LATER: set[asyncio.Task] = set()


def _later(work: Awaitable[Any]) -> None:
    """Clean-up that must not hold up the call that asked for it, nor be cancelled with it."""
    task = asyncio.ensure_future(work)
    _LATER.add(task)
    task.add_done_callback(lambda t: (_LATER.discard(t), _consume(t)))
