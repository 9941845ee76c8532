"""The daily rollup of the case and work-order rates (issue 12 item 3), and what keeps it honest.

`FigureDay`: one rate's numerator and denominator for one local day (in a time zone, `zone`) and
one member unit (`unit_id` 0: the whole hotline), computed by the rate's own definition
(ticketing.figures) over that day; ticketing/figures/rollup.py writes and reads it.

`StaleDay`: a UTC calendar day some row a rolled-up rate reads has changed on since the rollup
was computed. Marked by database triggers (made here, installed by migration 0021) on every
insert, update and delete of `cases`, `work_orders`, `extension_requests`, `unit_notifications`
and `case_merges`, whichever code path writes them (the ORM workflow, the voice menu's prepared
statements, a bulk load): the one place that knows which rows a change can move between days.
A rollup day overlapping a stale UTC day is read from the raw rows until it is refreshed.
"""
from __future__ import annotations

from datetime import date

from sqlalchemy import Date, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.models import Base

__all__ = ["STALE_SOURCES", "FigureDay", "StaleDay", "drop_trigger_ddl", "trigger_ddl"]


class FigureDay(Base):
    """A rolled-up rate of one local day and unit (0 = all units)."""

    __tablename__ = "figure_days"

    zone: Mapped[str] = mapped_column(String(40), primary_key=True)
    figure: Mapped[str] = mapped_column(String(40), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    unit_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    hit: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(Integer)


class StaleDay(Base):
    """A UTC day whose rolled-up rates may be out of date (see the module)."""

    __tablename__ = "figure_stale_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    marks: Mapped[int] = mapped_column(Integer, default=1)  # (PostgreSQL: the upsert that locks the row)


# table -> (its moments a rate counts by, [(related table, its key, our key, its moments)]):
# a change to a row can move the rates of the days of its own moments and of its related rows'
# (a work order's unit and dispatch count for its case; a case's confidentiality for its work
# orders; an extension or an urge for its work order; a merge for the merged case).
STALE_SOURCES: dict[str, tuple[list[str], list[tuple[str, str, str, list[str]]]]] = {
    "cases": (["accepted_at", "closed_at", "dispatch_due_at"],
              [("work_orders", "case_id", "id", ["dispatched_at", "notify_due_at", "report_due_at"])]),
    "work_orders": (["dispatched_at", "notify_due_at", "report_due_at"],
                    [("cases", "id", "case_id", ["accepted_at", "closed_at", "dispatch_due_at"])]),
    "extension_requests": (["decided_at"], [("work_orders", "id", "work_order_id", ["dispatched_at"])]),
    "unit_notifications": (["at"], [("work_orders", "id", "work_order_id", ["dispatched_at"])]),
    "case_merges": ([], [("cases", "id", "duplicate_case_id", ["accepted_at", "closed_at"])]),
}


def _days(sources: dict, row: str, table: str, utc_date) -> list[str]:
    own, related = sources[table]
    parts = [f"SELECT {utc_date(f'{row}.{c}')} AS d" for c in own]
    for other, their, ours, moments in related:
        parts += [f"SELECT {utc_date(f'r.{c}')} AS d FROM {other} r WHERE r.{their} = {row}.{ours}" for c in moments]
    return parts


def trigger_ddl(dialect: str, sources: dict = STALE_SOURCES, target: str = "figure_stale_days",
                prefix: str = "figure_stale", update_of: dict[str, list[str]] | None = None,
                skip_marked: bool = False) -> list[str]:
    """The statements that install the stale-day triggers on `dialect`: for each table of `sources`,
    every insert, update and delete marks its days in `target` (a table in `update_of`: only an
    update of those columns). skip_marked: on SQLite, leave out the days marked already instead of
    INSERT OR IGNORE, whose policy an outer upsert (ON CONFLICT DO UPDATE) overrides."""
    update_of = update_of or {}
    out = []
    for table in sources:
        only = update_of.get(table)
        if dialect == "sqlite":
            events = [("UPDATE", ["OLD", "NEW"])] if only else \
                [("INSERT", ["NEW"]), ("UPDATE", ["OLD", "NEW"]), ("DELETE", ["OLD"])]
            for event, rows in events:
                union = " UNION ".join(p for row in rows for p in _days(sources, row, table, lambda c: f"date({c})"))
                on = f"UPDATE OF {', '.join(only)}" if only else event
                insert, new = ((f"INSERT INTO {target}", f" AND d NOT IN (SELECT day FROM {target})") if skip_marked
                               else (f"INSERT OR IGNORE INTO {target}", ""))
                out.append(f"CREATE TRIGGER {prefix}_{table}_{event.lower()} AFTER {on} ON {table} "
                           f"BEGIN {insert} (day, marks) "
                           f"SELECT d, 1 FROM ({union}) WHERE d IS NOT NULL{new}; END")
        else:
            def mark(rows: list[str], table: str = table) -> str:
                union = " UNION ".join(p for row in rows for p in _days(
                    sources, row, table, lambda c: f"(({c}) AT TIME ZONE 'UTC')::date"))
                return (f"INSERT INTO {target} (day, marks) SELECT d, 1 FROM ({union}) s "
                        f"WHERE d IS NOT NULL ON CONFLICT (day) DO UPDATE SET marks = {target}.marks + 1;")
            out.append(f"CREATE FUNCTION {prefix}_{table}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                       f"IF TG_OP = 'INSERT' THEN {mark(['NEW'])} "
                       f"ELSIF TG_OP = 'UPDATE' THEN {mark(['OLD', 'NEW'])} "
                       f"ELSE {mark(['OLD'])} END IF; RETURN NULL; END $$")
            on = f"UPDATE OF {', '.join(only)}" if only else "INSERT OR UPDATE OR DELETE"
            out.append(f"CREATE TRIGGER {prefix}_{table} AFTER {on} ON {table} "
                       f"FOR EACH ROW EXECUTE FUNCTION {prefix}_{table}()")
    return out


def drop_trigger_ddl(dialect: str, sources: dict = STALE_SOURCES, prefix: str = "figure_stale") -> list[str]:
    if dialect == "sqlite":
        return [f"DROP TRIGGER IF EXISTS {prefix}_{t}_{e}" for t in sources for e in ("insert", "update", "delete")]
    return [f"DROP FUNCTION IF EXISTS {prefix}_{t}() CASCADE" for t in sources]
