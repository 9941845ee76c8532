"""The AMI link service: one long-lived AMI connection, and on it the live channel state
(callcontrol.state), the call log (callcontrol.calllog) and the screens' feeds (callcontrol.broker).
This module keeps the link itself: login and resync, the order in which each event reaches them,
and the guards the API uses before an action on a call.

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
- The call log (A2) is written idempotently (see callcontrol.calllog).
- Actions are never replayed: the AMI client refuses them while the link is down (``LinkDown``
  here, HTTP 503 in the API) and never re-sends one after a reconnect.
- Phone numbers in logs are masked.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from callcenter.ami.client import AMIClient
from callcenter.ami.errors import AMIError
from callcenter.ami.protocol import Message
from callcenter.errors import FORBIDDEN, GONE, NOT_FOUND, REFUSED, UNAVAILABLE, AppError
from callcenter.callcontrol.broker import Broker, Feed
from callcenter.callcontrol.calllog import CallLog, LogStats, app_entry
from callcenter.callcontrol.cel import CelSource, LogEntry
from callcenter.callcontrol.state import QUEUE, BridgeState, ChannelState, LiveState, QueueState

log = logging.getLogger("callcenter.callcontrol")

# -------------------------------------------------------------------------------------------
# the application's own failures (callcenter.errors): the API answers them by kind


class CallControlError(AppError):
    kind = REFUSED


class LinkDown(CallControlError):
    kind = UNAVAILABLE

    def __init__(self, message: str = "the telephone system (Asterisk AMI link) is not connected; try again shortly"):
        super().__init__("telephony_unavailable", message)


class UnknownChannel(CallControlError):
    kind = NOT_FOUND

    def __init__(self, ident: str):
        super().__init__("unknown_channel", f"no call leg {ident!r} is known to the telephone system")


class ChannelGone(CallControlError):
    kind = GONE

    def __init__(self, ident: str):
        super().__init__("call_ended", f"call leg {ident!r} has already hung up")


class NotYourCall(CallControlError):
    kind = FORBIDDEN

    def __init__(self, ident: str, extension: str | None):
        who = f"operator {extension}" if extension else "you (no operator extension on your account)"
        super().__init__("not_your_call", f"call leg {ident!r} is not a call of {who}")


# -------------------------------------------------------------------------------------------
# the service

EventHandler = Callable[[Message], Any]
ResyncHandler = Callable[["CallLink", bool], Any]


@dataclass
class LinkStats(LogStats):
    resyncs: int = 0
    resync_failures: int = 0
    last_resync_at: float | None = None
    down_since: float | None = None  # epoch seconds, None while up


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
        self.live = LiveState(queue, self.broker.publish, self._publish_queue)
        self.calllog = CallLog(session_factory, queue, self.stats)
        self._handlers: list[EventHandler] = []
        self._resync_handlers: list[ResyncHandler] = []
        self._waiters: list[tuple[Callable[[Message], bool], asyncio.Future[Message]]] = []
        self._subscription = None
        self._resync_lock = asyncio.Lock()
        self._resynced = asyncio.Event()
        self._operator_users = operator_users
        self.cel_maintenance_seconds = cel_maintenance_seconds
        self._cel_task: asyncio.Task[None] | None = None
        ami.on_connected(self._on_connected)

    # the live state, as other call-control parts and the API read it
    @property
    def channels(self) -> dict[str, ChannelState]:
        return self.live.channels

    @property
    def bridges(self) -> dict[str, BridgeState]:
        return self.live.bridges

    @property
    def queue(self) -> QueueState:
        return self.live.queue

    @property
    def gone(self) -> OrderedDict[str, ChannelState]:
        """Recently hung-up legs, so the API can tell "hung up" (410) from "never existed" (404)."""
        return self.live.gone

    # -- lifecycle --------------------------------------------------------------------------
    async def start(self, *, wait: bool = True) -> None:
        """Start the link (``wait``: until the first login and resync are done; raises AMI errors)."""
        self.calllog.start()
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
        await self.calllog.stop()
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
        self.calllog.add(entry)

    async def log_event(self, *, linkedid: str, uniqueid: str, kind: str, data: dict[str, Any] | None = None,
                        at: datetime | None = None, dedup_key: str | None = None) -> None:
        """For other call-control parts (transfer, conference, recording): add an entry to the call
        log of the call ``linkedid``. ``dedup_key`` makes a retried write harmless; by default it is
        built from kind, uniqueid and time."""
        self.calllog.add(app_entry(linkedid=linkedid, uniqueid=uniqueid, kind=kind, data=data, at=at,
                                   dedup_key=dedup_key))

    async def flush_log(self, timeout: float = 10.0) -> bool:
        """Wait until every queued call-log entry is written (tests, shutdown)."""
        return await self.calllog.flush(timeout)

    async def reconcile(self, since: float | None = None) -> int:
        """Add to the call log what Asterisk's CEL file has and the log lacks (returns how many)."""
        if self.cel_source is None:
            return 0
        return await self.calllog.reconcile(self.cel_source, since)

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
        if self.cel_source is not None and self.calllog.enabled:
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

    async def resync(self) -> None:
        """Read channels, bridges and queue state again (after every login)."""
        async with self._resync_lock:
            _, chans = await self.ami.send_action_list({"Action": "CoreShowChannels"}, timeout=15)
            _, bridges = await self.ami.send_action_list({"Action": "BridgeList"}, timeout=15)
            _, qitems = await self.ami.send_action_list({"Action": "QueueStatus", "Queue": self.queue_name}, timeout=15)
            now = time.time()
            vanished = self.live.rebuild(chans, bridges, qitems, now)
            self.calllog.queue_seen(self.queue.callers.values())
            self.stats.resyncs += 1
            self.stats.last_resync_at = now
            log.info("resynced: %d channels, %d bridges, %d queue members, %d callers waiting",
                     len(self.channels), len(self.bridges), len(self.queue.members), len(self.queue.callers))
            self._publish_queue()
            self.broker.publish("link", {"type": "resync", "channels": len(self.channels),
                                         "vanished": len(vanished)})

    def _publish_queue(self) -> None:
        self.broker.publish("queue", {"type": "queue", "state": self.queue_snapshot()})

    # -- live events ----------------------------------------------------------------------------
    def _on_event(self, msg: Message) -> None:
        name = (msg.name or "").lower()
        try:
            # one guard for both: a bad event must not keep it from the waiters and handlers below
            self.calllog.on_event(name, msg)
            self.live.apply(name, msg)
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


def _log_task_failure(task: asyncio.Future[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("call-control event handler failed", exc_info=task.exception())


__all__ = [
    "CallControlError", "CallLink", "ChannelGone", "LinkDown", "LinkStats", "NotYourCall", "UnknownChannel",
]
