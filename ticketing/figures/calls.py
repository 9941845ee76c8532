"""Call figures (GB/T 33358-2016; GUIDANCE.md "Figure definitions in use"), read from the call log.

What the call log records, and so what these figures stand on (ticketing/calls.py,
callcenter/callcontrol/calllog.py):

- the operator queue, from Asterisk's AMI queue events, as `call_events` of the caller's call:
  `queued` (QueueCallerJoin, at = joining time), `operator_connected` (AgentConnect: `data.holdtime`
  = seconds waited, `data.operator` = the operator's extension), `operator_completed`
  (AgentComplete: `data.talktime` = seconds talked), `queue_abandoned` (QueueCallerAbandon),
  `queue_self_service` (the caller stepped out to self-serve: `data.waited` = seconds waited before;
  they come back as a second `queued`: one offered call, no abandon; ticketing.queue_entries);
- the voice menu's outcome on the call row: `self_served`, `message_left` (the after-hours
  message, ivr_flows/main.yaml), `queued`, `abandoned`, `failed`; `operator_id` of the operator
  who answered.

A call counts in the period its queue entry (`queued` event) falls in; menu outcomes count by the
call's `started_at`. Only inbound hotline calls are counted (callbacks are the callback figures).

Queue events come over AMI only (the CEL gap-filler has no queue detail): calls queued while the
AMI link was down have no `queued` event and are missing from the queue figures.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from sqlalchemy import Index, String, and_, func, select, true, type_coerce
from sqlalchemy.orm import Session

from ticketing.figures.base import Figures, Period, Rate, rate
from ticketing.models import Call, CallEvent
from ticketing.queue_entries import QueueEntry
from ticketing.queue_entries import aggregate as queue_aggregate

__all__ = [
    "P90_STEPS_S",
    "QUEUE_PARTS",
    "CallFigures",
    "MenuFigures",
    "QueueCall",
    "QueueFigures",
    "QueueTally",
    "TimeStats",
    "Times",
    "queue_parts",
    "time_bucket",
]

HOTLINE = and_(Call.direction == "inbound", Call.purpose == "hotline")
# the voice menu's counts of a period from the index alone (migration 0021)
Index("ix_calls_started_cover", Call.started_at, Call.direction, Call.purpose, Call.outcome)


# The p90's resolution: a time is rounded up to whole seconds up to 1 min, to 5 s up to 5 min, to
# 30 s up to 30 min and to 5 min beyond. AMI's holdtime and talktime are whole seconds, so a p90
# under a minute is exact; above, it is at most one step high. A fixed set of steps lets a daily
# rollup keep a histogram per hour and operator that adds up to the month's (ticketing/figures/queue_rollup.py).
P90_STEPS_S = ((60, 1), (300, 5), (1800, 30), (None, 300))


def time_bucket(ms: int) -> int:
    """The p90 bucket of a time in milliseconds: its upper bound in whole seconds (P90_STEPS_S)."""
    for limit, step in P90_STEPS_S:
        if limit is None or ms <= limit * 1000:
            return -(-ms // (step * 1000)) * step
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class TimeStats:
    """Seconds: how many calls had the time recorded, their mean (of the times to the millisecond)
    and 90th percentile (nearest-rank: the smallest value with at least 90 % of the values at or
    below it, at the resolution of `time_bucket`: exact for whole seconds up to a minute)."""

    count: int
    average: float | None
    p90: float | None

    @classmethod
    def of(cls, values: Iterable[float]) -> TimeStats:
        times = Times()
        for v in values:
            times.add(v)
        return times.stats()


class Times:
    """What a TimeStats is made of, in a form that adds up (a day's, an hour's, an operator's):
    the count, the sum in milliseconds and the histogram of `time_bucket`s."""

    __slots__ = ("hist", "n", "total_ms")

    def __init__(self, n: int = 0, total_ms: int = 0, hist: dict[int, int] | None = None) -> None:
        self.n, self.total_ms, self.hist = n, total_ms, hist if hist is not None else {}

    def add(self, seconds: float) -> None:
        ms = round(seconds * 1000)
        self.n += 1
        self.total_ms += ms
        b = time_bucket(ms)
        self.hist[b] = self.hist.get(b, 0) + 1

    def merge(self, other: Times) -> None:
        self.n += other.n
        self.total_ms += other.total_ms
        hist = self.hist
        for b, c in other.hist.items():
            hist[b] = hist.get(b, 0) + c

    def stats(self) -> TimeStats:
        if not self.n:
            return TimeStats(0, None, None)
        rank = max(1, -(-9 * self.n // 10))  # ceil(0.9 n), in integers
        seen = 0
        for b in sorted(self.hist):
            seen += self.hist[b]
            if seen >= rank:
                return TimeStats(self.n, self.total_ms / self.n / 1000, b)
        raise AssertionError("histogram short of its count")


@dataclass(frozen=True)
class QueueCall:
    """One call offered to the operator queue, as the figures read it (the drill-down row)."""

    call_id: int
    queued_at: datetime
    answered: bool
    wait_s: float | None        # answered: holdtime; abandoned: queue_abandoned.at - queued.at
    talk_s: float | None
    abandoned: bool
    operator: str | None        # user id as text, or "ext:<extension>" if no user has it


@dataclass(frozen=True)
class QueueFigures:
    """offered: calls that joined the operator queue.
    answered: offered calls an operator was connected to.
    接通率 (answer_rate) = answered / offered.
    answered_within (15 s 接通率, service level) = answered with holdtime <= threshold / offered
      (denominator: every offered call, abandoned ones included).
    放弃率 (abandon_rate) = abandoned in the queue / offered.
    abandoned_short = abandoned within the first N s / offered (they are in `abandoned` too).
    wait: holdtime of answered calls; abandoned_wait: time in queue of abandoned calls;
    talk: talktime of completed calls."""

    offered: int
    answered: int
    answer_rate: Rate
    answered_within: Rate
    abandoned: int
    abandon_rate: Rate
    abandoned_short: Rate
    wait: TimeStats
    abandoned_wait: TimeStats
    talk: TimeStats
    calls: list[QueueCall] = field(default_factory=list, repr=False, compare=False)  # drill-down, not a figure


@dataclass(frozen=True)
class MenuFigures:
    """inbound: hotline calls started in the period.
    self_served = calls the voice menu finished itself (outcome self_served) / inbound.
    after_hours_messages: calls that left a message (outcome message_left)."""

    inbound: int
    self_served: Rate
    after_hours_messages: int


QUEUE_PARTS = ("offered", "answered", "answered_within", "abandoned", "abandoned_short")


def queue_parts(answer_within_s: float, short_abandon_s: float) -> dict[str, Callable[[QueueCall], bool]]:
    """Which offered calls each queue figure counts (QueueFigures): its count and its drill-down
    (CallFigures.queue_rows) both select with these, so a list always matches its number.
    offered: every call that joined the queue; answered: an operator was connected;
    answered_within: answered with holdtime <= answer_within_s; abandoned: left the queue unanswered;
    abandoned_short: abandoned after <= short_abandon_s in the queue."""
    return {
        "offered": lambda r: True,
        "answered": lambda r: r.answered,
        "answered_within": lambda r: r.answered and r.wait_s is not None and r.wait_s <= answer_within_s,
        "abandoned": lambda r: r.abandoned,
        "abandoned_short": lambda r: r.abandoned and r.wait_s is not None and r.wait_s <= short_abandon_s,
    }


class CallFigures(Figures):
    """The call figures for a period."""

    def __init__(self, session, thresholds=None, *, use_rollup: bool = True) -> None:
        super().__init__(session, thresholds, use_rollup=use_rollup)
        self._queue_rows: dict[tuple, list[QueueCall]] = {}
        self._tally: dict[tuple, tuple] = {}

    def _tallies(self, period: Period) -> tuple[QueueFigures, dict[int, QueueFigures], dict[str, QueueFigures],
                                                dict[date, QueueFigures]]:
        """The period's queue figures, per hour, per operator and per day, counted from compact rows
        (the same rows and definitions as `queue_calls` + `summarize`, without a QueueCall per
        call: a month is ~150 k calls; tests/test_figure_rollup.py keeps the two equal)."""
        key = (period.since, period.until)
        if key in self._tally:
            return self._tally[key]
        if key in self._queue_rows:  # read already: the rows give the same figures
            rows = self._queue_rows[key]
            out = (self.queue(period, calls=rows), self._grouped(period, self.hour_of, rows),
                   self._grouped(period, lambda row: row.operator, rows), self._grouped(period, self.day_of, rows))
        else:
            out = self._count_compact(period)
        self._tally[key] = out
        return out

    def tally_job(self, period: Period) -> Callable[[Session], None]:
        """A job for `concurrent.side_by_side`: the period's queue tallies (`_tallies`, by a reader
        like this one on the job's own session), kept by this reader for its later `queue`,
        `by_hour`, `by_operator` and `by_day`."""
        def read(session: Session) -> None:
            other = type(self)(session, self.thresholds, use_rollup=self.use_rollup)
            self._tally[(period.since, period.until)] = other._tallies(period)
        return read

    def _count_compact(self, period: Period):
        """Every call of the period, counted: single-join calls from the daily rollup where it has
        the period's days fresh (ticketing/figures/queue_rollup.py), the rest from their queue
        entries; calls sent back to the queue always from their raw events (they count once per
        period, not once per day)."""
        every, hours, operators, days = QueueTally(), defaultdict(QueueTally), defaultdict(QueueTally), \
            defaultdict(QueueTally)
        pieces = [period]
        if self.use_rollup:
            from ticketing.figures.queue_rollup import read_rollup
            pieces = read_rollup(self, period, every, hours, operators, days)
        for piece in pieces:
            self.count_rows(self.session.execute(self.entries_of(piece)), every, hours, operators, days)
        requeued = _raw_queue(period, select(QueueEntry.call_id).where(QueueEntry.queue_joins > 1))
        self.count_rows(self.session.execute(requeued), every, hours, operators, days)
        return (every.figures(), *({k: v.figures() for k, v in sorted(g.items())} for g in (hours, operators, days)))

    def count_rows(self, rows, every: QueueTally, hours: dict, operators: dict, days: dict) -> None:
        """Add queue rows (as `entries_of` reads them) to the period's, each local hour's, each
        operator's and each local day's tallies: `queue_parts`' conditions, written out
        (tests/test_figure_rollup.py)."""
        t = self.thresholds
        within, short, tz = t.answer_within_s, t.short_abandon_s, t.tz
        hour_cache: dict = {}
        for _call_id, queued_at, connected_at, holdtime, extension, talktime, abandoned_at, operator_id in rows:
            answered = connected_at is not None
            wait = talk = operator = None
            abandoned = False
            if answered:
                wait, talk = holdtime, talktime
                operator = str(operator_id) if operator_id is not None else (f"ext:{extension}" if extension else None)
            elif abandoned_at is not None:
                abandoned = True
                wait = (_aware(abandoned_at) - _aware(queued_at)).total_seconds()
            # the local hour and day: moments of one UTC minute share them (zones move by whole quarter hours)
            minute = queued_at[:16] if isinstance(queued_at, str) else queued_at.replace(second=0, microsecond=0)
            local = hour_cache.get(minute)
            if local is None:
                moment = _aware(queued_at).astimezone(tz)
                local = hour_cache[minute] = (moment.hour, moment.date())
            for tally in (every, hours[local[0]], days[local[1]], operators[operator] if operator is not None else None):
                if tally is not None:
                    tally.add(answered, abandoned, wait, talk, within, short)

    def queue_calls(self, period: Period) -> list[QueueCall]:
        """One row per call offered to the queue in the period: from the calls' queue entries
        (ticketing.queue_entries, by index on queued_at); a call that joined the queue more than
        once from its raw events (it counts at its first `queued` event within the period).
        Read once per reader and period: queue, by_hour and by_operator share the rows."""
        key = (period.since, period.until)
        if key not in self._queue_rows:
            qe = QueueEntry
            entries = self.entries_of(period)
            rows = self.session.execute(entries).all()
            requeued = self.session.execute(_raw_queue(period, select(qe.call_id).where(qe.queue_joins > 1))).all()
            if requeued:  # rare: merged in queue order
                rows = sorted([*rows, *requeued], key=lambda r: (_aware(r[1]), r[0]))
            self._queue_rows[key] = [_queue_call(*row) for row in rows]
        return self._queue_rows[key]

    def entries_of(self, period: Period):
        """The queue entries of the period's calls that joined the queue once (by index on queued_at)."""
        qe = QueueEntry
        moments = [qe.queued_at, qe.connected_at, qe.abandoned_at]
        if self.dialect == "sqlite":  # stored text, parsed by _aware (fromisoformat, in C)
            moments = [type_coerce(m, String) for m in moments]
        queued_at, connected_at, abandoned_at = moments
        call = Call.__table__
        if self.dialect == "postgresql":
            # one look-up by key per entry (LIMIT keeps the planner from flattening it into a
            # hash join that reads all 5 M calls: 2.8 s -> 1.4 s for a month)
            call = select(Call.operator_id).where(Call.id == qe.call_id, HOTLINE).limit(1).lateral("hotline_call")
            on, hotline = true(), true()
        else:
            on, hotline = Call.id == qe.call_id, HOTLINE
        return (select(qe.call_id, queued_at, connected_at, qe.holdtime, qe.extension, qe.talktime,
                       abandoned_at, call.c.operator_id)
                .select_from(qe).join(call, on)
                .where(qe.queued_at >= period.since, qe.queued_at < period.until, qe.queue_joins == 1, hotline)
                .order_by(qe.queued_at, qe.call_id))

    def queue(self, period: Period, *, calls: list[QueueCall] | None = None) -> QueueFigures:
        """The queue figures (see QueueFigures) of the period. Without `calls`: counted from the
        period's compact rows (`_tallies`), with no drill-down rows attached."""
        if calls is None:
            return self._tallies(period)[0]
        return summarize(calls, self.thresholds.answer_within_s, self.thresholds.short_abandon_s)

    def hour_of(self, row: QueueCall) -> int:
        """The local hour of day (0-23) a call joined the queue in."""
        return row.queued_at.astimezone(self.thresholds.tz).hour

    def day_of(self, row: QueueCall) -> date:
        """The local calendar day a call joined the queue on."""
        return row.queued_at.astimezone(self.thresholds.tz).date()

    def by_hour(self, period: Period, *, calls: list[QueueCall] | None = None) -> dict[int, QueueFigures]:
        """The queue figures per local hour of day (0-23) of the queue entry, hours with calls only."""
        if calls is None:
            return self._tallies(period)[1]
        return self._grouped(period, self.hour_of, calls)

    def by_day(self, period: Period, *, calls: list[QueueCall] | None = None) -> dict[date, QueueFigures]:
        """The queue figures per local calendar day of the queue entry, days with calls only (the
        接通率 and 15 s trend): each day's offered, answered, answered_within ... as in `queue`."""
        if calls is None:
            return self._tallies(period)[3]
        return self._grouped(period, self.day_of, calls)

    def by_operator(self, period: Period, *, calls: list[QueueCall] | None = None) -> dict[str, QueueFigures]:
        """The queue figures of the calls each operator answered (offered = answered there: an
        unanswered call has no operator)."""
        if calls is None:
            return self._tallies(period)[2]
        return self._grouped(period, lambda row: row.operator, calls)

    def _grouped(self, period: Period, key: Callable[[QueueCall], object], calls: list[QueueCall] | None) -> dict:
        """`calls`: the period's queue_calls when the caller has read them already (one read, several views)."""
        groups: dict = defaultdict(list)
        for row in self.queue_calls(period) if calls is None else calls:
            k = key(row)
            if k is not None:
                groups[k].append(row)
        return {k: self.queue(period, calls=rows) for k, rows in sorted(groups.items())}

    def queue_rows(self, period: Period, part: str = "offered", *, hour: int | None = None, day: date | None = None,
                   operator: str | None = None) -> list[QueueCall]:
        """The calls behind a queue figure (drill-down): those `part` counts (`queue_parts`), of
        one hour of day, day or operator as `by_hour`, `by_day`, `by_operator` group them."""
        wanted = queue_parts(self.thresholds.answer_within_s, self.thresholds.short_abandon_s)[part]
        return [r for r in self.queue_calls(period) if wanted(r)
                and (hour is None or self.hour_of(r) == hour) and (day is None or self.day_of(r) == day)
                and (operator is None or r.operator == operator)]

    def menu(self, period: Period) -> MenuFigures:
        """Voice-menu figures (see MenuFigures), by the call's start (index ix_calls_started_at)."""
        stmt = (select(func.count(),
                       func.count().filter(Call.outcome == "self_served"),
                       func.count().filter(Call.outcome == "message_left"))
                .where(HOTLINE, Call.started_at >= period.since, Call.started_at < period.until))
        inbound, self_served, messages = self.session.execute(stmt).one()
        return MenuFigures(inbound=inbound, self_served=rate(self_served, inbound), after_hours_messages=messages)


def _raw_queue(period: Period, calls):
    """The queue rows of `calls` (a subquery of call ids) from their raw AMI events, each at its
    first `queued` event in the period (the entries' own aggregate, read for one period)."""
    raw = queue_aggregate(CallEvent.call_id.in_(calls), since=period.since, until=period.until).subquery()
    return (select(raw.c.call_id, raw.c.queued_at, raw.c.connected_at, raw.c.holdtime, raw.c.extension,
                   raw.c.talktime, raw.c.abandoned_at, Call.operator_id)
            .join(Call, Call.id == raw.c.call_id)
            .where(HOTLINE))


def _queue_call(call_id, queued_at, connected_at, holdtime, extension, talktime, abandoned_at, operator_id) -> QueueCall:
    """A queue row as the figures read it (one definition for the entries and the raw events)."""
    answered = connected_at is not None
    abandoned = not answered and abandoned_at is not None
    if answered:
        wait = holdtime
    elif abandoned:
        wait = (_aware(abandoned_at) - _aware(queued_at)).total_seconds()
    else:
        wait = None
    operator = str(operator_id) if operator_id is not None else (f"ext:{extension}" if extension else None)
    return QueueCall(call_id=call_id, queued_at=_aware(queued_at), answered=answered, wait_s=wait,
                     talk_s=talktime if answered else None, abandoned=abandoned,
                     operator=operator if answered else None)


def summarize(rows: list[QueueCall], answer_within_s: float, short_abandon_s: float) -> QueueFigures:
    parts = queue_parts(answer_within_s, short_abandon_s)
    offered = len(rows)
    answered = [r for r in rows if parts["answered"](r)]
    abandoned = [r for r in rows if parts["abandoned"](r)]
    fast = sum(1 for r in rows if parts["answered_within"](r))
    short = sum(1 for r in rows if parts["abandoned_short"](r))
    return QueueFigures(
        offered=offered, answered=len(answered), answer_rate=rate(len(answered), offered),
        answered_within=rate(fast, offered), abandoned=len(abandoned), abandon_rate=rate(len(abandoned), offered),
        abandoned_short=rate(short, offered),
        wait=TimeStats.of(r.wait_s for r in answered if r.wait_s is not None),
        abandoned_wait=TimeStats.of(r.wait_s for r in abandoned if r.wait_s is not None),
        talk=TimeStats.of(r.talk_s for r in answered if r.talk_s is not None),
        calls=rows)


def _aware(moment: datetime | str | None) -> datetime | None:
    """A moment read back from an aggregate: on SQLite possibly text or naive (stored UTC)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


class QueueTally:
    """The counts and times a QueueFigures is made of, added one call at a time or merged from a
    rollup row (ticketing/figures/queue_rollup.py): the one place the figures are computed from."""

    __slots__ = ("abandoned", "abandoned_waits", "answered", "fast", "offered", "short", "talks", "waits")

    def __init__(self) -> None:
        self.offered = self.answered = self.fast = self.abandoned = self.short = 0
        self.waits, self.abandoned_waits, self.talks = Times(), Times(), Times()

    def add(self, answered: bool, abandoned: bool, wait, talk, within: float, short: float) -> None:
        self.offered += 1
        if answered:
            self.answered += 1
            if wait is not None:
                self.waits.add(wait)
                if wait <= within:
                    self.fast += 1
            if talk is not None:
                self.talks.add(talk)
        elif abandoned:
            self.abandoned += 1
            if wait is not None:
                self.abandoned_waits.add(wait)
                if wait <= short:
                    self.short += 1

    def merge(self, other: QueueTally) -> None:
        self.offered += other.offered
        self.answered += other.answered
        self.fast += other.fast
        self.abandoned += other.abandoned
        self.short += other.short
        self.waits.merge(other.waits)
        self.abandoned_waits.merge(other.abandoned_waits)
        self.talks.merge(other.talks)

    def figures(self) -> QueueFigures:
        return QueueFigures(
            offered=self.offered, answered=self.answered, answer_rate=rate(self.answered, self.offered),
            answered_within=rate(self.fast, self.offered), abandoned=self.abandoned,
            abandon_rate=rate(self.abandoned, self.offered), abandoned_short=rate(self.short, self.offered),
            wait=self.waits.stats(), abandoned_wait=self.abandoned_waits.stats(), talk=self.talks.stats(), calls=[])
