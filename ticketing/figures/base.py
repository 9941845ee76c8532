"""What every figure shares: the period it covers, the rate it returns, the thresholds it is read
with, how a rate is defined once for its count and its drill-down, and which rows a unit sees.

A figure's function takes a Session, a `Period` and, where it makes sense, a member unit's code;
it runs SQLAlchemy Core queries on indexed columns and returns plain dataclasses, so an API route
and a monthly report call it alike.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Date, Index, Integer, cast, func, literal, select, union_all
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.visitors import InternalTraversal

from ticketing.errors import InvalidInput
from ticketing.models import Case, MemberUnit, WorkOrder

__all__ = ["DaysBefore", "Figures", "InSubquery", "LocalDate", "Period", "Rate", "RateDefinition", "Thresholds",
           "case_scope", "asked_period", "in_period", "not_confidential", "rate", "unit_id_of", "work_order_scope"]


@dataclass(frozen=True)
class Period:
    """[since, until): aware datetimes. A report on the month so far passes until = now, so what
    is not yet due is not counted as missed."""

    since: datetime
    until: datetime

    def __post_init__(self) -> None:
        if self.since.tzinfo is None or self.until.tzinfo is None:
            raise ValueError("a period needs timezone-aware datetimes")
        if self.until <= self.since:
            raise ValueError("a period ends after it starts")

    @classmethod
    def month(cls, year: int, month: int, tz: str = "Asia/Shanghai") -> Period:
        """The calendar month in local time (the monthly report's period)."""
        zone = ZoneInfo(tz)
        start = datetime(year, month, 1, tzinfo=zone)
        end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=zone)
        return cls(start, end)


FIRST_YEAR, LAST_YEAR = 2000, 2099  # the store's dates; outside: refused, never an overflow
_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def asked_period(now: datetime, tz: str, *, month: str | None = None, since: date | None = None,
                 until: date | None = None) -> Period:
    """The period a reader asks for: a calendar month ('YYYY-MM'), or local days [since, until);
    neither: this month so far. A period reaching past now ends now (what is not due yet is not
    missed); one that has not begun is refused. Errors: InvalidInput naming 'period'."""
    zone = ZoneInfo(tz)
    if month is not None and (since is not None or until is not None):
        raise InvalidInput("period", "give month, or since and until, not both")
    if month is not None:
        m = _MONTH.match(month)
        if m is None:
            raise InvalidInput("period", f"'{month[:20]}' is no month (YYYY-MM)")
        if not FIRST_YEAR <= int(m[1]) <= LAST_YEAR:
            raise InvalidInput("period", f"dates from {FIRST_YEAR} to {LAST_YEAR}")
        since = date(int(m[1]), int(m[2]), 1)
        until = date(since.year + (since.month == 12), since.month % 12 + 1, 1)
    elif since is None and until is None:
        today = now.astimezone(zone).date()
        since, until = today.replace(day=1), today + timedelta(days=1)
    elif since is None or until is None:
        raise InvalidInput("period", "give both since and until (until exclusive)")
    if not (FIRST_YEAR <= since.year <= LAST_YEAR and FIRST_YEAR <= until.year <= LAST_YEAR + 1):
        raise InvalidInput("period", f"dates from {FIRST_YEAR} to {LAST_YEAR}")
    if until <= since:
        raise InvalidInput("period", "until comes after since (it is exclusive)")
    start, end = (datetime.combine(d, time(0), tzinfo=zone) for d in (since, until))
    if start >= now:
        raise InvalidInput("period", "the period has not begun: nothing is due in it yet")
    return Period(start, min(end, now))


@dataclass(frozen=True)
class Rate:
    """numerator / denominator; `rate` is None when nothing was counted (not 0 %, not 100 %)."""

    numerator: int
    denominator: int
    rate: float | None = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", None if not self.denominator else self.numerator / self.denominator)


def rate(numerator: int | None, denominator: int | None) -> Rate:
    return Rate(int(numerator or 0), int(denominator or 0))


@dataclass(frozen=True)
class Thresholds:
    """The figures' own parameters (the regulation's limits are read from the stored deadlines).
    Defaults: GB/T 33358-2016's 15 s; the rest are our choices (GUIDANCE.md)."""

    answer_within_s: float = 15.0       # 15 s service level
    short_abandon_s: float = 5.0        # abandoned within the first N s (caller gave up at once)
    repeat_within_days: int = 30        # repeat caller: policy.repeats.within_days (ticketing.repeats)
    timezone: str = "Asia/Shanghai"     # hour of day, "the same day" (policy.timezone)

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def for_policy(cls, policy: Any, **overrides: Any) -> Thresholds:
        """The defaults in the hotline's own time zone (config/policy.yaml `timezone`)."""
        return cls(**{"timezone": policy.timezone, "repeat_within_days": policy.repeats.within_days, **overrides})


