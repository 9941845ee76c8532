"""Exactly one active scheduler per database (issue 5 item 1), and the pause switch.

- PostgreSQL: a session-level advisory lock (`pg_try_advisory_lock`) held on a dedicated
  connection. The server drops it the moment the holder's connection dies (process killed,
  network gone), so a standby polling every few seconds takes over at once.
- SQLite (one machine): a lease row with an expiry, renewed by the holder; a standby takes over
  when it has expired.

The table `callback_scheduler_state` (the lease row and the pause flag) is created on first use
like APScheduler's own job table, so it needs no migration of the domain schema.
"""
from __future__ import annotations

import logging
import os
import socket
import time
import zlib

from sqlalchemy import Boolean, Column, Engine, Float, MetaData, String, Table, create_engine, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.pool import NullPool

from ticketing.store import deadlines_of

log = logging.getLogger("callback.leader")

metadata = MetaData()
state_table = Table(
    "callback_scheduler_state", metadata,
    Column("name", String(40), primary_key=True),
    Column("holder", String(200), nullable=False, default=""),
    Column("expires_at", Float, nullable=False, default=0.0),  # wall-clock epoch seconds
    Column("paused", Boolean, nullable=False, default=False),
)
LEADER_ROW = "leader"
CONTROL_ROW = "callbacks"


def ensure_tables(engine: Engine) -> None:
    metadata.create_all(engine, checkfirst=True)


def default_holder() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


# ---- pause / resume -------------------------------------------------------------------------------
def set_paused(engine: Engine, paused: bool) -> None:
    ensure_tables(engine)
    with engine.begin() as conn:
        res = conn.execute(update(state_table).where(state_table.c.name == CONTROL_ROW).values(paused=paused))
        if res.rowcount == 0:
            conn.execute(state_table.insert().values(name=CONTROL_ROW, holder="", expires_at=0.0, paused=paused))


def is_paused(engine: Engine) -> bool:
    ensure_tables(engine)
    with engine.connect() as conn:
        value = conn.execute(select(state_table.c.paused).where(state_table.c.name == CONTROL_ROW)).scalar_one_or_none()
    return bool(value)


def current_leader(engine: Engine) -> tuple[str, float] | None:
    """(holder, lease expiry) of the SQLite lease; on PostgreSQL the row names the last leader."""
    ensure_tables(engine)
    with engine.connect() as conn:
        row = conn.execute(select(state_table.c.holder, state_table.c.expires_at)
                           .where(state_table.c.name == LEADER_ROW)).first()
    return (row[0], row[1]) if row else None


# ---- leadership -----------------------------------------------------------------------------------
def _advisory_key(conn) -> int:
    # Advisory locks are per database; tests share one database with a schema each.
    schema = conn.execute(text("select current_schema()")).scalar_one()
    return zlib.crc32(f"callcenter-callback-scheduler:{schema}".encode())


def leader_present(engine: Engine) -> bool:
    """Whether some process holds the scheduler's leadership now (readiness, callcenter/ops/health.py).
    PostgreSQL: the advisory lock is granted to a session (a bigint key shows as classid 0, objid key);
    SQLite: the lease has not expired."""
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            return bool(conn.execute(text(
                "select exists(select 1 from pg_locks where locktype = 'advisory' and granted"
                " and database = (select oid from pg_database where datname = current_database())"
                " and classid = 0 and objid::bigint = :k and objsubid = 1)"), {"k": _advisory_key(conn)}).scalar_one())
    row = current_leader(engine)
    return row is not None and row[1] >= time.time()


