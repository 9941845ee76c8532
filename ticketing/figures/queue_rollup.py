"""Daily rollup of the queue figures (issue 12 item 3): a month's offered, answered, 15 s,
abandoned, wait and talk figures, per hour of day and per operator, as the sum of its days' tallies
(ticketing/queue_days_model.py), each day counted once by the figures' own code
(`CallFigures.count_rows` over that local day's queue entries, into `QueueTally`), so the rollup
can give nothing but the raw reading's numbers: counts add up, times are summed to the millisecond,
and the p90 is taken from the summed histogram of the buckets it is defined on (`time_bucket`).

Rolled up: calls that joined the queue once; calls sent back to the queue are read from their
raw events for every period (they count once per period, at their first join in it).

Kept current as figure_days is: triggers mark the UTC days a write can move (queue_stale_days); a
reader takes a rolled-up day only when it is computed with its own thresholds and not stale, and
reads every other day, and a period's partial first or last day, from the queue entries;
`refresh_queue_stale` computes the marked days again (the API's background refresh, `callcenter
stats rebuild`), `refresh_queue_days` given days (the rebuild).
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import date, timedelta

from sqlalchemy import delete, insert, select

from ticketing.figures.base import Period
from ticketing.figures.calls import CallFigures, QueueTally, Times
from ticketing.figures.rollup import (
    _as_date,
    _day_period,
    _local_days_of_utc,
    _raw_pieces,
    _start,
    clear_marks,
)
from ticketing.queue_days_model import DAY_ROW, NO_OPERATOR, QueueDay, QueueStaleDay

__all__ = ["clear_queue_marks", "params_of", "read_rollup", "refresh_queue_days", "refresh_queue_stale"]

_COUNTS = ("offered", "answered", "fast", "abandoned", "short")
_TIMES = (("wait", "waits"), ("abandoned", "abandoned_waits"), ("talk", "talks"))


def params_of(thresholds) -> str:
    """What a day's counts depend on besides the rows: the zone and the two thresholds."""
    return f"{thresholds.timezone}|{thresholds.answer_within_s:g}|{thresholds.short_abandon_s:g}"


def _hist_text(hist: dict[int, int]) -> str:
    return json.dumps([x for b in sorted(hist) for x in (b, hist[b])], separators=(",", ":"))


def _hist(text: str) -> dict[int, int]:
    flat = iter(json.loads(text))
    return dict(zip(flat, flat, strict=True))


def _row(params: str, day: date, hour: int, operator: str, t: QueueTally) -> dict:
    row = {"params": params, "day": day, "hour": hour, "operator": operator,
           **{c: getattr(t, c) for c in _COUNTS}}
    for prefix, attr in _TIMES:
        times: Times = getattr(t, attr)
        row.update({f"{prefix}_n": times.n, f"{prefix}_ms": times.total_ms, f"{prefix}_hist": _hist_text(times.hist)})
    return row


def _tally(row) -> QueueTally:
    t = QueueTally()
    t.offered, t.answered, t.fast, t.abandoned, t.short = row[4:9]
    t.waits, t.abandoned_waits, t.talks = (Times(row[i], row[i + 1], _hist(row[i + 2])) for i in (9, 12, 15))
    return t


_COLUMNS = [QueueDay.day, QueueDay.hour, QueueDay.operator, QueueDay.params,
            *(getattr(QueueDay, c) for c in _COUNTS),
            *(getattr(QueueDay, f"{p}_{s}") for p, _ in _TIMES for s in ("n", "ms", "hist"))]


def read_rollup(reader: CallFigures, period: Period, every: QueueTally, hours: dict, operators: dict,
                days: dict) -> list[Period]:
    """Add the period's computed, fresh days to the tallies; return the parts of the period
    left to read from the queue entries (stale or uncomputed days, partial first and last days)."""
    tz = reader.thresholds.tz
    first = period.since.astimezone(tz).date()
    if _start(first, tz) < period.since:
        first += timedelta(days=1)
    last = period.until.astimezone(tz).date()  # exclusive
    if first >= last:
        return [period]
    s = reader.session
    # marks first, then rows: a refresh deletes its marks and writes its rows in one transaction
    marked = s.execute(select(QueueStaleDay.day).where(QueueStaleDay.day >= first - timedelta(days=1),
                                                       QueueStaleDay.day <= last)).scalars()
    stale = set().union(*(_local_days_of_utc(_as_date(d), tz) for d in marked))
    rows = s.execute(select(*_COLUMNS).where(QueueDay.params == params_of(reader.thresholds),
                                             QueueDay.day >= first, QueueDay.day < last)).all()
    clean = {_as_date(r[0]) for r in rows if r[1] == DAY_ROW and r[2] == NO_OPERATOR} - stale
    for r in rows:
        if _as_date(r[0]) not in clean:
            continue
        if r[1] != DAY_ROW:
            hours[r[1]].merge(_tally(r))
        elif r[2] == NO_OPERATOR:
            day = _tally(r)
            every.merge(day)
            if day.offered:  # (a day with no calls has its row, to say it is computed)
                days[_as_date(r[0])].merge(day)
        else:
            operators[r[2]].merge(_tally(r))
    return _raw_pieces(period, first, last, clean, tz)


def refresh_queue_days(reader: CallFigures, days: Iterable[date]) -> int:
    """Each given local day's queue tallies counted again from its queue entries (in the reader's
    session and transaction), with the reader's thresholds. Returns the days refreshed."""
    from collections import defaultdict
    session, t = reader.session, reader.thresholds
    params, n = params_of(t), 0
    for day in sorted(set(days)):
        session.execute(delete(QueueDay).where(QueueDay.params == params, QueueDay.day == day))
        every, hours, operators = QueueTally(), defaultdict(QueueTally), defaultdict(QueueTally)
        reader.count_rows(session.execute(reader.entries_of(_day_period(day, t.tz))), every, hours, operators,
                          defaultdict(QueueTally))
        values = [_row(params, day, DAY_ROW, NO_OPERATOR, every),
                  *(_row(params, day, h, NO_OPERATOR, x) for h, x in hours.items()),
                  *(_row(params, day, DAY_ROW, o, x) for o, x in operators.items())]
        session.execute(insert(QueueDay), values)
        n += 1
    return n


def refresh_queue_stale(reader: CallFigures) -> int:
    """Take every queue stale mark and compute the local days it touches again, in the caller's
    transaction (as rollup.refresh_stale: deleting the marks first waits, on PostgreSQL, for a
    writer that marked them and has not committed)."""
    marked = reader.session.execute(delete(QueueStaleDay).returning(QueueStaleDay.day)).scalars().all()
    days = set().union(*(_local_days_of_utc(_as_date(d), reader.thresholds.tz) for d in marked))
    return refresh_queue_days(reader, days) if days else 0


def clear_queue_marks(session, tz, first: date, last: date) -> int:
    """rollup.clear_marks for the queue's marks: before a rebuild computes [first, last) again."""
    return clear_marks(session, tz, first, last, model=QueueStaleDay)
