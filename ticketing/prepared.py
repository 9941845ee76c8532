"""Core statements run straight on a DBAPI cursor: compiled once for a dialect, their values
converted by the statement's own type processors (the same SQL and the same stored values as
`Connection.execute`), without SQLAlchemy's per-execution machinery.

For the voice menu's hot path on SQLite, where that machinery (execution context, result
objects, events) cost several times the statement itself. Only for dialects with positional
parameters (sqlite3's "qmark").
"""
from __future__ import annotations

from typing import Any, Protocol

from sqlalchemy import Table, bindparam, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import ClauseElement, Insert

_MISSING = object()


class Prepared:
    """One statement for one dialect. The parameters without a value in the statement are given
    per execution by name; values fixed in the statement (an IN list, a LIMIT) are converted once."""

    __slots__ = ("sql", "slots")

    def __init__(self, statement: ClauseElement, dialect: Dialect):
        if not dialect.positional:
            raise ValueError(f"{dialect.name}: prepared statements need a positional paramstyle")
        compiled = statement.compile(dialect=dialect)
        names = [b.key for b in compiled.binds.values() if b.required]
        expanded = compiled.construct_expanded_state({name: None for name in names})
        processors = {**compiled._bind_processors, **expanded.processors}
        self.sql = expanded.statement
        slots = []
        for name in expanded.positiontup:
            processor = processors.get(name)
            if name in names:
                slots.append((name, processor, _MISSING))
            else:
                value = expanded.parameters[name]
                slots.append((name, None, processor(value) if processor is not None else value))
        self.slots = tuple(slots)

    def params(self, values: dict[str, Any]) -> tuple:
        out = []
        for name, processor, constant in self.slots:
            if constant is not _MISSING:
                out.append(constant)
            else:
                value = values[name]
                out.append(processor(value) if processor is not None else value)
        return tuple(out)

    def execute(self, cursor: Any, values: dict[str, Any]) -> Any:
        return cursor.execute(self.sql, self.params(values))


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
