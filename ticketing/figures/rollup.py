"""Daily per-unit rollup of the additive case and work-order rates (issue 12 item 3): a month's
rate is the sum of its days' numerators and denominators, each day computed once by the rate's
own definition (`Figures.raw_rate` / `raw_rate_by_unit` over that local day), so a rollup can give
nothing but the raw query's numbers.

Rolled up: the rates whose rows each count on exactly one day (by one moment column); not rolled
up, read raw as before: `callback_reach` (a case counts once over a period however many days its
attempts finished on) and `repeat_caller` (a case's figure depends on other cases' later changes).

Kept current: database triggers mark the UTC days a write can change (ticketing/figure_days_model.py);
a reader takes a rolled-up day only if it is computed and not stale, and reads every other day of
its period, and a period's partial first or last day, from the raw rows. `refresh_stale` computes
the stale days again (the API's background refresher, `callcenter stats rebuild`); `refresh_days`
computes given days (the rebuild after a definition changed).
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta

from sqlalchemy import delete, insert, literal, select, union_all

from ticketing.figure_days_model import FigureDay, StaleDay
from ticketing.figures.base import Figures, Period, Rate, rate

__all__ = ["ROLLED_UP", "clear_marks", "read_rates", "refresh_days", "refresh_stale", "rollup_readers", "stale_local_days"]

ROLLED_UP = frozenset({
    "direct_answer", "dispatched_same_day", "back_office_on_time", "satisfaction", "first_time_closed",
    "response", "on_time", "returned", "extended", "urged", "urged_overdue"})
CITY = 0  # unit_id of the whole hotline's row


def _start(day: date, tz) -> datetime:
    return datetime.combine(day, time(0), tzinfo=tz)


def _day_period(day: date, tz) -> Period:
    return Period(_start(day, tz), _start(day + timedelta(days=1), tz))


def _local_days_of_utc(day: date, tz) -> set[date]:
    """The local days a UTC day overlaps."""
    first = datetime.combine(day, time(0), tzinfo=UTC)
    last = first + timedelta(days=1) - timedelta(microseconds=1)
    return {first.astimezone(tz).date(), last.astimezone(tz).date()}


def read_rates(reader: Figures, name: str, period: Period, unit_ids: list[int] | None) -> dict[int, Rate]:
    """unit id (CITY for the whole hotline) -> the rate over the period: computed, fresh days
    from the rollup, the rest (stale, never computed, partial) from the raw rows.
    unit_ids None: the city's row only."""
    tz = reader.thresholds.tz
    first = period.since.astimezone(tz).date()
    if _start(first, tz) < period.since:
        first += timedelta(days=1)
    last = period.until.astimezone(tz).date()  # exclusive
    wanted = [CITY] if unit_ids is None else [CITY, *unit_ids]
    sums: dict[int, list[int]] = {u: [0, 0] for u in wanted}
    clean: set[date] = set()
    if first < last:
        fd, sd = FigureDay, StaleDay
        rows = select(fd.day, fd.unit_id, fd.hit, fd.total).where(
            fd.zone == reader.thresholds.timezone, fd.figure == name, fd.day >= first, fd.day < last)
        if unit_ids is None:
            rows = rows.where(fd.unit_id == CITY)
        stale = select(sd.day, literal(-1), literal(0), literal(0)).where(
            sd.day >= first - timedelta(days=1), sd.day <= last)
        found = reader.session.execute(union_all(rows, stale)).all()  # one snapshot
        stale_days = set().union(*(_local_days_of_utc(_as_date(d), tz) for d, u, _h, _t in found if u == -1))
        clean = {_as_date(d) for d, u, _h, _t in found if u == CITY} - stale_days
        for d, u, h, t in found:
            if u in sums and _as_date(d) in clean:
                sums[u][0] += h
                sums[u][1] += t
    for piece in _raw_pieces(period, first, last, clean, tz):
        raw = (reader.raw_rate_by_unit_ids(name, piece) if unit_ids is not None else {})
        raw[CITY] = reader.raw_rate(name, piece)
        for u in wanted:
            r = raw.get(u)
            if r is not None:
                sums[u][0] += r.numerator
                sums[u][1] += r.denominator
    return {u: rate(h, t) for u, (h, t) in sums.items()}


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _raw_pieces(period: Period, first: date, last: date, clean: set[date], tz) -> list[Period]:
    """The parts of the period not covered by clean days, as few periods as possible."""
    pieces: list[Period] = []
    cursor = period.since
    day = first
    while day < last:
        if day in clean:
            if cursor < _start(day, tz):
                pieces.append(Period(cursor, _start(day, tz)))
            cursor = _start(day + timedelta(days=1), tz)
        day += timedelta(days=1)
    if cursor < period.until:
        pieces.append(Period(cursor, period.until))
    return pieces