@dataclass(frozen=True)
class RateDefinition:
    """A rate as two sets of rows of one table: `base` (the denominator) and, among them, `hit`
    (the numerator). The same conditions give the counts and the drill-down to the rows behind
    them, so a page never counts one way and lists another."""

    name: str
    formula: str
    key: Any                                                   # the counted rows' id column
    base: Callable[[Period, str | None], list[ColumnElement[bool]]]
    hit: Callable[[Period], ColumnElement[bool]]


class Figures:
    """Base of the figure readers: the session, its dialect and the thresholds."""

    definitions: dict[str, RateDefinition] = {}
    one_pass: frozenset[str] = frozenset()  # case rates read by `_case_pass` (not rolled up by day)

    def __init__(self, session: Session, thresholds: Thresholds | None = None, *, use_rollup: bool = True) -> None:
        self.session = session
        self.thresholds = thresholds or Thresholds()
        self.use_rollup = use_rollup  # False: every rate from the raw rows (the rollup's own check)
        self._codes: dict[int, str] | None = None
        self._passes: dict[tuple, tuple[Rate, dict[int, Rate]]] = {}
        self.dialect = session.get_bind().dialect.name

    def rate(self, name: str, period: Period, unit: str | None = None) -> Rate:
        """The named rate over the period (and unit): from the daily rollup where it has the
        period's days fresh (ticketing.figures.rollup), the rest by one indexed COUNT query."""
        if not self._rolled_up(name):
            if unit is None and name in self.one_pass:
                return self._case_pass(name, period)[0]
            return self.raw_rate(name, period, unit)
        from ticketing.figures.rollup import CITY, read_rates
        if unit is None:
            return read_rates(self, name, period, None)[CITY]
        uid = next((i for i, code in self._unit_codes().items() if code == unit), None)
        if uid is None:
            return self.raw_rate(name, period, unit)
        return read_rates(self, name, period, [uid])[uid]

    def rate_by_unit(self, name: str, period: Period) -> dict[str, Rate]:
        """`rate(name, period, unit)` for every member unit (its code), in one grouped query (or
        from the daily rollup): the same rows per unit as `case_scope` / `work_order_scope`
        select (R7.3c never counted)."""
        codes = self._unit_codes()
        if self._rolled_up(name):
            from ticketing.figures.rollup import read_rates
            counted = read_rates(self, name, period, list(codes))
        elif name in self.one_pass:
            counted = self._case_pass(name, period)[1]
        else:
            counted = self.raw_rate_by_unit_ids(name, period)
            if counted is None:  # a definition over some other table: one query per unit, same answer
                return {code: self.raw_rate(name, period, code) for code in codes.values()}
        return {code: counted.get(uid, rate(0, 0)) for uid, code in codes.items()}

    def _case_pass(self, name: str, period: Period) -> tuple[Rate, dict[int, Rate]]:
        """A case rate that does not add up over days, for the city and every unit from one read
        of the period's counted cases, each case's hit evaluated once (a CTE read twice, which
        both stores materialize), then counted for the city and, joined to its work orders'
        units, for every unit it went to (R7.3c cases never for a unit): the rows `raw_rate` and
        `raw_rate_by_unit_ids` count. Kept for the reader's later calls."""
        key = (name, period.since, period.until)
        if key not in self._passes:
            d = self.definitions[name]
            counted = select(Case.id.label("id"), d.hit(period).label("hit"), Case.confidential.label("confidential")) \
                .where(*d.base(period, None)).cte("counted")
            orders = WorkOrder.__table__.alias("unit_wo")
            hit = counted.c.hit.is_(True)
            city = select(literal(None, Integer).label("unit_id"), func.count().filter(hit), func.count()) \
                .select_from(counted)
            units = (select(orders.c.unit_id, func.count(func.distinct(counted.c.id)).filter(hit),
                            func.count(func.distinct(counted.c.id)))
                     .select_from(counted).join(orders, orders.c.case_id == counted.c.id)
                     .where(counted.c.confidential.is_(False)).group_by(orders.c.unit_id))
            found = {uid: rate(h, n) for uid, h, n in self.session.execute(union_all(city, units))}
            self._passes[key] = (found.pop(None, rate(0, 0)), found)
        return self._passes[key]

    def pass_jobs(self, period: Period) -> dict[str, Callable[[Session], None]]:
        """Jobs for `concurrent.side_by_side`: each one-pass rate's read of the period
        (`_case_pass`, by a reader like this one on the job's own session), kept by this reader
        for its later `rate` / `rate_by_unit`."""
        def read(session: Session, name: str) -> None:
            other = type(self)(session, self.thresholds, use_rollup=self.use_rollup)
            self._passes[(name, period.since, period.until)] = other._case_pass(name, period)
        return {f"pass {name}": lambda s, n=name: read(s, n)
                for name in sorted(self.one_pass) if not self._rolled_up(name)}

    def _rolled_up(self, name: str) -> bool:
        from ticketing.figures.rollup import ROLLED_UP
        return self.use_rollup and name in ROLLED_UP

    def raw_rate(self, name: str, period: Period, unit: str | None = None) -> Rate:
        """The named rate from the raw rows: one indexed COUNT query."""
        d = self.definitions[name]
        hit, total = self.session.execute(
            select(func.count().filter(d.hit(period)), func.count()).select_from(d.key.table)
            .where(*d.base(period, unit))).one()
        return rate(hit, total)

    def raw_rate_by_unit_ids(self, name: str, period: Period) -> dict[int, Rate] | None:
        """unit id -> the rate from the raw rows, units with something counted only; None for
        a definition over a table other than cases and work orders."""
        d = self.definitions[name]
        table = d.key.table
        if table is Case.__table__:
            # a case counts once for every unit it went to: the case's pairs with its units
            orders = WorkOrder.__table__.alias("unit_wo")  # apart from the definitions' own work_orders
            unit_id = orders.c.unit_id
            stmt = (select(unit_id, func.count(func.distinct(Case.id)).filter(d.hit(period)),
                           func.count(func.distinct(Case.id)))
                    .select_from(Case).join(orders, orders.c.case_id == Case.id)
                    .where(*d.base(period, None), Case.confidential.is_(False)))
        elif table is WorkOrder.__table__:
            unit_id = WorkOrder.unit_id
            stmt = (select(unit_id, func.count().filter(d.hit(period)), func.count()).select_from(WorkOrder)
                    .where(*d.base(period, None), not_confidential(WorkOrder.case_id)))
        else:
            return None
        return {uid: rate(hit, total) for uid, hit, total in self.session.execute(stmt.group_by(unit_id))}

    def _unit_codes(self) -> dict[int, str]:
        if self._codes is None:  # read once per reader (a report asks for every rate)
            self._codes = dict(self.session.execute(
                select(MemberUnit.id, MemberUnit.code).order_by(MemberUnit.code)).all())
        return self._codes

    def rows(self, name: str, period: Period, unit: str | None = None, *, part: str = "denominator",
             limit: int | None = None) -> list[int]:
        """The ids behind a rate: part = "denominator", "numerator" or "missed" (counted, not hit)."""
        d = self.definitions[name]
        stmt = select(d.key).where(*d.base(period, unit)).order_by(d.key)
        if part == "numerator":
            stmt = stmt.where(d.hit(period))
        elif part == "missed":
            stmt = stmt.where(~d.hit(period))
        elif part != "denominator":
            raise ValueError(f"unknown part {part!r}")
        return list(self.session.execute(stmt.limit(limit)).scalars())

    def scalar(self, stmt) -> int:
        return int(self.session.execute(stmt).scalar() or 0)


