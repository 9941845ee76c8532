"""The call-log writer of the live link: turns AMI events into call-log entries (A2) and has them
written in order, off the event loop, by ``cel.CallLogWriter``; also fills the log from Asterisk's
CEL file after an outage.

Every entry carries a dedup key derived from what Asterisk recorded (uniqueid + CEL event type +
CEL event time, or the AMI event's own timestamp), so the same fact arriving live and again from
the CEL file is stored once. Entries of a call that has no call row yet wait for it (bounded).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from callcenter.ami.protocol import Message
from callcenter.callcontrol.cel import CallLogWriter, CelSource, LogEntry, cel_entry, parse_ami_time
from callcenter.callcontrol.state import QueueCaller, parse_seconds
from callcenter.pbx.names import from_carrier_trunk, operator_of_channel, operator_of_interface

log = logging.getLogger("callcenter.callcontrol")

# AMI events only we turn into call-log entries (CEL has no hold, queue or confbridge detail)
_AMI_LOG_KINDS = {
    "hold": "hold", "unhold": "unhold",
    "queuecallerjoin": "queued", "agentconnect": "operator_connected",
    "queuecallerabandon": "queue_abandoned", "agentcomplete": "operator_completed",
    "confbridgejoin": "conference_join", "confbridgeleave": "conference_leave",
}

# The dialplan's own queue events (asterisk/extensions.conf [queue-self-service]): a caller waiting in
# the queue stepped out to self-serve (Key, Position = QUEUEPOSITION, Waited = QUEUEWAIT seconds) and
# came back (Position asked for). ticketing.queue_entries counts the exit's wait with the call's.
_USER_EVENT_KINDS = {"CallcenterQueueSelfService": "queue_self_service", "CallcenterQueueReturn": "queue_returned"}


@dataclass
class LogStats:
    log_written: int = 0
    log_duplicates: int = 0
    log_unmatched_dropped: int = 0
    reconciled: int = 0  # call-log entries that only the CEL file had
    store_retries: int = 0  # writes tried again because the store was unreachable


def store_unreachable(exc: BaseException) -> bool:
    """The store itself is down or restarting (connection refused or dropped), not a bad entry."""
    return isinstance(exc, OperationalError) or (isinstance(exc, DBAPIError) and exc.connection_invalidated)


RETRY_MAX_S = 5.0  # the longest wait between two tries of a write the store refused


def app_entry(*, linkedid: str, uniqueid: str, kind: str, data: dict[str, Any] | None = None,
              at: datetime | None = None, dedup_key: str | None = None) -> LogEntry:
    """An entry the application itself adds (transfer, conference, recording); by default the
    dedup key is built from kind, uniqueid and time."""
    at = at or datetime.now(UTC)
    return LogEntry(linkedid=linkedid, uniqueid=uniqueid, kind=kind, at=at,
                    dedup_key=dedup_key or f"app:{kind}:{uniqueid}:{at.timestamp():.6f}", data=data or {})


class CallLog:
    """Entries in, rows out: ``on_event`` for every AMI event, ``add`` for any other entry.
    ``start()`` / ``stop()`` run the writer task; without a session factory nothing is written."""

    def __init__(self, session_factory: sessionmaker[Session] | None, queue_name: str,
                 stats: LogStats | None = None) -> None:
        self.queue_name = queue_name
        self.stats = LogStats() if stats is None else stats
        self._writer = CallLogWriter(session_factory) if session_factory is not None else None
        self._queue: asyncio.Queue[LogEntry | None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._unmatched: collections.OrderedDict[str, list[LogEntry]] = collections.OrderedDict()
        self._unmatched_limit = 5000
        # linkedid -> the first leg of a citizen's call (from the carrier trunk), until the call ends
        self._trunk_starts: collections.OrderedDict[str, LogEntry] = collections.OrderedDict()

    @property
    def enabled(self) -> bool:
        return self._writer is not None

    def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.get_running_loop().create_task(self._worker())

    async def stop(self) -> None:
        await self.flush(timeout=5.0)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    # -- events -> entries ----------------------------------------------------------------------
    def on_event(self, name: str, msg: Message) -> None:
        """Log what the AMI event ``name`` (lower-cased) says, if it is one the call log keeps."""
        if name == "cel":
            # AMI gives the CEL time to the second only; the event's own Timestamp is finer
            stamp = msg.get_first("Timestamp")
            entry = cel_entry(_cel_fields(msg), at_override=parse_ami_time(stamp) if stamp else None)
            if entry is not None:
                if citizen_call_start(entry, msg.get_first("Channel")):
                    self._trunk_start(replace(entry, data={**entry.data,
                                                           "caller_number": msg.get_first("CallerIDnum") or ""}))
                self.add(entry)
        elif name in _AMI_LOG_KINDS:
            self._log_ami(_AMI_LOG_KINDS[name], msg)
        elif name == "userevent" and (kind := _USER_EVENT_KINDS.get(msg.get_first("UserEvent") or "")):
            self._log_ami(kind, msg)

    def _log_ami(self, kind: str, msg: Message) -> None:
        uid = msg.get_first("Uniqueid") or ""
        linkedid = msg.get_first("Linkedid") or uid
        at = parse_ami_time(msg.get_first("Timestamp"))
        data: dict[str, Any] = {"channel": msg.get_first("Channel") or ""}
        create = False
        if kind in ("queued", "queue_abandoned", "operator_connected", "operator_completed"):
            if msg.get_first("Queue") != self.queue_name:
                return
            data["queue"] = self.queue_name
            if kind == "queued":
                create = True
                data["reason"] = msg.get_first("Reason") or ""
                data["caller_number"] = msg.get_first("CallerIDNum") or ""
            if kind in ("operator_connected", "operator_completed"):
                data["operator"] = operator_of_interface(msg.get_first("Interface"))
                data["operator_uniqueid"] = msg.get_first("DestUniqueid")
                data["holdtime"] = parse_seconds(msg.get_first("HoldTime"))
            if kind == "operator_completed":
                data["talktime"] = parse_seconds(msg.get_first("TalkTime"))
                data["reason"] = msg.get_first("Reason") or ""
        elif kind in ("queue_self_service", "queue_returned"):
            data["queue"] = self.queue_name
            data["position"] = _int_or_none(msg.get_first("Position"))
            if kind == "queue_self_service":
                data["key"] = msg.get_first("Key") or ""
                data["waited"] = parse_seconds(msg.get_first("Waited"))
        elif kind in ("conference_join", "conference_leave"):
            data["conference"] = msg.get_first("Conference") or ""
            data["operator"] = operator_of_channel(data["channel"])
        else:
            data["operator"] = operator_of_channel(data["channel"])
        stamp = msg.get_first("Timestamp") or f"{at.timestamp():.6f}"
        self.add(LogEntry(linkedid=linkedid, uniqueid=uid, kind=kind, at=at, dedup_key=f"ami:{kind}:{uid}:{stamp}",
                          data=data, create_call=create))

    # -- writing ----------------------------------------------------------------------------------
    def add(self, entry: LogEntry) -> None:
        """Queue a call-log entry (written in order, off the event loop, idempotent on its key)."""
        if self._queue is None or self._writer is None:
            return
        self._idle.clear()
        self._queue.put_nowait(entry)

    async def flush(self, timeout: float = 10.0) -> bool:
        """Wait until every queued call-log entry is written (tests, shutdown)."""
        if self._queue is None:
            return True
        try:
            await asyncio.wait_for(self._idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _worker(self) -> None:
        assert self._queue is not None
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < 500:
                batch.append(self._queue.get_nowait())
            entries = [e for e in batch if e is not None]
            await self._write_until_stored(entries)
            if self._queue.empty():
                self._idle.set()

    async def _write_until_stored(self, entries: list[LogEntry]) -> None:
        """Write the batch; while the store is unreachable (PostgreSQL restarting, network cut) keep it
        and try again with backoff, so an outage delays the call log instead of losing it (the dedup
        keys make a retried write harmless). Entries arriving meanwhile wait in the queue, in order."""
        delay = 0.25
        while True:
            try:
                await self._write(entries)
                return
            except Exception as exc:
                if not store_unreachable(exc):
                    log.exception("call log: writing %d entries failed", len(entries))
                    return
                if delay == 0.25 or delay >= RETRY_MAX_S:  # the first failure, then every few seconds
                    log.warning("call log: store unreachable (%s); keeping %d entries (+%d queued), trying again",
                                type(exc).__name__, len(entries), self._queue.qsize() if self._queue else 0)
                self.stats.store_retries += 1
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _write(self, entries: list[LogEntry], *, reconciling: bool = False) -> int:
        """Write entries plus any earlier ones of the same calls still waiting for their call row."""
        if not entries or self._writer is None:
            return 0
        linked = {e.linkedid for e in entries}
        waiting = {lid: self._unmatched.pop(lid) for lid in linked if lid in self._unmatched}
        todo = [e for earlier in waiting.values() for e in earlier] + entries
        try:
            result = await asyncio.to_thread(self._writer.write, todo)
        except BaseException:
            self._unmatched.update(waiting)  # not written: they wait for their call row again
            raise
        self.stats.log_written += result.written
        self.stats.log_duplicates += result.duplicates
        if reconciling:
            self.stats.reconciled += result.written
        starts = {e.linkedid: self._trunk_starts.pop(e.linkedid, None) for e in todo if e.final}
        for entry in result.unmatched:
            if reconciling:
                continue  # from the file: nothing more of it will come live
            if entry.final:
                dropped = self._unmatched.pop(entry.linkedid, [])
                start = starts.get(entry.linkedid)
                if start is not None:
                    # a citizen's call that ended before anything recorded it (the menu could not reach
                    # the store and the caller hung up before the queue): its record from Asterisk's
                    # events, as `reconcile` makes one for a call the hotline never saw
                    for again in (replace(start, create_call=True), *(e for e in dropped if e.kind != "leg_start"
                                                                      or e.uniqueid != start.uniqueid), entry):
                        self.add(again)
                    continue
                # the call ended and never got a call row (not a hotline call): forget it
                self.stats.log_unmatched_dropped += len(dropped) + 1
                continue
            self._unmatched.setdefault(entry.linkedid, []).append(entry)
            self._unmatched.move_to_end(entry.linkedid)
        while len(self._unmatched) > self._unmatched_limit:
            _, dropped = self._unmatched.popitem(last=False)
            self.stats.log_unmatched_dropped += len(dropped)
        return result.written

    def _trunk_start(self, entry: LogEntry) -> None:
        self._trunk_starts[entry.linkedid] = entry
        while len(self._trunk_starts) > self._unmatched_limit:  # calls whose end never came
            self._trunk_starts.popitem(last=False)

    def queue_seen(self, callers: Iterable[QueueCaller]) -> None:
        """Callers found waiting in the queue at a resync: a call the log has no row of arrived while
        the link was down (the hotline restarting): its row, queued, with the number Asterisk has."""
        for c in callers:
            self.add(LogEntry(linkedid=c.linkedid or c.uniqueid, uniqueid=c.uniqueid, kind="queued",
                              at=datetime.fromtimestamp(c.joined_at, UTC), dedup_key=f"resync:queued:{c.uniqueid}",
                              data={"channel": c.channel, "queue": self.queue_name, "reason": "unobserved",
                                    "caller_number": c.caller_number}, create_call=True, only_if_new=True))

    async def reconcile(self, source: CelSource, since: float | None = None) -> int:
        """Add to the call log what Asterisk's CEL file has and the log lacks (returns how many)."""
        records = await asyncio.to_thread(source.read_new, since)
        entries = []
        for record in records:
            entry = cel_entry(record)
            if entry is None:
                continue
            if citizen_call_start(entry, record.get("channame")):
                # a citizen's call that came and maybe went while nobody logged it (the hotline down):
                # its row from Asterisk's record, no number (the CEL file holds none)
                entry = replace(entry, create_call=True)
            entries.append(entry)
        await self.flush()
        written = await self._write(entries, reconciling=True)
        if written:
            log.info("CEL reconciliation added %d call-log entries missed while the link was down", written)
        return written


def citizen_call_start(entry: LogEntry, channel: str | None) -> bool:
    """The first leg of a citizen's call: a carrier trunk channel starting a call of its own (the trunk
    leg of a call the hotline placed belongs to the call of the channel that dialled it)."""
    return entry.kind == "leg_start" and entry.uniqueid == entry.linkedid and from_carrier_trunk(channel)


def _cel_fields(msg: Message) -> dict[str, str]:
    """An AMI ``CEL`` event as the same field dict the CEL file reader produces."""
    return {
        "eventtype": msg.get_first("EventName") or "",
        "eventtime": msg.get_first("EventTime") or "",
        "uniqueid": msg.get_first("UniqueID") or "",
        "linkedid": msg.get_first("LinkedID") or "",
        "channame": msg.get_first("Channel") or "",
        "appname": msg.get_first("Application") or "",
        "extra": msg.get_first("Extra") or "",
    }


def _int_or_none(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


__all__ = ["CallLog", "LogStats", "app_entry"]
