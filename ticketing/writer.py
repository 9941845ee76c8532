"""The store's one writer: Core statements built once, run on whatever connection the caller holds.

A statement runner (`Run`) executes a statement with its parameters, prepared on a DBAPI cursor
(`on_cursor`): the voice menu's own SQLite connection on the event loop, a psycopg connection in a
worker thread (agi/loopdb.py), or an ORM Session's connection in its transaction (`on_session`) --
the same SQL and the same stored values without SQLAlchemy's per-execution machinery, which cost
several times the statements there (docs/benchmarks.md). The call log, the audit chain, case
numbers and new rows (`insert_row`) are each written once, through a runner.

For the Workflow's ORM objects, `insert_now` and `update_now` write one row at once with those
statements — the ORM's flush plans a unit of work (dependency sort, history, per-row bookkeeping)
for what is here always one known row — and leave the object as if the ORM had loaded it; only
public SQLAlchemy API is used. A rollback (of a savepoint too) then treats these objects as it
treats rows the ORM flushed: an inserted one leaves the session, an updated one is expired
(`_undo_on_rollback`; tests/test_intake_store.py).
"""
from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import Table, bindparam, event, insert, inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import Session, make_transient, make_transient_to_detached
from sqlalchemy.orm.attributes import flag_modified, set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql import ClauseElement, Insert

T = TypeVar("T")
_MISSING = object()


# ---- statements on a DBAPI cursor -------------------------------------------------------------

class Prepared:
    """One statement for one dialect, compiled once; its values converted by the statement's own
    type processors. The parameters without a value in the statement are given per execution by
    name; values fixed in the statement (an IN list, a LIMIT) are converted once. Positional
    paramstyles (sqlite3's qmark) get a tuple, named ones (psycopg's pyformat) a dict."""

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
        """One execution, or one per row for a list of rows (executemany), as Connection.execute.
        A list of one row is one execution (psycopg runs an executemany in pipeline mode: its
        setup and closing sync cost more than the row)."""
        if isinstance(values, list):
            if len(values) == 1:
                values = values[0]
            else:
                cursor.executemany(self.sql, [self.params(v) for v in values])
                return cursor
        cursor.execute(self.sql, self.params(values))
        return cursor


class Statements(Protocol):
    """Where prepared statements come from: one DBAPI connection's dialect and its cache of them
    (agi.loopdb)."""

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


class _DialectStatements:
    """Prepared statements for one dialect (`Statements`), kept as long as the dialect (its
    engine) lives. Each entry holds its statement, so an id is never taken for another one's."""

    def __init__(self, dialect: Dialect):
        self.dialect = dialect
        self._prepared: dict[int, tuple[ClauseElement, Prepared]] = {}

    def prepared(self, statement: ClauseElement) -> Prepared:
        entry = self._prepared.get(id(statement))
        if entry is None or entry[0] is not statement:  # from several threads: built twice, harmlessly
            entry = self._prepared[id(statement)] = (statement, Prepared(statement, self.dialect))
        return entry[1]


_BY_DIALECT: weakref.WeakKeyDictionary[Dialect, _DialectStatements] = weakref.WeakKeyDictionary()


def statements_for(dialect: Dialect) -> _DialectStatements:
    statements = _BY_DIALECT.get(dialect)
    if statements is None:
        statements = _BY_DIALECT[dialect] = _DialectStatements(dialect)
    return statements


def on_session(session: Session) -> Run:
    """Statements run on the session's connection, in its transaction: prepared on its DBAPI
    cursor (`on_cursor`) like the voice menu's, not through Core's execution, whose per-statement
    work (cache key, compiled-state setup, result wrapping) costs several times a one-row write
    (docs/benchmarks.md). For the fixed statements the store's writers build once (this module's,
    the audit chain's, the call log's, case numbers): results are DBAPI rows, read with
    fetchone(); SQLAlchemy's engine events do not see these statements."""
    conn = session.connection()
    return on_cursor(statements_for(conn.dialect), conn.connection.dbapi_connection.cursor())


def on_connection(session: Session) -> Run:
    """Statements run through Core on the session's connection (results as Core's Result): for a
    statement the DBAPI cursor cannot run as one (an executemany with RETURNING)."""
    conn = session.connection()

    def run(statement, params):
        return conn.execute(statement, params)
    run.dialect = conn.dialect  # type: ignore[attr-defined]
    return run