class LocalDate(ColumnElement):
    """The calendar date of a stored UTC moment in a time zone, comparable between columns.
    SQLite knows no zones: there it is the zone's current offset, exact for zones without
    daylight saving (China has none since 1991)."""

    inherit_cache = True

    def __init__(self, column, tz: ZoneInfo) -> None:
        self.column = column
        self.tz = tz
        self.type = Date()


@compiles(LocalDate, "postgresql")
def _local_date_pg(element: LocalDate, compiler, **kw) -> str:
    return compiler.process(cast(func.timezone(element.tz.key, element.column), Date()), **kw)


@compiles(LocalDate, "sqlite")
def _local_date_sqlite(element: LocalDate, compiler, **kw) -> str:
    offset = datetime.now(element.tz).utcoffset() or timedelta(0)
    return compiler.process(func.date(element.column, f"{int(offset.total_seconds() // 60):+d} minutes"), **kw)


class DaysBefore(ColumnElement):
    """A stored moment minus whole days, as SQL (for look-back windows)."""

    inherit_cache = True

    def __init__(self, column, days: int) -> None:
        self.column = column
        self.days = int(days)
        self.type = column.type


@compiles(DaysBefore, "postgresql")
def _days_before_pg(element: DaysBefore, compiler, **kw) -> str:
    return f"({compiler.process(element.column, **kw)} - make_interval(days => {element.days}))"


