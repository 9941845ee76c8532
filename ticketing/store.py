"""Database engine, sessions and migrations.

SQLite (a file, WAL mode) is the embedded default; PostgreSQL is used when the URL says so.
On SQLite every transaction starts with BEGIN IMMEDIATE: writers queue on the lock instead of
failing later with a stale snapshot, which keeps "one wins, the other gets 409" exact.
On PostgreSQL every connection runs with `jit = off`: our queries are short (a page, a month's
report), and JIT compiling them cost more than it saved (docs/benchmarks.md, issue 12 item 3).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import URL, Engine, create_engine, event, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
DEADLINES_OPTION = "store_deadlines"  # the engine's execution option carrying its StoreDeadlines


@dataclass(frozen=True)
class StoreDeadlines:
    """How long a use of a network store (PostgreSQL) may wait on it. A server that stops answering
    without refusing (packets dropped, a partition) otherwise holds a connection for the kernel's
    TCP retransmissions (~15 min) and whoever waits on it: a caller in the menu, the call log, an API
    request. The install's values are in callcenter/settings.py; `make_engine` applies them."""

    connect_s: int  # establishing a connection (libpq connect_timeout: whole seconds, at least 2)
    transaction_s: float  # the call path's wait for one transaction (client side: agi/hotline.py)
    dead_after_s: float  # data or keepalive probes unacknowledged this long: the connection is dropped
    keepalive_idle_s: int  # an idle connection is probed after this long (both ends)

    @property
    def connect_timeout_s(self) -> int:
        """connect_s as the drivers take it (libpq: whole seconds, under 2 means 2)."""
        return max(2, self.connect_s)

    def connect_args(self) -> dict[str, int]:
        """libpq's own options: the client drops a dead connection (the pool then discards it)."""
        return {"connect_timeout": self.connect_timeout_s, "keepalives": 1,
                "keepalives_idle": self.keepalive_idle_s, "keepalives_interval": 1,
                "keepalives_count": max(1, round(self.dead_after_s)),
                "tcp_user_timeout": round(self.dead_after_s * 1000)}

    def connect_args_for(self, url) -> dict[str, int | str]:
        """create_engine's connect_args for a store at `url`: libpq's options and the server's (after
        the URL's own `options`, e.g. a search_path)."""
        given = url_options(make_url(url))
        return {**self.connect_args(), "options": f"{given} {self.server_options()}".strip()}

    def server_settings(self) -> dict[str, str]:
        """The same on the server's side of each session: a backend whose client vanished in a
        partition ends and releases its locks (an open transaction's row locks would otherwise stall
        the writes that complete the call records once packets flow again)."""
        return {"tcp_keepalives_idle": str(self.keepalive_idle_s), "tcp_keepalives_interval": "1",
                "tcp_keepalives_count": str(max(1, round(self.dead_after_s))),
                "tcp_user_timeout": str(round(self.dead_after_s * 1000))}

    def server_options(self) -> str:
        """server_settings() as libpq's `options`."""
        return " ".join(f"-c {name}={value}" for name, value in self.server_settings().items())


def url_options(url: URL) -> str:
    """The database URL's own libpq `options` (e.g. -c search_path=...), "" if none."""
    given = url.query.get("options", "")
    return " ".join(given) if isinstance(given, tuple) else given


class StoreTimeout(TimeoutError):
    """The store did not answer within its deadline (StoreDeadlines.transaction_s)."""


def deadlines_of(engine: Engine | None) -> StoreDeadlines | None:
    """The deadlines an engine was made with; None: none (SQLite, or an engine made without)."""
    return None if engine is None else engine.get_execution_options().get(DEADLINES_OPTION)


def deadline_of(engine: Engine | None) -> float | None:
    """The call path's deadline for one transaction on this engine's store (None: none)."""
    deadlines = deadlines_of(engine)
    return None if deadlines is None else deadlines.transaction_s


def normalize_url(url: str) -> str:
    # Plain postgresql:// would pick psycopg2, which we do not ship.
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, deadlines: StoreDeadlines | None = None, **kwargs) -> Engine:
    """`deadlines` (a network store only): bounds on every wait for the server (StoreDeadlines)."""
    url = normalize_url(url)
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        _configure_sqlite(engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    kwargs.setdefault("pool_pre_ping", True)
    if deadlines is not None:
        kwargs["connect_args"] = {**deadlines.connect_args_for(url), **kwargs.get("connect_args", {})}
        kwargs["execution_options"] = {**kwargs.get("execution_options", {}), DEADLINES_OPTION: deadlines}
    engine = create_engine(url, **kwargs)
    _configure_postgresql(engine)
    return engine


# Every PostgreSQL session's own settings (the server's stay as they are). jit: the planner
# JIT-compiled the month's figure queries (20-45 ms each, more under load) for queries that run in
# tens of ms.
SESSION_SETTINGS = {"jit": "off"}


def _configure_postgresql(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        with dbapi_conn.cursor() as cur:
            for name, value in SESSION_SETTINGS.items():
                cur.execute(f"SET {name} = {value}")
        dbapi_conn.commit()


def make_async_engine(engine: Engine, pool_size: int) -> AsyncEngine:
    """The PostgreSQL store of `engine` for asyncio code: asyncpg through SQLAlchemy's asyncio
    adaptation (the voice menu's statements, agi/loopdb.py: asyncpg's per-statement work is a
    fraction of psycopg's, docs/benchmarks.md). Same server, database, search path and session
    settings; the connect deadline and the server's side of StoreDeadlines. asyncpg sets no TCP
    deadlines of its own: its users bound each wait themselves and drop a connection that missed."""
    url = engine.url.set(drivername="postgresql+asyncpg")
    settings = dict(SESSION_SETTINGS)
    given = url_options(url)
    if given:  # libpq's `options` (-c name=value ...), e.g. a search path: asyncpg's server_settings
        pairs = re.findall(r"-c\s*([A-Za-z_.]+)=(\S+)", given)
        if re.sub(r"-c\s*[A-Za-z_.]+=\S+", "", given).strip():
            raise ValueError(f"database URL options other than -c name=value: {given!r}")
        settings.update(pairs)
        url = url.difference_update_query(["options"])
    connect_args: dict = {"server_settings": settings}
    deadlines = deadlines_of(engine)
    if deadlines is not None:
        settings.update(deadlines.server_settings())
        connect_args["timeout"] = deadlines.connect_timeout_s
    return create_async_engine(url, pool_size=pool_size, max_overflow=0, pool_pre_ping=True,
                               connect_args=connect_args)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None  # let us emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    command.upgrade(alembic_config(url), revision)


def current_revision(url: str) -> str | None:
    from alembic.runtime.migration import MigrationContext

    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    finally:
        engine.dispose()
