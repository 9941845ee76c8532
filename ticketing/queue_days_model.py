"""The daily rollup of the queue figures (issue 12 item 3), and what keeps it honest.

`QueueDay`: for one local day, the tallies a QueueFigures is made of (ticketing.figures.calls
`_Tally`: counts, and for the wait, the abandoned wait and the talk time their count, sum in ms and
histogram of p90 buckets) of the calls that joined the operator queue once that day: one row per
local hour of day (`operator` ""), one per answering operator (`hour` -1) and the day's own (`hour`
-1, `operator` ""), which also says the day is computed. `params` holds the zone and the 15 s and
short-abandon thresholds the counts were made with: a reader with other thresholds reads raw.
Calls sent back to the queue are not in it (they count once per period, read from their events).

`QueueStaleDay`: a UTC day a queue figure may have moved on since its rollup was computed, marked by
database triggers (installed by migration 0023 from `QUEUE_STALE_SOURCES`, with the generator of
ticketing/figure_days_model.py): a queue entry written (the call log refreshes it with every queue
event it logs, ticketing.calls.add_event) marks its queued day, old and new; a call's operator,
direction or purpose changed marks its entry's day. Whichever code path writes.
"""
from __future__ import annotations

from datetime import date

from sqlalchemy import BigInteger, Date, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.models import Base

__all__ = ["QUEUE_STALE_SOURCES", "QueueDay", "QueueStaleDay", "queue_drop_trigger_ddl", "queue_trigger_ddl"]

DAY_ROW, NO_OPERATOR = -1, ""  # hour of the day's and the operators' rows; operator of the hours' rows


class QueueDay(Base):
    """A local day's queue tallies: of one hour of day, one operator, or the whole day (see the module)."""

    __tablename__ = "queue_days"

    params: Mapped[str] = mapped_column(String(80), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    hour: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    operator: Mapped[str] = mapped_column(String(60), primary_key=True)
    offered: Mapped[int] = mapped_column(Integer)
    answered: Mapped[int] = mapped_column(Integer)
    fast: Mapped[int] = mapped_column(Integer)            # answered within the 15 s threshold
    abandoned: Mapped[int] = mapped_column(Integer)
    short: Mapped[int] = mapped_column(Integer)           # abandoned within the short threshold
    wait_n: Mapped[int] = mapped_column(Integer)
    wait_ms: Mapped[int] = mapped_column(BigInteger)
    wait_hist: Mapped[str] = mapped_column(Text)         # JSON [bucket s, count, bucket s, count, ...]
    abandoned_n: Mapped[int] = mapped_column(Integer)
    abandoned_ms: Mapped[int] = mapped_column(BigInteger)
    abandoned_hist: Mapped[str] = mapped_column(Text)
    talk_n: Mapped[int] = mapped_column(Integer)
    talk_ms: Mapped[int] = mapped_column(BigInteger)
    talk_hist: Mapped[str] = mapped_column(Text)


class QueueStaleDay(Base):
    """A UTC day whose queue rollup may be out of date (see the module)."""

    __tablename__ = "queue_stale_days"

    day: Mapped[date] = mapped_column(Date, primary_key=True)
    marks: Mapped[int] = mapped_column(Integer, default=1)


# as figure_days_model.STALE_SOURCES: table -> (its moments, [(related table, its key, our key, its moments)])
QUEUE_STALE_SOURCES: dict[str, tuple[list[str], list[tuple[str, str, str, list[str]]]]] = {
    "queue_entries": (["queued_at"], []),
    "calls": ([], [("queue_entries", "call_id", "id", ["queued_at"])]),
}
# a call's columns the queue figures read (its other updates, e.g. the end of the call, move nothing)
_CALLS_READ = {"calls": ["operator_id", "direction", "purpose"]}


def queue_trigger_ddl(dialect: str) -> list[str]:
    # (not at import time: ticketing.models imports this module, and figure_days_model imports it)
    from ticketing.figure_days_model import trigger_ddl
    return trigger_ddl(dialect, QUEUE_STALE_SOURCES, "queue_stale_days", "queue_stale", update_of=_CALLS_READ,
                       skip_marked=True)  # the call log writes queue entries by upsert


def queue_drop_trigger_ddl(dialect: str) -> list[str]:
    from ticketing.figure_days_model import drop_trigger_ddl
    return drop_trigger_ddl(dialect, QUEUE_STALE_SOURCES, "queue_stale")