@compiles(DaysBefore, "sqlite")
def _days_before_sqlite(element: DaysBefore, compiler, **kw) -> str:
    # the stored text form, so the result compares as stored values do
    return f"strftime('%Y-%m-%d %H:%M:%f', {compiler.process(element.column, **kw)}, '-{element.days} days')"


class InSubquery(ColumnElement):
    """`column IN (subquery)`, written on PostgreSQL as `column = ANY(ARRAY(subquery))`: the
    subquery's values are read first and each is looked up by the column's index. For a few
    thousand ids out of a large table (a month's callback attempts, then their cases by key) the
    planner otherwise hashes a scan of the whole table (1 M cases: 0.4 s against 0.2 s)."""

    inherit_cache = True
    _traverse_internals = [("column", InternalTraversal.dp_clauseelement),
                           ("subquery", InternalTraversal.dp_clauseelement)]

    def __init__(self, column, subquery) -> None:
        self.column = column
        self.subquery = subquery
        # no Boolean type: SQLite's compiler would write a Boolean element in WHERE as `(...) = 1`,
        # which keeps its planner from reading the subquery first

    @property
    def _from_objects(self):
        return self.column._from_objects


@compiles(InSubquery)
def _in_subquery(element: InSubquery, compiler, **kw) -> str:
    return compiler.process(element.column.in_(element.subquery), **kw)


@compiles(InSubquery, "postgresql")
def _in_subquery_pg(element: InSubquery, compiler, **kw) -> str:
    return (f"{compiler.process(element.column, **kw)} = ANY(ARRAY("
            f"{compiler.process(element.subquery, asfrom=False, **kw)}))")


# Covering indexes of two correlated look-ups (migration 0011): a case's earlier cases of the same
# number and category (repeat callers) and a case's first dispatch (same-day dispatch), each read
# for every case of the period, answered from the index alone.
Index("ix_cases_caller_category", Case.citizen_phone, Case.category_code, Case.accepted_at,
      postgresql_include=["id"])  # the look-up's `earlier.id < cases.id` from the index (0027; SQLite has the rowid)
Index("ix_wo_case_dispatched", WorkOrder.case_id, WorkOrder.dispatched_at)
# Covering indexes of the month's intake and closing counts and breakdowns (migration 0021): each
# read from the index alone instead of a table look-up per case of the period.
Index("ix_cases_accepted_cover", Case.accepted_at, Case.status, Case.confidential, Case.kind, Case.category_code,
      Case.channel, Case.reject_reason)
Index("ix_cases_closed_cover", Case.closed_at, Case.status, Case.closed_provisionally, Case.satisfaction)
# The one-pass reads of the non-additive rates (Figures._case_pass, migration 0023): the period's
# cases with the caller's number and category (repeat callers) and a case's units, from the index alone.
Index("ix_cases_accepted_caller", Case.accepted_at, Case.status, Case.citizen_phone, Case.category_code,
      Case.confidential, Case.id)
Index("ix_wo_case_unit", WorkOrder.case_id, WorkOrder.unit_id)


def in_period(column, period: Period) -> list[ColumnElement[bool]]:
    return [column >= period.since, column < period.until]


def unit_id_of(code: str):
    """The member unit's id, as a scalar subquery on its unique code (on its own alias, so it
    never correlates with a query that reads member_units itself)."""
    units = MemberUnit.__table__.alias("scope_unit")
    return select(units.c.id).where(units.c.code == code).scalar_subquery()


def case_scope(unit: str | None) -> list[ColumnElement[bool]]:
    """Cases counted: all of them for the totals; for a member unit, the cases dispatched to it
    (a case counts for every unit it went to) and never an R7.3c case."""
    if unit is None:
        return []
    orders = WorkOrder.__table__.alias("scope_wo")
    return [Case.confidential.is_(False),
            select(orders.c.id).where(orders.c.case_id == Case.id, orders.c.unit_id == unit_id_of(unit)).exists()]


def not_confidential(case_id_column) -> ColumnElement[bool]:
    """The row's case is no R7.3c case."""
    cases = Case.__table__.alias("scope_case")
    return ~select(cases.c.id).where(cases.c.id == case_id_column, cases.c.confidential.is_(True)).exists()


def work_order_scope(unit: str | None) -> list[ColumnElement[bool]]:
    """Work orders counted: all for the totals; for a member unit, its own, never of an R7.3c case."""
    if unit is None:
        return []
    return [WorkOrder.unit_id == unit_id_of(unit), not_confidential(WorkOrder.case_id)]