def on_cursor(statements: Statements, cursor: Any) -> Run:
    """Statements run prepared on a DBAPI cursor already in a transaction (agi/loopdb.py)."""
    def run(statement, params):
        return statements.prepared(statement).execute(cursor, params)
    run.dialect = statements.dialect  # type: ignore[attr-defined]
    return run


def runner(where: Session | Run) -> Run:
    """`where` as a runner: a Session's connection, or a runner as given."""
    return on_session(where) if isinstance(where, Session) else where


# ---- new rows ---------------------------------------------------------------------------------

_INSERTS: dict[type, tuple] = {}


def _insert_plan(cls: type) -> tuple:
    """The INSERT of a `cls` row (every column but the key a named bind: one statement, compiled
    once), the key's attribute, and per column: attribute, column key, default, callable?, version?"""
    plan = _INSERTS.get(cls)
    if plan is None:
        mapper = inspect(cls)
        table = mapper.local_table
        (pk,) = table.primary_key.columns
        columns = []
        for prop in mapper.column_attrs:
            (col,) = prop.columns
            if col is pk:
                continue
            default = col.default
            if default is None:
                value: Any = None
            elif default.is_scalar or default.is_callable:
                value = default.arg  # a callable is called per row (e.g. `list`: a fresh one each time)
            else:
                raise TypeError(f"{cls.__name__}.{prop.key}: only scalar or callable defaults are supported")
            columns.append((prop.key, col.key, value, default is not None and default.is_callable,
                            col is mapper.version_id_col))
        plan = _INSERTS[cls] = (insert_by_name(table, leave_out=(pk,)).returning(pk),
                                mapper.get_property_by_column(pk).key, tuple(columns))
    return plan


def insert_row(run: Run, cls: type, values: dict[str, Any]) -> int:
    """Insert a `cls` row of attribute `values` in the runner's transaction: column defaults
    applied, version 1 (what the ORM's flush stores), both written back into `values` with the new
    row's id, which is returned."""
    stmt, pk_key, columns = _insert_plan(cls)
    params = {}
    for key, col_key, default, call, is_version in columns:
        if is_version:
            value = 1
        else:
            value = values.get(key, _MISSING)
            if value is _MISSING:
                value = default(None) if call else default
        values[key] = params[col_key] = value
    values[pk_key] = row_id = run(stmt, params).fetchone()[0]
    return row_id


# ---- the Workflow's ORM objects ---------------------------------------------------------------

def insert_now(session: Session, obj: T) -> T:
    """Insert the transient `obj` now (`insert_row`) and make it persistent, clean, as if loaded.

    `obj` must not be attached to anything in the session yet (no relationship to a persistent
    object set on it: that would make it pending); set those afterwards with
    `sqlalchemy.orm.attributes.set_committed_value`.
    """
    session.flush()  # what the row points at (a call, a case) may still be pending
    # A transient object's values go straight into its instance dict: they are committed as loaded
    # state right after the INSERT anyway, so attribute events would only record history to drop.
    insert_row(on_session(session), type(obj), inspect(obj).dict)
    make_transient_to_detached(obj)  # history reset: clean, as if loaded
    session.add(obj)
    _written(session, obj, inserted=True)
    return obj


_UPDATES: dict[type, tuple] = {}


def _update_plan(cls: type) -> tuple:
    plan = _UPDATES.get(cls)
    if plan is None:
        mapper = inspect(cls)
        table = mapper.local_table
        (pk,) = table.primary_key.columns
        version = mapper.version_id_col  # None: a row written under its case's version (a work order)
        keys = {prop.key: prop.columns[0].key for prop in mapper.column_attrs
                if prop.columns[0] is not pk and prop.columns[0] is not version}
        stmt = table.update().where(pk == bindparam("_pk"))
        if version is not None:
            stmt = stmt.where(version == bindparam("_seen"))
        plan = _UPDATES[cls] = (stmt, keys, frozenset(mapper.attrs.keys()), mapper.get_property_by_column(pk).key,
                                None if version is None else mapper.get_property_by_column(version).key,
                                None if version is None else version.key)
    return plan


