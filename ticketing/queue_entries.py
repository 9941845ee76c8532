"""The operator queue, one row per call: what the queue figures read instead of re-grouping the
call log's AMI events (issue 12 item 3: a month is ~200 k calls of a 5 M-call log).

A `QueueEntry` is derived, never edited: its values are the aggregate of the call's own queue
events (`call_events` of kind queued / operator_connected / operator_completed / queue_abandoned),
computed by ONE statement (`aggregate`). The call log's writer (`ticketing.calls.add_event`)
refreshes a call's row with it in the same transaction as the event it logs; `rebuild_day`
recomputes a day's rows from the raw events (`callcenter stats rebuild`, after a definition changed
or for rows logged before migration 0016).

Queue events come from one writer (the AMI call log, callcenter/callcontrol); on PostgreSQL two
transactions logging queue events of the same call at once could each refresh the row from a
snapshot without the other's event (the later one wins): `stats rebuild` puts such a row right.

A call joins the queue more than once when it is sent back to it (a transfer to the queue), or when
the caller stepped out to self-serve and came back (`queue_self_service`, asterisk/extensions.conf
[queue-self-service]): the figures count it in every period with a `queued` event, at the first such
event in the period, so for those calls (`queue_joins > 1`) ticketing.figures reads the raw events.
Such a caller is one offered call, never an abandon (Asterisk logs none for an exit by key), and
the wait before the self-service counts in the wait of the call (`holdtime`).
"""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    and_,
    bindparam,
    delete,
    func,
    select,
    text,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.models import Base, CallEvent

__all__ = ["QUEUE_KINDS", "QueueEntry", "aggregate", "fill_all", "rebuild_day", "refresh_call"]

# calls that joined the queue more than once (read from their raw events; a partial index)
REQUEUED_SQL = "queue_joins > 1"
QUEUE_KINDS = ("queued", "operator_connected", "operator_completed", "queue_abandoned", "queue_self_service")


class QueueEntry(Base):
    """One call offered to the operator queue (derived from its events; see the module)."""

    __tablename__ = "queue_entries"
    __table_args__ = (Index("ix_queue_entries_queued_at", "queued_at", "call_id"),  # by period (0016)
                      Index("ix_queue_entries_requeued", "call_id", sqlite_where=text(REQUEUED_SQL),
                            postgresql_where=text(REQUEUED_SQL)))

    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"), primary_key=True, autoincrement=False)
    queued_at: Mapped[datetime]                      # its first `queued` event
    queue_joins: Mapped[int] = mapped_column(Integer)  # how many `queued` events
    connected_at: Mapped[datetime | None]            # first operator_connected
    # AgentConnect's seconds waited, plus the waits before stepping out to self-serve (their `waited`)
    holdtime: Mapped[float | None] = mapped_column(Float)
    extension: Mapped[str | None] = mapped_column(String(40))  # the operator's extension
    talktime: Mapped[float | None] = mapped_column(Float)  # AgentComplete's seconds talked, summed
    abandoned_at: Mapped[datetime | None]            # first queue_abandoned


# a call's events, for the refresh (the call log had no index by call before migration 0016)
Index("ix_call_events_call", CallEvent.call_id, CallEvent.kind)


def aggregate(*where, since: datetime | None = None, until: datetime | None = None):
    """The entries of the calls whose events match `where`, per call: the queue figures' one
    reading of a call's AMI queue events. With since/until, only the `queued` events in that
    period count (a call sent back to the queue, read for one period)."""
    ev = CallEvent
    queued = ev.kind == "queued"
    if since is not None:
        queued = and_(queued, ev.at >= since, ev.at < until)
    connected = ev.kind == "operator_connected"
    return (select(ev.call_id,
                   func.min(ev.at).filter(queued).label("queued_at"),
                   func.count().filter(queued).label("queue_joins"),
                   func.min(ev.at).filter(connected).label("connected_at"),
                   (func.min(ev.data["holdtime"].as_float()).filter(connected)
                    + func.coalesce(func.sum(ev.data["waited"].as_float()).filter(
                        ev.kind == "queue_self_service"), 0)).label("holdtime"),
                   func.min(ev.data["operator"].as_string()).filter(connected).label("extension"),
                   func.sum(ev.data["talktime"].as_float()).filter(ev.kind == "operator_completed").label("talktime"),
                   func.min(ev.at).filter(ev.kind == "queue_abandoned").label("abandoned_at"))
            .where(ev.kind.in_(QUEUE_KINDS), *where)
            .group_by(ev.call_id)
            .having(func.count().filter(queued) > 0))


_COLUMNS = ("call_id", "queued_at", "queue_joins", "connected_at", "holdtime", "extension", "talktime", "abandoned_at")
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _upsert(dialect: str, source):
    stmt = _INSERTS[dialect](QueueEntry).from_select(_COLUMNS, source)
    return stmt.on_conflict_do_update(index_elements=["call_id"],
                                      set_={c: stmt.excluded[c] for c in _COLUMNS if c != "call_id"})


# Built once per dialect: the call log runs it for every queue event it logs.
_REFRESH = {d: _upsert(d, aggregate(CallEvent.call_id == bindparam("call_id"))) for d in _INSERTS}


def refresh_call(run, call_id: int) -> None:
    """The call's entry, recomputed from its events (one statement; `run` is the call log's
    runner, so it is in the transaction that logged the event)."""
    run(_REFRESH[run.dialect.name], {"call_id": call_id})


def rebuild_day(session, since: datetime, until: datetime) -> int:
    """Every entry whose first queued event is in [since, until), and every call queued then,
    recomputed from the raw events; in the caller's transaction (one day at a time: an interrupted
    rebuild leaves each day either as it was or rebuilt). Returns the calls queued that day."""
    ev = CallEvent
    queued = select(ev.call_id).where(ev.kind == "queued", ev.at >= since, ev.at < until)
    session.execute(delete(QueueEntry).where(QueueEntry.queued_at >= since, QueueEntry.queued_at < until))
    session.execute(_upsert(session.get_bind().dialect.name, aggregate(ev.call_id.in_(queued))))
    return session.execute(select(func.count(func.distinct(ev.call_id))).where(
        ev.kind == "queued", ev.at >= since, ev.at < until)).scalar() or 0


def fill_all(connection) -> None:
    """Every call's entry from the raw events at once (migration 0016, on an existing call log)."""
    connection.execute(_upsert(connection.dialect.name, aggregate()))
