"""Rows of the hot intake path written at once with Core statements, the objects kept in the
session as if the ORM had loaded or flushed them.

The ORM's flush plans a unit of work (dependency sort, history, per-row bookkeeping) for what is
here always one known row, and costs several times the statement. `insert_now` writes a new
object with one `INSERT … RETURNING id`; `update_now` writes an object's changed columns with one
`UPDATE … WHERE id AND version` (the ORM's optimistic check); `attached` turns a row read with
Core into the session's object. The objects stay normal persistent objects: later changes to them
are flushed by the ORM as usual, and a rollback (also of a savepoint) undoes them in the session
as for flushed rows. Three SQLAlchemy internals are used for that — `InstanceState.
committed_state`, `InstanceState._commit_all` and the transaction's `_new`/`_dirty` — and
tests/test_intake_store.py checks the behaviour they give.
"""
from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import bindparam, insert, inspect
from sqlalchemy.orm import Session, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError
from sqlalchemy.sql import Insert

from ticketing.prepared import Run, insert_by_name

T = TypeVar("T")
_MISSING = object()
_PLANS: dict[type, tuple] = {}


def _mapped(cls: type) -> tuple:
    """The class's mapper, table, single-column primary key and version column (or None)."""
    mapper = inspect(cls)
    table = mapper.local_table
    (pk,) = table.primary_key.columns
    return mapper, table, pk, mapper.version_id_col


def _plan(cls: type) -> tuple:
    plan = _PLANS.get(cls)
    if plan is None:
        mapper, table, pk, version = _mapped(cls)
        columns = []
        for prop in mapper.column_attrs:
            (col,) = prop.columns
            if col is pk:
                continue
            default = col.default
            if default is None:
                value: Any = None
            elif default.is_scalar:
                value = default.arg
            elif default.is_callable:
                value = default.arg  # called per row (e.g. `list`: a fresh one each time)
            else:
                raise TypeError(f"{cls.__name__}.{prop.key}: only scalar or callable defaults are supported")
            # None may be left out of the INSERT (fewer binds) unless the database has a default.
            columns.append((prop.key, col.key, value, default is not None and default.is_callable,
                            col is version, col.server_default is None))
        plan = (insert(table).returning(pk), mapper.get_property_by_column(pk).key, tuple(columns))
        _PLANS[cls] = plan
    return plan


def insert_now(session: Session, obj: T) -> T:
    """Insert the transient `obj` now (column defaults applied, version 1) and make it persistent.

    `obj` must not be attached to anything in the session yet (no relationship to a persistent
    object set on it: that would make it pending); set those afterwards with
    `sqlalchemy.orm.attributes.set_committed_value`.
    """
    session.flush()  # what the row points at (a call, a case) may still be pending
    stmt, pk_key, _columns = _plan(type(obj))
    # A transient object's state is written straight into its dict: it is committed as loaded
    # state right after the INSERT anyway, so attribute events would only record history to drop.
    params = _row_values(type(obj), obj.__dict__, omit_none=True)
    obj.__dict__[pk_key] = session.connection().execute(stmt, params).scalar_one()
    make_transient_to_detached(obj)  # history reset: clean, as if loaded
    session.add(obj)
    _written(session, obj, inserted=True)
    return obj


def _row_values(cls: type, values: dict[str, Any], *, omit_none: bool) -> dict[str, Any]:
    """The INSERT's values by column key of a new `cls` row whose attribute values are `values`:
    column defaults applied and version 1, written back into `values` too. `omit_none`: leave out
    None where the database has no default (fewer binds)."""
    _stmt, _pk_key, columns = _plan(cls)
    params = {}
    for key, col_key, default, call, is_version, no_server_default in columns:
        if is_version:
            value = 1
        else:
            value = values.get(key, _MISSING)
            if value is _MISSING:
                value = default(None) if call else default
        values[key] = value
        if value is not None or not (omit_none and no_server_default):
            params[col_key] = value
    return params


_ROW_INSERTS: dict[type, Insert] = {}


def insert_row(run: Run, cls: type, values: dict[str, Any]) -> int:
    """Insert a `cls` row of attribute `values` through a statement runner (ticketing.prepared), in
    the caller's transaction: the same stored values as `insert_now` of `cls(**values)` (column
    defaults, version 1), without an ORM object. Returns its id, also set in `values` with the
    defaults applied."""
    stmt = _ROW_INSERTS.get(cls)
    if stmt is None:  # every column but the key a named bind: one prepared statement per class
        _mapper, table, pk, _version = _mapped(cls)
        stmt = _ROW_INSERTS[cls] = insert_by_name(table, leave_out=(pk,)).returning(pk)
    _stmt, pk_key, _columns = _plan(cls)
    values[pk_key] = row_id = run(stmt, _row_values(cls, values, omit_none=False)).fetchone()[0]
    return row_id


def _written(session: Session, obj: Any, *, inserted: bool) -> None:
    """Tell the session's (sub)transaction what was written, as its own flush does: rolling it
    back (a savepoint too) then expunges the inserted object and expires the updated one, exactly
    as for rows the ORM flushed. (SQLAlchemy keeps this in private bookkeeping; tests/
    test_intake_store.py checks the rollbacks.)"""
    transaction = session._transaction
    if transaction is not None:
        (transaction._new if inserted else transaction._dirty)[inspect(obj)] = True


_UPDATE_PLANS: dict[type, tuple] = {}


def _update_plan(cls: type) -> tuple:
    plan = _UPDATE_PLANS.get(cls)
    if plan is None:
        mapper, table, pk, version = _mapped(cls)
        if version is None:
            raise TypeError(f"{cls.__name__} has no version column to check an update against")
        keys = {prop.key: prop.columns[0].key for prop in mapper.column_attrs
                if prop.columns[0] is not pk and prop.columns[0] is not version}
        stmt = table.update().where(pk == bindparam("_pk"), version == bindparam("_seen"))
        plan = (stmt, keys, mapper.get_property_by_column(pk).key, mapper.get_property_by_column(version).key,
                version.key)
        _UPDATE_PLANS[cls] = plan
    return plan


def update_now(session: Session, obj: Any) -> None:
    """Write the columns of `obj` changed since it was loaded with one `UPDATE … WHERE id = :id
    AND version = :seen` — the ORM's optimistic check, the same way — and step its version.

    Another writer's change in between: `StaleDataError`, as the ORM's flush raises it.
    """
    stmt, keys, pk_key, version_key, version_col = _update_plan(type(obj))
    state = inspect(obj)
    # committed_state: the attributes set (or flag_modified) since the object was loaded.
    changed = [key for key in state.committed_state if key in keys]
    if not changed:
        return
    seen = getattr(obj, version_key)
    values = state.dict
    params = {keys[key]: values[key] for key in changed}
    params.update({version_col: seen + 1, "_pk": getattr(obj, pk_key), "_seen": seen})
    result = session.connection().execute(stmt, params)
    if result.rowcount != 1:
        raise StaleDataError(f"UPDATE of {type(obj).__name__} {params['_pk']} at version {seen} matched "
                             f"{result.rowcount} rows: changed by someone else")
    set_committed_value(obj, version_key, seen + 1)
    _written(session, obj, inserted=False)
    if len(changed) == len(state.committed_state):
        # Nothing else pending on it: mark it clean, as a flush does (without this the next flush
        # still plans a unit of work for it, which costs as much as the UPDATE it replaces).
        state._commit_all(values, session.identity_map)
    else:
        for key in changed:  # a relationship change is left to the ORM's flush
            set_committed_value(obj, key, values[key])


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