_UPDATE_SETS: dict[tuple, Any] = {}


def _update_of(cls: type, stmt: Any, columns: tuple[str, ...]) -> Any:
    """The UPDATE setting exactly `columns` (column keys), each a named bind: built once per set
    of columns an operation writes (a prepared statement has fixed parameters)."""
    key = (cls, columns)
    update = _UPDATE_SETS.get(key)
    if update is None:
        table = stmt.table
        update = _UPDATE_SETS[key] = stmt.values({c: bindparam(c, type_=table.c[c].type) for c in columns})
    return update


def update_now(session: Session, obj: Any) -> None:
    """Write the columns of `obj` changed since it was loaded with one `UPDATE … WHERE id = :id
    AND version = :seen` — the ORM's optimistic check, the same way — and step its version (a row
    without a version column: `WHERE id = :id`, as the ORM's flush writes it).

    Another writer's change in between: `StaleDataError`, as the ORM's flush raises it.
    """
    stmt, keys, every_key, pk_key, version_key, version_col = _update_plan(type(obj))
    state = inspect(obj)
    pending = every_key - state.unmodified  # set (or flag_modified) since the object was loaded
    changed = [key for key in keys if key in pending]
    if not changed:
        return
    values = state.dict
    params = {keys[key]: values[key] for key in changed}
    params["_pk"] = getattr(obj, pk_key)
    seen = None
    if version_key is not None:
        seen = getattr(obj, version_key)
        params.update({version_col: seen + 1, "_seen": seen})
    columns = tuple(key for key in params if key not in ("_pk", "_seen"))
    result = on_session(session)(_update_of(type(obj), stmt, columns), params)
    if result.rowcount != 1:
        raise StaleDataError(f"UPDATE of {type(obj).__name__} {params['_pk']} at version {seen} matched "
                             f"{result.rowcount} rows: changed by someone else")
    if version_key is not None:
        values[version_key] = seen + 1
    if len(changed) == len(pending):
        # Nothing else pending on it: the object as written is its loaded state, clean, as a
        # flush leaves it (a dirty one would make the next flush plan a unit of work for it,
        # which costs as much as the UPDATE it replaces). Taken out and put back in: the public
        # way to reset an object's history.
        make_transient(obj)
        make_transient_to_detached(obj)
        session.add(obj)
    else:
        for key in (*changed, *([version_key] if version_key else [])):  # a relationship change: the ORM's flush
            set_committed_value(obj, key, values[key])
    _written(session, obj, inserted=False)


def attached(session: Session, cls: type[T], row: Any) -> T:
    """The object for a row read with Core (every column, by column name): the one the session
    already holds under that identity, else a new one, clean, as if the ORM had loaded it."""
    mapper = inspect(cls)
    (pk,) = mapper.local_table.primary_key.columns
    obj = session.identity_map.get(mapper.identity_key_from_primary_key((row[pk.key],)))
    if obj is None:
        obj = cls(**{prop.key: row[prop.columns[0].key] for prop in mapper.column_attrs})
        make_transient_to_detached(obj)
        session.add(obj)
    return obj


# ---- a decision, then its application --------------------------------------------------------

class IdOf:
    """The id of a row a `Changes` inserts, in an audit event decided before it was written."""

    __slots__ = ("row",)

    def __init__(self, row: Any):
        self.row = row


