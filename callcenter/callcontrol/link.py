"""The AMI link service: one long-lived AMI connection, the live state of channels, bridges and the
12345 queue, the call log fed from live events, and pub/sub feeds for the operators' screens.

    link = CallLink(AMIClient.from_settings(settings), session_factory, cel_source=CelFile.from_settings(settings))
    await link.start()            # logs in, resyncs, then keeps the link up (reconnect with backoff)
    feed = link.subscribe("queue")        # or "operator:8001", "calls", "link"
    async for event in feed: ...
    await link.stop()

Rules it keeps:

- After EVERY login (first one, Asterisk restarted, link cut) the state is read again from
  Asterisk (CoreShowChannels, BridgeList, QueueStatus) instead of trusting what was known before,
  then the call log is reconciled against Asterisk's CEL file (callcenter.callcontrol.cel) for the
  time the link was down, then ``on_resync`` callbacks run (the queue service re-adds operators an
  Asterisk restart dropped).
- The call log (A2) is written idempotently: every entry has a dedup key derived from what
  Asterisk recorded (uniqueid + CEL event type + CEL event time, or the AMI event's own timestamp),
  so the same fact arriving live and again from the CEL file is stored once.
- Actions are never replayed: the AMI client refuses them while the link is down (``LinkDown``
  here, HTTP 503 in the API) and never re-sends one after a reconnect.
- Phone numbers in logs are masked.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from callcenter.ami.client import AMIClient
from callcenter.ami.errors import AMIError
from callcenter.ami.protocol import Message
from callcenter.callcontrol.cel import CallLogWriter, CelSource, LogEntry, cel_entry, parse_ami_time
from callcenter.pbx.names import operator_of_channel, operator_of_interface
from ticketing.errors import DomainError
from ticketing.privacy import mask_phone

log = logging.getLogger("callcenter.callcontrol")

QUEUE = "hotline-12345"

# Queue member device states (app_queue's Status values = ast_device_state)
_FREE_STATES = {1}  # NOT_INUSE
_BUSY_STATES = {2, 3, 6, 7, 8}  # INUSE, BUSY, RINGING, RINGINUSE, ONHOLD


# -------------------------------------------------------------------------------------------
# errors the API maps to 4xx/503 (DomainError subclasses carry status_code and rule)


class CallControlError(DomainError):
    status_code = 409


class LinkDown(CallControlError):
    status_code = 503

    def __init__(self, message: str = "the telephone system (Asterisk AMI link) is not connected; try again shortly"):
        super().__init__("telephony_unavailable", message)


class UnknownChannel(CallControlError):
    status_code = 404

    def __init__(self, ident: str):
        super().__init__("unknown_channel", f"no call leg {ident!r} is known to the telephone system")


class ChannelGone(CallControlError):
    status_code = 410

    def __init__(self, ident: str):
        super().__init__("call_ended", f"call leg {ident!r} has already hung up")


class NotYourCall(CallControlError):
    status_code = 403

    def __init__(self, ident: str, extension: str | None):
        who = f"operator {extension}" if extension else "you (no operator extension on your account)"
        super().__init__("not_your_call", f"call leg {ident!r} is not a call of {who}")


# -------------------------------------------------------------------------------------------
# state


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ChannelState:
    uniqueid: str
    linkedid: str
    name: str
    state: str = ""  # ChannelStateDesc: Down, Ring, Ringing, Up, ...
    caller_number: str = ""
    connected_number: str = ""
    context: str = ""
    exten: str = ""
    bridge_id: str | None = None
    on_hold: bool = False
    created_at: datetime = field(default_factory=_now)
    answered_at: datetime | None = None
    hungup_at: datetime | None = None

    @property
    def operator(self) -> str | None:
        return operator_of_channel(self.name)

    def public(self) -> dict[str, Any]:
        """For feeds and the API: numbers masked (the screen-pop carries the caller's number on purpose)."""
        return {
            "uniqueid": self.uniqueid, "linkedid": self.linkedid, "channel": self.name, "state": self.state,
            "operator": self.operator, "bridge_id": self.bridge_id, "on_hold": self.on_hold,
            "caller_number": mask_phone(self.caller_number), "connected_number": mask_phone(self.connected_number),
            "created_at": self.created_at.isoformat(),
            "answered_at": self.answered_at.isoformat() if self.answered_at else None,
        }


@dataclass
class BridgeState:
    bridge_id: str
    bridge_type: str = ""
    technology: str = ""
    channels: set[str] = field(default_factory=set)  # uniqueids

    @property
    def is_conference(self) -> bool:
        return self.technology == "softmix"


@dataclass
class QueueCaller:
    uniqueid: str
    linkedid: str
    channel: str
    caller_number: str
    joined_at: float  # epoch seconds
    position: int = 0


@dataclass
class QueueMember:
    interface: str  # PJSIP/op8001
    name: str = ""
    status: int = 0  # device state
    paused: bool = False
    paused_reason: str = ""
    in_call: bool = False
    calls_taken: int = 0

    @property
    def extension(self) -> str | None:
        return operator_of_interface(self.interface)

    @property
    def availability(self) -> str:
        """free | busy | paused | unavailable (logged in, phone not reachable)."""
        if self.in_call or self.status in _BUSY_STATES:
            return "busy"
        if self.paused:
            return "paused"
        if self.status in _FREE_STATES:
            return "free"
        return "unavailable"

    def public(self) -> dict[str, Any]:
        return {"interface": self.interface, "extension": self.extension, "name": self.name,
                "state": self.availability, "paused": self.paused, "paused_reason": self.paused_reason,
                "in_call": self.in_call, "calls_taken": self.calls_taken}


@dataclass
class QueueState:
    name: str
    callers: dict[str, QueueCaller] = field(default_factory=dict)
    members: dict[str, QueueMember] = field(default_factory=dict)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        members = sorted(self.members.values(), key=lambda m: m.interface)
        counts = collections.Counter(m.availability for m in members)
        waits = [max(0.0, now - c.joined_at) for c in self.callers.values()]
        return {
            "queue": self.name,
            "callers_waiting": len(self.callers),
            "longest_wait_seconds": round(max(waits), 1) if waits else 0.0,
            "operators": {k: counts.get(k, 0) for k in ("free", "busy", "paused", "unavailable")},
            "members": [m.public() for m in members],
            "callers": [{"uniqueid": c.uniqueid, "position": c.position, "caller_number": mask_phone(c.caller_number),
                         "waiting_seconds": round(max(0.0, now - c.joined_at), 1)}
                        for c in sorted(self.callers.values(), key=lambda c: (c.position, c.joined_at))],
        }


# -------------------------------------------------------------------------------------------
# pub/sub


class Feed:
    """One subscriber's bounded queue of events (dicts). When full, the OLDEST event is dropped and
    counted in ``dropped``: a screen that fell behind gets the newest state, not a stalled server."""

    def __init__(self, broker: Broker, topics: frozenset[str], maxsize: int) -> None:
        self._broker = broker
        self.topics = topics
        self._buffer: collections.deque[dict[str, Any]] = collections.deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self.closed = False
        self.dropped = 0

    def put(self, event: dict[str, Any]) -> None:
        if self.closed:
            return
        if len(self._buffer) >= self._maxsize:
            self._buffer.popleft()
            self.dropped += 1
        self._buffer.append(event)
        self._ready.set()

    async def get(self, timeout: float | None = None) -> dict[str, Any]:
        """Next event; ``TimeoutError`` after ``timeout``; ``StopAsyncIteration`` once closed and empty."""
        async def next_one() -> dict[str, Any]:
            while not self._buffer:
                if self.closed:
                    raise StopAsyncIteration
                self._ready.clear()
                await self._ready.wait()
            return self._buffer.popleft()
        return await asyncio.wait_for(next_one(), timeout)

    def get_nowait(self) -> dict[str, Any] | None:
        return self._buffer.popleft() if self._buffer else None

    def __aiter__(self) -> Feed:
        return self

    async def __anext__(self) -> dict[str, Any]:
        return await self.get()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._broker._remove(self)
            self._ready.set()

    def __enter__(self) -> Feed:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Broker:
    """Topics: ``queue`` (queue snapshots), ``operator:<ext>`` (that operator's calls, screen-pops,
    membership), ``calls`` (every channel change), ``link`` (link up/down, resyncs)."""

    def __init__(self) -> None:
        self._feeds: set[Feed] = set()
        self.published = 0

    def subscribe(self, topics: str | Iterable[str], maxsize: int = 200) -> Feed:
        topics = frozenset([topics] if isinstance(topics, str) else topics)
        feed = Feed(self, topics, maxsize)
        self._feeds.add(feed)
        return feed

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        self.published += 1
        event = {"topic": topic, **event}
        for feed in list(self._feeds):
            if topic in feed.topics:
                feed.put(event)

    def _remove(self, feed: Feed) -> None:
        self._feeds.discard(feed)

    @property
    def subscribers(self) -> int:
        return len(self._feeds)


# -------------------------------------------------------------------------------------------
# the service

EventHandler = Callable[[Message], Any]
ResyncHandler = Callable[["CallLink", bool], Any]

# AMI events only we turn into call-log entries (CEL has no hold, queue or confbridge detail)
_AMI_LOG_KINDS = {
    "hold": "hold", "unhold": "unhold",
    "queuecallerjoin": "queued", "agentconnect": "operator_connected",
    "queuecallerabandon": "queue_abandoned", "agentcomplete": "operator_completed",
    "confbridgejoin": "conference_join", "confbridgeleave": "conference_leave",
}


@dataclass
class LinkStats:
    resyncs: int = 0
    resync_failures: int = 0
    last_resync_at: float | None = None
    down_since: float | None = None  # epoch seconds, None while up
    log_written: int = 0
    log_duplicates: int = 0
    log_unmatched_dropped: int = 0
    reconciled: int = 0  # call-log entries that only the CEL file had


class CallLink:
    """The AMI link service (see module doc). One per process; the API finds it in ``app.state.callcontrol``."""

    def __init__(self, ami: AMIClient, session_factory: sessionmaker[Session] | None = None, *,
                 queue: str = QUEUE, cel_source: CelSource | None = None,
                 operator_users: Callable[[str], int | None] | None = None,
                 cel_maintenance_seconds: float = 60.0) -> None:
        self.ami = ami
        self.session_factory = session_factory
        self.queue_name = queue
        self.cel_source = cel_source
        self.broker = Broker()
        self.stats = LinkStats()
        self.channels: dict[str, ChannelState] = {}
        self.bridges: dict[str, BridgeState] = {}
        self.queue = QueueState(queue)
        # recently hung-up legs, so the API can tell "hung up" (410) from "never existed" (404)
        self.gone: collections.OrderedDict[str, ChannelState] = collections.OrderedDict()
        self._gone_limit = 5000
        self._handlers: list[EventHandler] = []
        self._resync_handlers: list[ResyncHandler] = []
        self._writer = CallLogWriter(session_factory) if session_factory is not None else None
        self._log_queue: asyncio.Queue[LogEntry | None] | None = None
        self._log_task: asyncio.Task[None] | None = None
        self._log_idle = asyncio.Event()
        self._log_idle.set()
        self._unmatched: collections.OrderedDict[str, list[LogEntry]] = collections.OrderedDict()
        self._unmatched_limit = 5000
        self._waiters: list[tuple[Callable[[Message], bool], asyncio.Future[Message]]] = []
        self._subscription = None
        self._resync_lock = asyncio.Lock()
        self._resynced = asyncio.Event()
        self._operator_users = operator_users
        self.cel_maintenance_seconds = cel_maintenance_seconds
        self._cel_task: asyncio.Task[None] | None = None
        ami.on_connected(self._on_connected)

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self, *, wait: bool = True) -> None:
        """Start the link (``wait``: until the first login and resync are done; raises AMI errors)."""
        self._log_queue = asyncio.Queue()
        self._log_task = asyncio.get_running_loop().create_task(self._log_worker())
        self._subscription = self.ami.subscribe(self._on_event)
        if self.cel_source is not None and hasattr(self.cel_source, "advance") and self.cel_maintenance_seconds:
            self._cel_task = asyncio.get_running_loop().create_task(self._cel_maintenance())
        await self.ami.start(wait=wait)

    async def stop(self) -> None:
        if self._cel_task is not None:
            self._cel_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._cel_task
            self._cel_task = None
        if self._subscription is not None:
            self._subscription.close()
            self._subscription = None
        await self.ami.stop()
        await self.flush_log(timeout=5.0)
        if self._log_task is not None:
            self._log_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._log_task
            self._log_task = None
        self.broker.publish("link", {"type": "link", "connected": False, "reason": "stopped"})

    @property
    def connected(self) -> bool:
        return self.ami.connected

    def require_link(self) -> None:
        if not self.ami.connected:
            raise LinkDown()

    async def wait_resynced(self, timeout: float | None = None) -> bool:
        """True once the state was read after the latest login (False: timeout)."""
        try:
            await asyncio.wait_for(self._resynced.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def on_event(self, handler: EventHandler) -> EventHandler:
        """Call ``handler(msg)`` (sync or async) for every AMI event, AFTER the state was updated."""
        self._handlers.append(handler)
        return handler

    def on_resync(self, handler: ResyncHandler) -> ResyncHandler:
        """Call ``handler(link, first)`` after every resync (the queue service re-adds members here)."""
        self._resync_handlers.append(handler)
        return handler

    def subscribe(self, topics: str | Iterable[str], maxsize: int = 200) -> Feed:
        return self.broker.subscribe(topics, maxsize)

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        self.broker.publish(topic, event)

    async def wait_for(self, predicate: Callable[[Message], bool], timeout: float = 10.0) -> Message:
        """The next AMI event for which ``predicate`` is true (state already updated when it returns)."""
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            with contextlib.suppress(ValueError):
                self._waiters.remove(entry)

    # -- queries ----------------------------------------------------------------------------
    def channel(self, uniqueid: str) -> ChannelState | None:
        return self.channels.get(uniqueid)

    def channel_by_name(self, name: str) -> ChannelState | None:
        return next((c for c in self.channels.values() if c.name == name), None)

    def operator_channels(self, extension: str) -> list[ChannelState]:
        return [c for c in self.channels.values() if c.operator == extension]

    def bridge_peers(self, uniqueid: str) -> list[ChannelState]:
        """The other channels in the bridge of ``uniqueid`` (empty when not bridged)."""
        chan = self.channels.get(uniqueid)
        if chan is None or chan.bridge_id is None or chan.bridge_id not in self.bridges:
            return []
        return [self.channels[u] for u in self.bridges[chan.bridge_id].channels
                if u != uniqueid and u in self.channels]

    def require_call(self, extension: str | None, ident: str) -> ChannelState:
        """The live leg ``ident`` (uniqueid or channel name) if it is a call of operator ``extension``:
        the operator's own leg, a leg bridged with it, or a leg of the same call (linkedid).
        Raises LinkDown (503), UnknownChannel (404), ChannelGone (410) or NotYourCall (403)."""
        self.require_link()
        chan = self.channels.get(ident) or self.channel_by_name(ident)
        if chan is None:
            if ident in self.gone or any(c.name == ident for c in self.gone.values()):
                raise ChannelGone(ident)
            raise UnknownChannel(ident)
        if extension is None:
            raise NotYourCall(ident, None)
        if chan.operator == extension:
            return chan
        mine = self.operator_channels(extension)
        if any(m.linkedid == chan.linkedid for m in mine):
            return chan
        if any(p.operator == extension for p in self.bridge_peers(chan.uniqueid)):
            return chan
        raise NotYourCall(ident, extension)

    def queue_snapshot(self) -> dict[str, Any]:
        snap = self.queue.snapshot()
        snap["link"] = {"connected": self.connected, "down_since": self.stats.down_since}
        return snap

    # -- call log -----------------------------------------------------------------------------
    def log(self, entry: LogEntry) -> None:
        """Queue a call-log entry (written in order, off the event loop, idempotent on its key)."""
        if self._log_queue is None or self._writer is None:
            return
        self._log_idle.clear()
        self._log_queue.put_nowait(entry)

    async def log_event(self, *, linkedid: str, uniqueid: str, kind: str, data: dict[str, Any] | None = None,
                        at: datetime | None = None, dedup_key: str | None = None) -> None:
        """For other call-control parts (transfer, conference, recording): add an entry to the call
        log of the call ``linkedid``. ``dedup_key`` makes a retried write harmless; by default it is
        built from kind, uniqueid and time."""
        at = at or _now()
        self.log(LogEntry(linkedid=linkedid, uniqueid=uniqueid, kind=kind, at=at,
                          dedup_key=dedup_key or f"app:{kind}:{uniqueid}:{at.timestamp():.6f}", data=data or {}))

    async def flush_log(self, timeout: float = 10.0) -> bool:
        """Wait until every queued call-log entry is written (tests, shutdown)."""
        if self._log_queue is None:
            return True
        try:
            await asyncio.wait_for(self._log_idle.wait(), timeout)
            return True
        except TimeoutError:
            return False

    async def _log_worker(self) -> None:
        assert self._log_queue is not None
        while True:
            batch = [await self._log_queue.get()]
            while not self._log_queue.empty() and len(batch) < 500:
                batch.append(self._log_queue.get_nowait())
            entries = [e for e in batch if e is not None]
            try:
                await self._write(entries)
            except Exception:
                log.exception("call log: writing %d entries failed", len(entries))
            if self._log_queue.empty():
                self._log_idle.set()

    async def _write(self, entries: list[LogEntry], *, reconciling: bool = False) -> int:
        """Write entries plus any earlier ones of the same calls still waiting for their call row."""
        if not entries or self._writer is None:
            return 0
        linked = {e.linkedid for e in entries}
        todo = [e for lid in linked for e in self._unmatched.pop(lid, [])] + entries
        result = await asyncio.to_thread(self._writer.write, todo)
        self.stats.log_written += result.written
        self.stats.log_duplicates += result.duplicates
        if reconciling:
            self.stats.reconciled += result.written
        for entry in result.unmatched:
            if reconciling:
                continue  # from the file: nothing more of it will come live
            if entry.final:
                # the call ended and never got a call row (not a hotline call): forget it
                dropped = self._unmatched.pop(entry.linkedid, [])
                self.stats.log_unmatched_dropped += len(dropped) + 1
                continue
            self._unmatched.setdefault(entry.linkedid, []).append(entry)
            self._unmatched.move_to_end(entry.linkedid)
        while len(self._unmatched) > self._unmatched_limit:
            _, dropped = self._unmatched.popitem(last=False)
            self.stats.log_unmatched_dropped += len(dropped)
        return result.written

    # -- resync ---------------------------------------------------------------------------------
    async def _on_connected(self, client: AMIClient, first: bool) -> None:
        down_since = self.stats.down_since
        self._resynced.clear()
        try:
            await self.resync()
        except AMIError as exc:
            self.stats.resync_failures += 1
            log.warning("resync after login failed (%s); the next reconnect retries", exc)
            return
        self.stats.down_since = None
        self.broker.publish("link", {"type": "link", "connected": True, "first": first})
        if self.cel_source is not None and self._writer is not None:
            try:
                await self.reconcile(since=down_since)
            except Exception:
                log.exception("CEL reconciliation failed")
        for handler in list(self._resync_handlers):
            try:
                result = handler(self, first)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("resync handler %r failed", handler)
        self._resynced.set()

    async def _cel_maintenance(self) -> None:
        """Let the CEL file rotate while the link stays up: what the file held one tick ago came
        live over AMI if the link was connected (same login) all the time since, so the reader counts
        it as consumed (CelFile.advance, which rotates once enough is consumed). After a cut the mark
        is dropped and the reconnect's reconcile reads the file as usual."""
        source: Any = self.cel_source
        mark, login = None, None
        while True:
            await asyncio.sleep(self.cel_maintenance_seconds)
            if not self.ami.connected or not self._resynced.is_set():
                mark, login = None, None
                continue
            try:
                if mark is not None and login == self.ami.stats.connects:
                    await asyncio.to_thread(source.advance, mark)
                mark, login = await asyncio.to_thread(source.mark), self.ami.stats.connects
            except Exception:
                log.exception("CEL file maintenance failed")
                mark, login = None, None

    async def reconcile(self, since: float | None = None) -> int:
        """Add to the call log what Asterisk's CEL file has and the log lacks (returns how many)."""
        if self.cel_source is None:
            return 0
        records = await asyncio.to_thread(self.cel_source.read_new, since)
        entries = [e for e in (cel_entry(r) for r in records) if e is not None]
        await self.flush_log()
        written = await self._write(entries, reconciling=True)
        if written:
            log.info("CEL reconciliation added %d call-log entries missed while the link was down", written)
        return written

    async def resync(self) -> None:
        """Read channels, bridges and queue state again (after every login)."""
        async with self._resync_lock:
            _, chans = await self.ami.send_action_list({"Action": "CoreShowChannels"}, timeout=15)
            _, bridges = await self.ami.send_action_list({"Action": "BridgeList"}, timeout=15)
            _, qitems = await self.ami.send_action_list({"Action": "QueueStatus", "Queue": self.queue_name}, timeout=15)
            now = time.time()
            seen: dict[str, ChannelState] = {}
            for item in chans:
                uid = item.get_first("Uniqueid") or ""
                if not uid:
                    continue
                old = self.channels.get(uid)
                duration = _seconds(item.get_first("Duration"))
                chan = ChannelState(
                    uniqueid=uid, linkedid=item.get_first("Linkedid") or uid, name=item.get_first("Channel") or "",
                    state=item.get_first("ChannelStateDesc") or "", caller_number=item.get_first("CallerIDNum") or "",
                    connected_number=item.get_first("ConnectedLineNum") or "", context=item.get_first("Context") or "",
                    exten=item.get_first("Exten") or "", bridge_id=item.get_first("BridgeId") or None,
                    on_hold=old.on_hold if old else False,
                    created_at=old.created_at if old else datetime.fromtimestamp(now - duration, UTC),
                    answered_at=old.answered_at if old else None,
                )
                seen[uid] = chan
            vanished = [c for uid, c in self.channels.items() if uid not in seen]
            self.channels = seen
            for chan in vanished:
                chan.hungup_at = _now()
                self._remember_gone(chan)
                self.broker.publish("calls", {"type": "channel", "event": "gone", "channel": chan.public()})
                if chan.operator:
                    self.broker.publish(f"operator:{chan.operator}", {"type": "call", "event": "hangup",
                                                                       "channel": chan.public()})
            self.bridges = {}
            for item in bridges:
                bid = item.get_first("BridgeUniqueid") or ""
                if bid:
                    self.bridges[bid] = BridgeState(bid, item.get_first("BridgeType") or "",
                                                    item.get_first("BridgeTechnology") or "")
            for chan in self.channels.values():
                if chan.bridge_id:
                    self.bridges.setdefault(chan.bridge_id, BridgeState(chan.bridge_id)).channels.add(chan.uniqueid)
            queue = QueueState(self.queue_name)
            for item in qitems:
                name = (item.name or "").lower()
                if name == "queuemember":
                    member = _member_from(item)
                    queue.members[member.interface] = member
                elif name == "queueentry":
                    uid = item.get_first("Uniqueid") or ""
                    queue.callers[uid] = QueueCaller(
                        uniqueid=uid, linkedid=(self.channels.get(uid).linkedid if uid in self.channels else uid),
                        channel=item.get_first("Channel") or "", caller_number=item.get_first("CallerIDNum") or "",
                        joined_at=now - _seconds(item.get_first("Wait")), position=int(item.get_first("Position") or 0))
            self.queue = queue
            self.stats.resyncs += 1
            self.stats.last_resync_at = now
            log.info("resynced: %d channels, %d bridges, %d queue members, %d callers waiting",
                     len(self.channels), len(self.bridges), len(queue.members), len(queue.callers))
            self._publish_queue()
            self.broker.publish("link", {"type": "resync", "channels": len(self.channels),
                                         "vanished": len(vanished)})

    def _remember_gone(self, chan: ChannelState) -> None:
        self.gone[chan.uniqueid] = chan
        while len(self.gone) > self._gone_limit:
            self.gone.popitem(last=False)

    def _publish_queue(self) -> None:
        self.broker.publish("queue", {"type": "queue", "state": self.queue_snapshot()})

    # -- live events ----------------------------------------------------------------------------
    def _on_event(self, msg: Message) -> None:
        name = (msg.name or "").lower()
        try:
            self._apply(name, msg)
        except Exception:
            log.exception("applying AMI event %s failed", msg.name)
        for predicate, future in list(self._waiters):
            if not future.done():
                try:
                    if predicate(msg):
                        future.set_result(msg)
                except Exception:
                    log.exception("wait_for predicate failed")
        for handler in list(self._handlers):
            try:
                result = handler(msg)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    task.add_done_callback(_log_task_failure)
            except Exception:
                log.exception("call-control event handler %r failed on %s", handler, msg.name)

    def _apply(self, name: str, msg: Message) -> None:
        uid = msg.get_first("Uniqueid") or ""
        if name == "cel":
            # AMI gives the CEL time to the second only; the event's own Timestamp is finer
            stamp = msg.get_first("Timestamp")
            entry = cel_entry(_cel_fields(msg), at_override=parse_ami_time(stamp) if stamp else None)
            if entry is not None:
                self.log(entry)
            return
        if name in _AMI_LOG_KINDS:
            self._log_ami(_AMI_LOG_KINDS[name], msg)
        if name == "newchannel":
            chan = ChannelState(uniqueid=uid, linkedid=msg.get_first("Linkedid") or uid,
                                name=msg.get_first("Channel") or "", state=msg.get_first("ChannelStateDesc") or "",
                                caller_number=msg.get_first("CallerIDNum") or "",
                                connected_number=msg.get_first("ConnectedLineNum") or "",
                                context=msg.get_first("Context") or "", exten=msg.get_first("Exten") or "",
                                created_at=parse_ami_time(msg.get_first("Timestamp")))
            self.channels[uid] = chan
            self._channel_changed(chan, "new")
        elif name == "newstate":
            chan = self._touch_channel(msg)
            if chan is not None:
                chan.state = msg.get_first("ChannelStateDesc") or chan.state
                if chan.state == "Up" and chan.answered_at is None:
                    chan.answered_at = parse_ami_time(msg.get_first("Timestamp"))
                    self._channel_changed(chan, "answered")
                else:
                    self._channel_changed(chan, "state")
        elif name in ("newcallerid", "newconnectedline", "newexten", "varset", "rename"):
            chan = self._touch_channel(msg)
            if chan is not None and name == "rename":
                chan.name = msg.get_first("Newname") or chan.name
        elif name == "hangup":
            chan = self.channels.pop(uid, None)
            if chan is not None:
                chan.hungup_at = parse_ami_time(msg.get_first("Timestamp"))
                if chan.bridge_id and chan.bridge_id in self.bridges:
                    self.bridges[chan.bridge_id].channels.discard(uid)
                self._remember_gone(chan)
                self._channel_changed(chan, "hangup", cause=msg.get_first("Cause-txt"))
        elif name == "bridgecreate":
            bid = msg.get_first("BridgeUniqueid") or ""
            self.bridges.setdefault(bid, BridgeState(bid, msg.get_first("BridgeType") or "",
                                                     msg.get_first("BridgeTechnology") or ""))
        elif name == "bridgedestroy":
            self.bridges.pop(msg.get_first("BridgeUniqueid") or "", None)
        elif name == "bridgeenter":
            bid = msg.get_first("BridgeUniqueid") or ""
            bridge = self.bridges.setdefault(bid, BridgeState(bid, msg.get_first("BridgeType") or "",
                                                              msg.get_first("BridgeTechnology") or ""))
            bridge.technology = msg.get_first("BridgeTechnology") or bridge.technology
            bridge.channels.add(uid)
            chan = self._touch_channel(msg)
            if chan is not None:
                chan.bridge_id = bid
                self._channel_changed(chan, "bridged")
        elif name == "bridgeleave":
            bid = msg.get_first("BridgeUniqueid") or ""
            if bid in self.bridges:
                self.bridges[bid].channels.discard(uid)
            chan = self.channels.get(uid)
            if chan is not None and chan.bridge_id == bid:
                chan.bridge_id = None
                self._channel_changed(chan, "unbridged")
        elif name in ("hold", "unhold"):
            chan = self._touch_channel(msg)
            if chan is not None:
                chan.on_hold = name == "hold"
                self._channel_changed(chan, name)
        elif name == "queuecallerjoin" and msg.get_first("Queue") == self.queue_name:
            self.queue.callers[uid] = QueueCaller(
                uniqueid=uid, linkedid=msg.get_first("Linkedid") or uid, channel=msg.get_first("Channel") or "",
                caller_number=msg.get_first("CallerIDNum") or "",
                joined_at=parse_ami_time(msg.get_first("Timestamp")).timestamp(),
                position=int(msg.get_first("Position") or 0))
            self._publish_queue()
        elif name in ("queuecallerleave", "queuecallerabandon") and msg.get_first("Queue") == self.queue_name:
            if self.queue.callers.pop(uid, None) is not None:
                self._publish_queue()
        elif name in ("queuememberadded", "queuememberstatus", "queuememberpause", "queuememberpenalty",
                      "queuememberringinuse") and msg.get_first("Queue") == self.queue_name:
            member = _member_from(msg, self.queue.members.get(msg.get_first("Interface") or ""))
            self.queue.members[member.interface] = member
            self._publish_queue()
            if member.extension:
                self.broker.publish(f"operator:{member.extension}", {"type": "member", "member": member.public()})
        elif name == "queuememberremoved" and msg.get_first("Queue") == self.queue_name:
            member = self.queue.members.pop(msg.get_first("Interface") or "", None)
            self._publish_queue()
            if member is not None and member.extension:
                self.broker.publish(f"operator:{member.extension}",
                                    {"type": "member", "member": None, "logged_out": member.extension})
        elif name in ("agentcalled", "agentringnoanswer", "agentconnect", "agentcomplete") \
                and msg.get_first("Queue") == self.queue_name:
            ext = operator_of_interface(msg.get_first("Interface"))
            if ext:
                self.broker.publish(f"operator:{ext}", {
                    "type": "queue_call", "event": name.removeprefix("agent"),
                    "caller_uniqueid": uid, "linkedid": msg.get_first("Linkedid") or uid,
                    "operator_uniqueid": msg.get_first("DestUniqueid"),
                    "caller_number": msg.get_first("CallerIDNum") or "",
                    "holdtime": _seconds(msg.get_first("HoldTime")),
                    "talktime": _seconds(msg.get_first("TalkTime")),
                })
        elif name == "fullybooted":
            pass

    def _touch_channel(self, msg: Message) -> ChannelState | None:
        uid = msg.get_first("Uniqueid") or ""
        chan = self.channels.get(uid)
        if chan is None and uid and msg.get_first("Channel"):
            # an event for a channel we never saw (started while the link was down): learn it
            chan = ChannelState(uniqueid=uid, linkedid=msg.get_first("Linkedid") or uid,
                                name=msg.get_first("Channel") or "")
            self.channels[uid] = chan
        if chan is not None:
            chan.caller_number = msg.get_first("CallerIDNum") or chan.caller_number
            chan.connected_number = msg.get_first("ConnectedLineNum") or chan.connected_number
            chan.state = msg.get_first("ChannelStateDesc") or chan.state
        return chan

    def _channel_changed(self, chan: ChannelState, event: str, **extra: Any) -> None:
        payload = {"type": "call", "event": event, "channel": chan.public(), **extra}
        self.broker.publish("calls", payload)
        ext = chan.operator
        if ext:
            self.broker.publish(f"operator:{ext}", payload)

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
                data["holdtime"] = _seconds(msg.get_first("HoldTime"))
            if kind == "operator_completed":
                data["talktime"] = _seconds(msg.get_first("TalkTime"))
                data["reason"] = msg.get_first("Reason") or ""
        elif kind in ("conference_join", "conference_leave"):
            data["conference"] = msg.get_first("Conference") or ""
            data["operator"] = operator_of_channel(data["channel"])
        else:
            data["operator"] = operator_of_channel(data["channel"])
        stamp = msg.get_first("Timestamp") or f"{at.timestamp():.6f}"
        self.log(LogEntry(linkedid=linkedid, uniqueid=uid, kind=kind, at=at, dedup_key=f"ami:{kind}:{uid}:{stamp}",
                          data=data, create_call=create))


def _member_from(msg: Message, old: QueueMember | None = None) -> QueueMember:
    interface = msg.get_first("Interface") or msg.get_first("StateInterface") or msg.get_first("Location") or ""
    member = old or QueueMember(interface=interface)
    member.interface = interface
    member.name = msg.get_first("MemberName") or msg.get_first("Name") or member.name
    if "Status" in msg:
        member.status = int(msg.get_first("Status") or 0)
    if "Paused" in msg:
        member.paused = (msg.get_first("Paused") or "0") == "1"
    if "PausedReason" in msg:
        member.paused_reason = msg.get_first("PausedReason") or ""
    elif "Reason" in msg and (msg.name or "").lower() == "queuememberpause":
        member.paused_reason = msg.get_first("Reason") or ""
    if "InCall" in msg:
        member.in_call = (msg.get_first("InCall") or "0") == "1"
    if "CallsTaken" in msg:
        member.calls_taken = int(msg.get_first("CallsTaken") or 0)
    if not member.paused:
        member.paused_reason = ""
    return member


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


def _seconds(value: str | None) -> float:
    try:
        return float(value or 0)
    except ValueError:
        return 0.0


def _log_task_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("call-control event handler failed", exc_info=task.exception())


__all__ = [
    "QUEUE", "Broker", "BridgeState", "CallControlError", "CallLink", "ChannelGone", "ChannelState", "Feed",
    "LinkDown", "LinkStats", "NotYourCall", "QueueCaller", "QueueMember", "QueueState", "UnknownChannel",
]