def rollup_readers(session, thresholds=None) -> list[Figures]:
    """The readers whose rates are rolled up, reading raw (what the rollup is computed with)."""
    from ticketing.figures.cases import CaseFigures
    from ticketing.figures.work_orders import WorkOrderFigures
    return [CaseFigures(session, thresholds, use_rollup=False), WorkOrderFigures(session, thresholds, use_rollup=False)]


def refresh_days(readers: Iterable[Figures], days: Iterable[date]) -> int:
    """Each given local day's rolled-up rates computed again from the raw rows (in the readers'
    session and transaction). Returns the days refreshed."""
    readers = list(readers)
    session, thresholds = readers[0].session, readers[0].thresholds
    tz, zone = thresholds.tz, thresholds.timezone
    n = 0
    for day in sorted(set(days)):
        session.execute(delete(FigureDay).where(FigureDay.zone == zone, FigureDay.day == day))
        values = []
        for reader in readers:
            for name in ROLLED_UP & set(reader.definitions):
                period = _day_period(day, tz)
                city = reader.raw_rate(name, period)
                values.append({"zone": zone, "figure": name, "day": day, "unit_id": CITY,
                               "hit": city.numerator, "total": city.denominator})
                values += [{"zone": zone, "figure": name, "day": day, "unit_id": uid,
                            "hit": r.numerator, "total": r.denominator}
                           for uid, r in reader.raw_rate_by_unit_ids(name, period).items() if r.denominator]
        session.execute(insert(FigureDay), values)
        n += 1
    return n


def clear_marks(session, tz, first: date, last: date, *, model=StaleDay) -> int:
    """Delete the stale marks (of `model`'s table) that touch only local days in [first, last):
    before those days are all computed again (a rebuild). On PostgreSQL this waits for writers
    that marked them."""
    marks = [d for d in session.execute(select(model.day)).scalars()
             if all(first <= local < last for local in _local_days_of_utc(_as_date(d), tz))]
    if marks:
        session.execute(delete(model).where(model.day.in_(marks)))
    return len(marks)


def stale_local_days(session, tz) -> set[date]:
    """The local days the stale marks touch (what `refresh_stale` would compute)."""
    return set().union(*(_local_days_of_utc(_as_date(d), tz) for d in session.execute(select(StaleDay.day)).scalars()))


def refresh_stale(readers: Iterable[Figures]) -> int:
    """Take every stale mark and compute the local days it touches again, in one transaction
    (the caller's). The marks are deleted first: on PostgreSQL that waits for any writer that
    marked them and has not committed (the triggers' upsert locks the mark), so what is computed
    includes its change; a writer after that marks again."""
    readers = list(readers)
    session = readers[0].session
    marked = session.execute(delete(StaleDay).returning(StaleDay.day)).scalars().all()
    tz = readers[0].thresholds.tz
    days = set().union(*(_local_days_of_utc(_as_date(d), tz) for d in marked))
    return refresh_days(readers, days) if days else 0