class Changes:
    """What one operation decided, in the order decided: new rows (`add`), column values for rows
    it read (`set`) and audit events (`event`: `ticketing.audit.record`'s keywords). Nothing is
    written, nor set on the objects, before `apply`; `value` and `view` read a row as decided."""

    __slots__ = ("events", "rows")

    def __init__(self) -> None:
        # id(obj) -> (obj, values to write, None) for a row read; (obj, None, parents) for a new one
        self.rows: dict[int, tuple[Any, dict[str, Any] | None, dict[str, Any] | None]] = {}
        self.events: list[tuple[Any, str, dict[str, Any]]] = []

    def add(self, obj: T, **parents: Any) -> T:
        """A new row (a transient object with its foreign keys set); tied to `parents` (relationship
        name -> object) as loaded state once written."""
        self.rows[id(obj)] = (obj, None, parents)
        return obj

    def set(self, obj: Any, **values: Any) -> None:
        entry = self.rows.get(id(obj))
        if entry is None:
            self.rows[id(obj)] = (obj, dict(values), None)
        elif entry[1] is None:  # a new row: not in the session, its object is the decision
            for key, value in values.items():
                setattr(obj, key, value)
        else:
            entry[1].update(values)

    def value(self, obj: Any, key: str) -> Any:
        entry = self.rows.get(id(obj))
        if entry is not None and entry[1] is not None and key in entry[1]:
            return entry[1][key]
        return getattr(obj, key)

    def view(self, obj: Any) -> _Decided:
        return _Decided(self, obj)

    def event(self, actor: Any, action: str, fields: dict[str, Any]) -> None:
        self.events.append((actor, action, fields))


class _Decided:
    """A row's attributes as a `Changes` decided them (read-only)."""

    __slots__ = ("_changes", "_row")

    def __init__(self, changes: Changes, row: Any):
        self._changes, self._row = changes, row

    def __getattr__(self, key: str) -> Any:
        return self._changes.value(self._row, key)


def apply(session: Session, changes: Changes) -> None:
    """Write `changes` in the session's transaction, in the order decided: each new row with one
    INSERT (`insert_now`), each row read with one UPDATE of its decided columns (`update_now`,
    checked at the version read), then the audit events (`ticketing.audit.record`); the objects
    are left as if loaded with those values."""
    # Imported here: the audit chain is itself written with this module's statements.
    from ticketing import audit

    for obj, values, parents in changes.rows.values():
        if values is None:
            insert_now(session, obj)
            for name, parent in parents.items():
                _tie(obj, name, parent)
        else:
            for key, value in values.items():
                setattr(obj, key, value)
                flag_modified(obj, key)  # written even when unchanged: the decision says it
            update_now(session, obj)
    for actor, action, fields in changes.events:
        audit.record(session, actor, action, **{key: _resolved(value) for key, value in fields.items()})


def _resolved(value: Any) -> Any:
    if isinstance(value, IdOf):
        return value.row.id
    if isinstance(value, dict):  # an event's data
        return {key: _resolved(v) for key, v in value.items()}
    return value


def _tie(obj: Any, name: str, parent: Any) -> None:
    """`obj.<name>` is `parent`, and `obj` in the parent's collection if that is loaded: loaded state."""
    set_committed_value(obj, name, parent)
    back = inspect(type(obj)).relationships[name].back_populates
    if parent is not None and back and back in inspect(parent).dict:
        set_committed_value(parent, back, [*getattr(parent, back), obj])


# ---- rollback: what the ORM does for the rows its flush wrote ---------------------------------

_WRITTEN = "writer_rows"  # session.info: (object, inserted?, the (sub)transaction it was written in)


def _written(session: Session, obj: Any, *, inserted: bool) -> None:
    transaction = session.get_nested_transaction() or session.get_transaction()
    session.info.setdefault(_WRITTEN, []).append((obj, inserted, transaction))


def _inside(transaction: Any, boundary: Any) -> bool:
    while transaction is not None:
        if transaction is boundary:
            return True
        transaction = transaction.parent
    return False


@event.listens_for(Session, "after_rollback")
def _undo_on_rollback(session: Session) -> None:
    """The database rolled back a transaction or savepoint (still the session's current one here,
    before the ORM restores its own state): an object inserted in it (or in a savepoint inside it)
    is transient again and an updated one expired, as for rows the ORM's flush wrote."""
    written = session.info.get(_WRITTEN)
    if not written:
        return
    boundary = session.get_nested_transaction() or session.get_transaction()
    kept = []
    for obj, inserted, transaction in written:
        if not _inside(transaction, boundary):
            kept.append((obj, inserted, transaction))
        elif inserted:
            make_transient(obj)
        elif obj in session:
            session.expire(obj)
    session.info[_WRITTEN] = kept


@event.listens_for(Session, "after_transaction_end")
def _forget_at_end(session: Session, transaction) -> None:
    if transaction.parent is None:  # the transaction itself: committed, rolled back or closed
        session.info.pop(_WRITTEN, None)
