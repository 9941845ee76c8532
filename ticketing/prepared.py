"""Core statements run straight on a DBAPI cursor: compiled once for a dialect, their values
converted by the statement's own type processors (the same SQL and the same stored values as
`Connection.execute`), without SQLAlchemy's per-execution machinery.

`on_session` and `on_cursor` give the store's writers (call log, audit chain, case numbers) one way
to run a statement on either: each write exists once and runs on whatever the caller holds.

For the voice menu's hot path on SQLite, where that machinery (execution context, result
objects, events) cost several times the statement itself. Only for dialects with positional
parameters (sqlite3's "qmark").
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Table, bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session
from sqlalchemy.sql import ClauseElement, Insert

_MISSING = object()


class Prepared:
    """One statement for one dialect. The parameters without a value in the statement are given
    per execution by name; values fixed in the statement (an IN list, a LIMIT) are converted once.
    Positional paramstyles (sqlite3's qmark) get a tuple, named ones (psycopg's pyformat) a dict."""

    __slots__ = ("sql", "slots", "named")

    def __init__(self, statement: ClauseElement, dialect: Dialect):
        compiled = statement.compile(dialect=dialect)
        names = [b.key for b in compiled.binds.values() if b.required]
        expanded = compiled.construct_expanded_state({name: None for name in names})
        # each bind's own type processor (public API), and those of expanded IN lists
        processors = {name: bind.type.dialect_impl(dialect).bind_processor(dialect)
                      for name, bind in compiled.binds.items()}
        processors.update(expanded.processors)
        self.sql = expanded.statement
        self.named = not dialect.positional
        slots = []
        for name in (expanded.parameters if self.named else expanded.positiontup):
            processor = processors.get(name)
            if name in names:
                slots.append((name, processor, _MISSING))
            else:
                value = expanded.parameters[name]
                slots.append((name, None, processor(value) if processor is not None else value))
        self.slots = tuple(slots)

    def params(self, values: dict[str, Any]) -> tuple | dict[str, Any]:
        out = []
        for name, processor, constant in self.slots:
            if constant is not _MISSING:
                out.append(constant)
            else:
                value = values[name]
                out.append(processor(value) if processor is not None else value)
        if self.named:
            return {slot[0]: value for slot, value in zip(self.slots, out)}
        return tuple(out)

    def execute(self, cursor: Any, values: dict[str, Any] | list[dict[str, Any]]) -> Any:
        """One execution, or one per row for a list of rows (executemany), as Connection.execute."""
        if isinstance(values, list):
            cursor.executemany(self.sql, [self.params(v) for v in values])
            return cursor
        cursor.execute(self.sql, self.params(values))
        return cursor


class Statements(Protocol):
    """Where prepared statements come from: one DBAPI connection's dialect and its cache of them
    (agi.hotline.LoopConnection)."""

    dialect: Dialect

    def prepared(self, statement: ClauseElement) -> Prepared: ...


def insert_by_name(table: Table, *, leave_out: tuple = ()) -> Insert:
    """An INSERT of every column of `table` but `leave_out`, each a bind named by its column key:
    the fixed set of parameters a prepared statement needs (a Core insert without values takes
    whatever columns each execution gives)."""
    skip = {id(c) for c in leave_out}  # by identity: == on columns builds SQL
    return insert(table).values({c.key: bindparam(c.key, type_=c.type) for c in table.columns
                                 if id(c) not in skip})


# A statement runner: run(statement, params) -> a result with fetchone()/all(); run.dialect.
Run = Callable[[Any, Any], Any]


def on_session(session: Session) -> Run:
    """Statements run on the session's connection, in its transaction."""
    conn = session.connection()

    def run(statement, params):
        return conn.execute(statement, params)
    run.dialect = conn.dialect  # type: ignore[attr-defined]
    return run


def on_cursor(statements: Statements, cursor: Any) -> Run:
    """Statements run prepared on a DBAPI cursor already in a transaction (agi/hotline.py)."""
    def run(statement, params):
        return statements.prepared(statement).execute(cursor, params)
    run.dialect = statements.dialect  # type: ignore[attr-defined]
    return run


def runner(where: Session | Run) -> Run:
    """`where` as a runner: a Session's connection, or a runner as given."""
    return on_session(where) if isinstance(where, Session) else where