class Leadership:
    """try_acquire() -> bool; still_held() -> bool (renews); release()."""

    holder: str

    def try_acquire(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def still_held(self) -> bool:  # pragma: no cover - interface
        raise NotImplementedError

    def release(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


def leadership_for(engine: Engine, holder: str | None = None, *, lease_seconds: float = 20.0) -> Leadership:
    if engine.dialect.name == "postgresql":
        return AdvisoryLockLeadership(engine, holder)
    return LeaseLeadership(engine, holder, lease_seconds=lease_seconds)


class AdvisoryLockLeadership(Leadership):
    def __init__(self, engine: Engine, holder: str | None = None):
        self.holder = holder or default_holder()
        # Own engine without a pool: the lock lives exactly as long as this one connection; with the
        # store's deadlines, so a partition ends the lock's session on both ends instead of holding it.
        deadlines = deadlines_of(engine)
        self._engine = create_engine(engine.url, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                                     **({"connect_args": deadlines.connect_args_for(engine.url)} if deadlines else {}))
        self._conn = None
        self._key: int | None = None
        self._main = engine

    def _lock_key(self, conn) -> int:
        return _advisory_key(conn)

    def try_acquire(self) -> bool:
        if self._conn is not None:
            return self.still_held()
        conn = self._engine.connect()
        try:
            key = self._lock_key(conn)
            got = conn.execute(text("select pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
        except Exception:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn, self._key = conn, key
        _note_leader(self._main, self.holder, 0.0)
        return True

    def still_held(self) -> bool:
        if self._conn is None:
            return False
        try:
            self._conn.execute(text("select 1")).scalar_one()
            return True
        except Exception:
            log.warning("lost the scheduler lock's connection; stepping down")
            self._drop()
            return False

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - already broken
                pass

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute(text("select pg_advisory_unlock(:k)"), {"k": self._key})
            except Exception:  # noqa: BLE001 - closing the connection releases it anyway
                pass
        self._drop()
        self._engine.dispose()


class LeaseLeadership(Leadership):
    def __init__(self, engine: Engine, holder: str | None = None, *, lease_seconds: float = 20.0):
        self.engine = engine
        self.holder = holder or default_holder()
        self.lease_seconds = lease_seconds
        self._held = False
        ensure_tables(engine)

    def try_acquire(self) -> bool:
        now = time.time()
        with self.engine.begin() as conn:
            row = conn.execute(select(state_table.c.holder, state_table.c.expires_at)
                               .where(state_table.c.name == LEADER_ROW)).first()
            if row is None:
                try:
                    conn.execute(state_table.insert().values(name=LEADER_ROW, holder=self.holder,
                                                             expires_at=now + self.lease_seconds, paused=False))
                except IntegrityError:
                    return False
            elif row[0] == self.holder or row[1] < now:
                res = conn.execute(update(state_table).where(
                    state_table.c.name == LEADER_ROW, state_table.c.holder == row[0], state_table.c.expires_at == row[1]
                ).values(holder=self.holder, expires_at=now + self.lease_seconds))
                if res.rowcount != 1:
                    return False
            else:
                return False
        self._held = True
        return True

    def still_held(self) -> bool:
        if not self._held:
            return False
        now = time.time()
        with self.engine.begin() as conn:
            res = conn.execute(update(state_table).where(
                state_table.c.name == LEADER_ROW, state_table.c.holder == self.holder,
                state_table.c.expires_at >= now).values(expires_at=now + self.lease_seconds))
        self._held = res.rowcount == 1
        if not self._held:
            log.warning("scheduler lease lost (expired or taken over); stepping down")
        return self._held

    def release(self) -> None:
        if self._held:
            with self.engine.begin() as conn:
                conn.execute(update(state_table).where(state_table.c.name == LEADER_ROW,
                                                       state_table.c.holder == self.holder).values(expires_at=0.0))
        self._held = False


def _note_leader(engine: Engine, holder: str, expires_at: float) -> None:
    """Record who leads (for `callbacks list`); the advisory lock itself is the authority."""
    try:
        ensure_tables(engine)
        with engine.begin() as conn:
            res = conn.execute(update(state_table).where(state_table.c.name == LEADER_ROW)
                               .values(holder=holder, expires_at=expires_at))
            if res.rowcount == 0:
                conn.execute(state_table.insert().values(name=LEADER_ROW, holder=holder, expires_at=expires_at,
                                                         paused=False))
    except Exception:  # noqa: BLE001 - informational only
        log.debug("could not note the scheduler leader", exc_info=True)


__all__ = ["Leadership", "leader_present", "leadership_for", "AdvisoryLockLeadership", "LeaseLeadership", "set_paused", "is_paused",
           "ensure_tables", "current_leader", "default_holder"]
