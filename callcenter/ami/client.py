"""Our asyncio AMI client: one TCP link to Asterisk's manager interface, kept up in the background.

Rules this client keeps (see docs/ami.md for why we do not use panoramisk):

- An action is written at most once. Nothing is queued while the link is down: ``send_action`` then
  raises ``AMINotConnected`` at once, and the action is gone for good (the caller decides).
- An action written on a link that drops before its answer fails with ``AMILinkLost``; one without an
  answer in time fails with ``AMITimeout``. In both cases it MAY have run in Asterisk. Callers must
  reconcile (``originate`` always sets a ChannelId for that) instead of retrying blindly: a blind
  retry of an Originate dials a citizen twice.
- Keep-alive: a Ping every ``ping_interval``; no Pong within ``ping_timeout`` or EOF -> drop the link,
  reconnect with exponential backoff, log in again, then run every ``on_connected(client, first)``
  callback (the place to resync channels, bridges and queue state: events were missed meanwhile).
- Events go to every matching subscriber; an exception in one subscriber is logged and affects
  nothing else. Sync callbacks run inline (keep them short); async callbacks run in order in one
  task per subscription so a slow one cannot stall the link (and its Pongs).
- Never logged: the secret. Phone numbers in logged values are masked (``138****5678``).
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import inspect
import itertools
import logging
import secrets as _secrets
from collections.abc import Callable, Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from callcenter.ami.errors import (
    ActionEncodingError,
    AMIAuthError,
    AMIConnectError,
    AMIError,
    AMILinkLost,
    AMINotConnected,
    AMIProtocolError,
    AMITimeout,
)
from callcenter.ami.protocol import Message, Parser, action_name_of, encode_action, redacted

log = logging.getLogger("callcenter.ami")

EventCallback = Callable[[Message], Any]
ConnectedCallback = Callable[["AMIClient", bool], Any]

# An async subscriber this far behind is reported once (until it catches up).
_BACKLOG_WARNING = 10_000


@dataclass
class AMIStats:
    """Counters for monitoring and benchmarks."""

    events_received: int = 0
    responses_received: int = 0
    actions_sent: int = 0
    connects: int = 0  # successful logins, first one included
    reconnects: int = 0  # successful logins after the first
    connect_failures: int = 0
    link_losses: int = 0
    ping_timeouts: int = 0
    events_dropped: int = 0  # by full bounded ``events()`` streams
    callback_errors: int = 0


class _Pending:
    """One written action waiting for its answer; lives and dies with the link it was written on."""

    __slots__ = ("kind", "action_id", "_action", "_shown", "future", "response", "items", "complete")

    def __init__(self, kind: str, action_id: str, action: dict[str, Any]) -> None:
        self.kind = kind  # "single" | "list" | "originate"
        self.action_id = action_id
        self._action = action  # as written (secrets included): never shown, see ``action``
        self._shown: dict[str, Any] | None = None
        self.future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.response: Message | None = None
        self.items: list[Message] = []
        self.complete = False

    @property
    def action(self) -> dict[str, Any]:
        """The redacted copy, for errors: made only when one needs it (most actions just succeed,
        and masking every Originate's values cost the callback runner ~15 us per call)."""
        if self._shown is None:
            self._shown = redacted(self._action)
        return self._shown

    def feed(self, msg: Message) -> None:
        if self.future.done():
            return
        if self.kind == "single":
            if msg.is_response:
                self.future.set_result(msg)
        elif self.kind == "list":
            if msg.is_response:
                if self.response is None:
                    self.response = msg
                    if not _starts_list(msg):
                        self.future.set_result((msg, []))
                        return
            elif msg.is_event:
                if _ends_list(msg):
                    self.complete = True
                else:
                    self.items.append(msg)
            if self.complete and self.response is not None:
                self.future.set_result((self.response, self.items))
        elif self.kind == "originate":
            if msg.is_response:
                self.response = msg
                if not msg.success:  # Error: no OriginateResponse event will follow
                    self.future.set_result(msg)
            elif (msg.name or "").lower() == "originateresponse":
                # May even come before the "successfully queued" ack: the dial runs in its own thread.
                self.future.set_result(msg)

    def fail(self, exc: BaseException) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


def _starts_list(msg: Message) -> bool:
    if not msg.success:
        return False
    if msg.event_list == "start":
        return True
    return "will follow" in (msg.get_first("Message") or "").lower()


def _ends_list(msg: Message) -> bool:
    marker = msg.event_list
    if marker is not None:
        return marker == "complete"
    return (msg.name or "").lower().endswith("complete")


class _Link:
    """One TCP connection. Actions pending on it fail with AMILinkLost when it closes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, label: str) -> None:
        self.reader = reader
        self.writer = writer
        self.label = label
        self.parser = Parser()
        self.pending: dict[str, _Pending] = {}
        self.closed = False
        self.close_reason = ""
        self.greeted = asyncio.Event()  # banner seen
        self.booted = asyncio.Event()  # FullyBooted event seen
        self.done = asyncio.get_running_loop().create_future()
        self.reader_task: asyncio.Task[None] | None = None

    def close(self, reason: str, *, graceful: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.close_reason = reason
        pending, self.pending = self.pending, {}
        for item in pending.values():
            item.fail(
                AMILinkLost(
                    f"AMI link to {self.label} lost ({reason}) before the answer to "
                    f"{item.action.get('Action')!r} (ActionID {item.action_id}); it may or may not have run",
                    action=item.action,
                    action_id=item.action_id,
                )
            )
        # Wake whoever waits for the banner or FullyBooted: they check ``closed`` next.
        self.greeted.set()
        self.booted.set()
        with contextlib.suppress(Exception):
            if graceful:
                self.writer.close()
            else:
                # A dead link must not flush stale bytes later: drop it now.
                self.writer.transport.abort()
        if not self.done.done():
            self.done.set_result(reason)


class Subscription:
    """Handle returned by ``AMIClient.subscribe``; ``close()`` stops delivery."""

    def __init__(self, client: AMIClient, callback: EventCallback, event_names: Iterable[str] | None) -> None:
        self._client = client
        self.callback = callback
        self.event_names = frozenset(n.lower() for n in event_names) if event_names is not None else None
        self.is_async = inspect.iscoroutinefunction(callback) or inspect.iscoroutinefunction(
            getattr(callback, "__call__", None)
        )
        self._queue: collections.deque[Message] = collections.deque()
        self._ready = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self._backlog_warned = False
        self.closed = False

    def matches(self, msg: Message) -> bool:
        return self.event_names is None or (msg.name or "").lower() in self.event_names

    def deliver(self, msg: Message) -> None:
        if self.closed or not self.matches(msg):
            return
        if not self.is_async:
            try:
                result = self.callback(msg)
            except Exception:
                self._client.stats.callback_errors += 1
                log.exception("AMI event subscriber %s failed on %s", _cb_name(self.callback), msg.name)
                return
            if result is not None and inspect.isawaitable(result):  # a plain function returning a coroutine
                task = asyncio.ensure_future(result)
                task.add_done_callback(self._log_task_error)
            return
        self._queue.append(msg)
        self._ready.set()
        if len(self._queue) > _BACKLOG_WARNING and not self._backlog_warned:
            self._backlog_warned = True
            log.warning("AMI event subscriber %s is %d events behind", _cb_name(self.callback), len(self._queue))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    def _log_task_error(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._client.stats.callback_errors += 1
            log.error(
                "AMI event subscriber %s failed", _cb_name(self.callback), exc_info=task.exception()
            )

    async def _work(self) -> None:
        while not self.closed:
            if not self._queue:
                self._ready.clear()
                self._backlog_warned = False
                await self._ready.wait()
                continue
            msg = self._queue.popleft()
            try:
                await self.callback(msg)
            except Exception:
                self._client.stats.callback_errors += 1
                log.exception("AMI event subscriber %s failed on %s", _cb_name(self.callback), msg.name)

    def _stop_worker(self) -> asyncio.Task[None] | None:
        worker, self._worker = self._worker, None
        if worker is not None and not worker.done():
            worker.cancel()
            return worker
        return None

    def close(self) -> None:
        self.closed = True
        self._client._remove_subscription(self)
        self._stop_worker()


class EventStream:
    """Async iterator over events with a bounded buffer (``AMIClient.events()``).

    Subscribed from creation, so nothing is lost between ``events()`` and the first ``anext``. When
    the buffer is full the OLDEST event is dropped (counted in ``dropped`` and the client's stats):
    a reader that fell behind sees the current state rather than stale history.
    Ends when closed or when the client stops.
    """

    def __init__(self, client: AMIClient, event_names: Iterable[str] | None, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self._client = client
        self._buffer: collections.deque[Message] = collections.deque()
        self._maxsize = maxsize
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0
        self._sub = client.subscribe(self._put, event_names)

    def _put(self, msg: Message) -> None:
        if len(self._buffer) >= self._maxsize:
            self._buffer.popleft()
            self.dropped += 1
            self._client.stats.events_dropped += 1
        self._buffer.append(msg)
        self._ready.set()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Message:
        while not self._buffer:
            if self._closed:
                raise StopAsyncIteration
            self._ready.clear()
            await self._ready.wait()
        return self._buffer.popleft()

    async def get(self, timeout: float | None = None) -> Message:
        """Next event, or TimeoutError. Raises StopAsyncIteration when the stream has ended."""
        return await asyncio.wait_for(self.__anext__(), timeout)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._sub.close()
            self._client._streams.discard(self)
            self._ready.set()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> EventStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


def _cb_name(cb: Callable[..., Any]) -> str:
    return getattr(cb, "__qualname__", None) or repr(cb)


class AMIClient:
    """Asyncio AMI client. Typical use::

        client = AMIClient.from_settings()
        client.on_connected(resync)             # async def resync(client, first): ...
        client.subscribe(on_event, ["Newchannel", "Hangup"])
        await client.start()                    # raises AMIAuthError / AMIConnectError at once
        reply = await client.send_action({"Action": "Ping"})
        ...
        await client.stop()
    """

    def __init__(
        self,
        host: str,
        port: int,
        username: str,
        secret: str,
        *,
        ping_interval: float = 5.0,
        ping_timeout: float | None = None,
        connect_timeout: float = 3.0,
        action_timeout: float = 10.0,
        reconnect_backoff: tuple[float, float] = (0.2, 5.0),
        events: str = "on",
        boot_timeout: float = 5.0,
    ) -> None:
        """``reconnect_backoff=(first, max)``: the delay doubles from ``first`` up to ``max`` seconds
        and is back to ``first`` after a successful login. ``ping_timeout`` defaults to
        ``ping_interval``. ``events`` is the Login ``Events:`` filter (``on``, ``off``, ``call,system``).
        ``boot_timeout``: how long to wait after Login for Asterisk's FullyBooted event before declaring
        the link up anyway (right after a restart Asterisk accepts logins before it is fully booted).
        """
        initial, maximum = reconnect_backoff
        if initial <= 0 or maximum < initial:
            raise ValueError("reconnect_backoff must be (first > 0, max >= first)")
        self.host = host
        self.port = int(port)
        self.username = username
        self._secret = secret
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout if ping_timeout is not None else ping_interval
        self.connect_timeout = connect_timeout
        self.action_timeout = action_timeout
        self.reconnect_backoff = (float(initial), float(maximum))
        self.events_filter = events
        self.boot_timeout = boot_timeout
        self.stats = AMIStats()
        self.banner: str | None = None  # "Asterisk Call Manager/x.y.z" of the current/last link

        # Random per client: ActionIDs and ChannelIds never collide with an earlier process's.
        # Letters only, so no id ever looks like a phone number to the log masking.
        self._id_prefix = "cc" + "".join(_secrets.choice("abcdefghjkmnpqrstuvwxyz") for _ in range(8))
        self._ids = itertools.count(1)
        self._link: _Link | None = None
        self._connected = False
        self._connected_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._ever_connected = False
        self._runner: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._callbacks_task: asyncio.Task[None] | None = None
        self._subscriptions: list[Subscription] = []
        self._streams: set[EventStream] = set()
        self._on_connected: list[ConnectedCallback] = []
        self._last_failure: tuple[type, str] | None = None
        self._failures_in_row = 0

    @classmethod
    def from_settings(cls, settings: Any = None, **kwargs: Any) -> AMIClient:
        """Client for the install's Asterisk (``CALLCENTER_AMI_*`` settings / var/secrets.env)."""
        if settings is None:
            from callcenter.settings import get_settings

            settings = get_settings()
        return cls(settings.ami_host, settings.ami_port, settings.ami_username, settings.ami_secret, **kwargs)

    def __repr__(self) -> str:  # no secret here, ever
        state = "connected" if self._connected else "down"
        return f"<AMIClient {self.username}@{self.host}:{self.port} {state}>"

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    # -- lifecycle ------------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        return self._connected

    async def start(self, *, wait: bool = True) -> None:
        """Connect and log in, then keep the link up in a background task.

        ``wait=True``: return once logged in and the first ``on_connected`` callbacks have run; if the
        first attempt fails, raise ``AMIAuthError``/``AMIConnectError``/``AMIProtocolError`` and keep
        nothing running. ``wait=False``: return at once and keep trying in the background with
        backoff (use ``wait_connected``), e.g. for a service started before Asterisk.
        """
        if self._runner is not None and not self._runner.done():
            raise RuntimeError("AMIClient already started")
        self._stopping = False
        self._wake = asyncio.Event()
        first_attempt: asyncio.Future[None] | None = None
        if wait:
            first_attempt = asyncio.get_running_loop().create_future()
        self._runner = asyncio.get_running_loop().create_task(self._run(first_attempt))
        if first_attempt is not None:
            try:
                await first_attempt
            except BaseException:
                await self.stop()
                raise

    async def stop(self) -> None:
        """Log off and close the link; end the background task and every ``events()`` stream."""
        self._stopping = True
        self._wake.set()
        link = self._link
        if link is not None and not link.closed and self._connected:
            with contextlib.suppress(AMIError, ConnectionError, OSError):
                pending = self._submit(link, {"Action": "Logoff"}, "single")
                await self._wait(link, pending, 1.0)
        if link is not None:
            link.close("client stopped", graceful=True)
        self._set_down()
        tasks = [self._runner, self._keepalive_task, self._callbacks_task]
        if link is not None:
            tasks.append(link.reader_task)
        tasks.extend(sub._stop_worker() for sub in list(self._subscriptions))
        current = asyncio.current_task()
        for task in tasks:
            if task is not None and task is not current and not task.done():
                task.cancel()
        for task in tasks:
            if task is not None and task is not current:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._runner = None
        for stream in list(self._streams):
            stream.close()

    async def wait_connected(self, timeout: float | None = None) -> bool:
        """True once logged in (now or within ``timeout`` seconds), else False."""
        if self._connected:
            return True
        try:
            await asyncio.wait_for(self._connected_event.wait(), timeout)
        except TimeoutError:
            return False
        return self._connected

    def on_connected(self, callback: ConnectedCallback) -> ConnectedCallback:
        """Register ``callback(client, first: bool)`` (sync or async), run after every login.

        ``first`` is True only for the first login of this client. Events were missed while the link
        was down, so this is where state (channels, bridges, queues) must be read again. Callbacks run
        one after another; an exception is logged and does not affect the link. Usable as decorator.
        """
        self._on_connected.append(callback)
        return callback

    # -- events ---------------------------------------------------------------------------------
    def subscribe(self, callback: EventCallback, event_names: Iterable[str] | None = None) -> Subscription:
        """Call ``callback(event)`` for every event (or those named, case-insensitive).

        Events that answer one of our actions (list items, OriginateResponse) are delivered too.
        """
        if isinstance(event_names, str):
            event_names = [event_names]
        sub = Subscription(self, callback, event_names)
        self._subscriptions.append(sub)
        return sub

    def unsubscribe(self, subscription: Subscription) -> None:
        subscription.close()

    def _remove_subscription(self, sub: Subscription) -> None:
        with contextlib.suppress(ValueError):
            self._subscriptions.remove(sub)

    def events(self, event_names: Iterable[str] | None = None, *, maxsize: int = 1000) -> EventStream:
        """Bounded async iterator of events: ``async with client.events(["Hangup"]) as s: async for e in s``."""
        if isinstance(event_names, str):
            event_names = [event_names]
        stream = EventStream(self, event_names, maxsize)
        self._streams.add(stream)
        return stream

    # -- actions --------------------------------------------------------------------------------
    async def send_action(self, action: Mapping[str, Any], timeout: float | None = None) -> Message:
        """Send one action and return its Response (``Success``/``Error``/...; check ``.success``).

        ActionID is assigned here (passing one is an error). Raises ``AMINotConnected`` at once when the
        link is down (nothing sent, nothing queued), ``AMILinkLost``/``AMITimeout`` when the outcome is
        unknown, ``ActionEncodingError`` for values with CR/LF.
        """
        link = self._link if self._connected else None
        pending = self._submit(link, action, "single")
        return await self._wait(link, pending, self.action_timeout if timeout is None else timeout)

    async def send_action_list(
        self, action: Mapping[str, Any], timeout: float | None = None
    ) -> tuple[Message, list[Message]]:
        """For actions answered by an event list (CoreShowChannels, QueueStatus, BridgeList, Status...).

        Returns ``(response, items)``: the items are the events carrying our ActionID, without the
        closing ``...Complete`` event. An ``Error`` response returns ``(response, [])``. ``timeout``
        covers the whole list.
        """
        link = self._link if self._connected else None
        pending = self._submit(link, action, "list")
        return await self._wait(link, pending, self.action_timeout if timeout is None else timeout)

    async def command(self, command: str, timeout: float | None = None) -> list[str]:
        """Run a CLI command through the ``Command`` action; its output lines (Asterisk 22: ``Output:``)."""
        reply = await self.send_action({"Action": "Command", "Command": command}, timeout)
        if not reply.success:
            raise AMIError(f"AMI Command {command!r} failed: {reply.get_first('Message')}")
        lines = reply.get_all("Output")
        return lines if lines else list(reply.unparsed)

    async def originate(self, channel: str, **kwargs: Any) -> Message:
        """Originate a call; sent at most once, never queued, never retried (see ``send_originate``
        for the arguments and the answer)."""
        return await self.send_originate(channel, **kwargs)

    def send_originate(
        self,
        channel: str,
        *,
        context: str | None = None,
        exten: str | None = None,
        priority: int | str | None = None,
        application: str | None = None,
        data: str | None = None,
        caller_id: str | None = None,
        variables: Mapping[str, Any] | None = None,
        account: str | None = None,
        channel_id: str | None = None,
        other_channel_id: str | None = None,
        dial_timeout: float = 30.0,
        async_: bool = True,
        timeout: float | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> Coroutine[Any, Any, Message]:
        """Originate a call: written at once (before this returns), at most once, never queued,
        never retried; returns the coroutine that waits for its answer (await it: the answer is
        matched only while it waits). ``AMINotConnected`` and ``ActionEncodingError`` are raised
        here, before anything is written.

        Give either ``context``/``exten``/``priority`` or ``application``/``data``. ``channel_id`` sets
        the new channel's Uniqueid (Local ``;2`` leg gets ``channel_id;2``); when omitted one is made
        up, so the caller can always reconcile: it is in ``AMILinkLost.action["ChannelId"]``.

        ``async_=True`` (default): returns the ``OriginateResponse`` event matched by ActionID
        (``.response`` is ``Success`` once answered, ``Failure`` otherwise; ``Reason`` says why),
        or the ``Error`` response if Asterisk refused the action. ``async_=False``: returns the
        Response, which Asterisk sends only when the call is answered or failed.
        ``timeout`` defaults to ``dial_timeout + action_timeout``.
        """
        if (application is None) == (exten is None):
            raise ValueError("originate needs either exten (with context/priority) or application")
        action: dict[str, Any] = {"Action": "Originate", "Channel": channel}
        if exten is not None:
            action.update(Context=context, Exten=exten, Priority=1 if priority is None else priority)
        else:
            action.update(Application=application, Data=data)
        action.update(
            CallerID=caller_id,
            Account=account,
            ChannelId=channel_id or f"{self._id_prefix}-o{next(self._ids)}",
            OtherChannelId=other_channel_id,
            Timeout=int(dial_timeout * 1000),
            Async="true" if async_ else "false",
        )
        if variables:
            action["Variable"] = dict(variables)
        if extra:
            for key, value in extra.items():
                if key.lower() in {k.lower() for k in action}:
                    raise ValueError(f"originate: {key!r} is set by a named argument")
                action[key] = value
        link = self._link if self._connected else None
        pending = self._submit(link, action, "originate" if async_ else "single")
        wait = dial_timeout + self.action_timeout if timeout is None else timeout
        return self._wait(link, pending, wait)

    # -- internals: sending -----------------------------------------------------------------------
    def _submit(self, link: _Link | None, action: Mapping[str, Any], kind: str) -> _Pending:
        """Encode, check the link, register, write: no await in here, so the link cannot change
        between the check and the write, and an action is either written once or not at all."""
        name = action_name_of(action)
        if any(key.lower() == "actionid" for key in action):
            raise ActionEncodingError(f"AMI action {name!r}: ActionID is assigned by the client")
        action_id = f"{self._id_prefix}-{next(self._ids)}"
        full = dict(action)
        full["ActionID"] = action_id
        payload = encode_action(full)  # may raise before anything is sent
        if link is None or link.closed:
            raise AMINotConnected(
                f"AMI link to {self.label} is down; {name!r} was not sent (and will not be sent later)",
                action=redacted(full),
                action_id=action_id,
            )
        pending = _Pending(kind, action_id, full)
        link.pending[action_id] = pending
        link.writer.write(payload)
        self.stats.actions_sent += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("AMI -> %s", pending.action)
        return pending

    async def _wait(self, link: _Link | None, pending: _Pending, timeout: float) -> Any:
        assert link is not None
        try:
            async with asyncio.timeout(timeout):  # (no task per action, unlike wait_for on a coroutine)
                with contextlib.suppress(ConnectionError):
                    await link.writer.drain()  # a reset shows up as AMILinkLost from the reader
                return await pending.future
        except TimeoutError:
            if pending.future.done() and not pending.future.cancelled():
                return pending.future.result()
            raise AMITimeout(
                f"no AMI answer to {pending.action.get('Action')!r} (ActionID {pending.action_id}) within "
                f"{timeout:.1f}s; it may or may not have run",
                action=pending.action,
                action_id=pending.action_id,
            ) from None
        finally:
            link.pending.pop(pending.action_id, None)

    # -- internals: the link ----------------------------------------------------------------------
    async def _run(self, first_attempt: asyncio.Future[None] | None) -> None:
        delay = self.reconnect_backoff[0]
        while not self._stopping:
            try:
                link = await self._open()
            except (AMIAuthError, AMIConnectError, AMIProtocolError) as exc:
                self.stats.connect_failures += 1
                self._note_failure(exc)
                if first_attempt is not None and not first_attempt.done():
                    first_attempt.set_exception(exc)
                    return
                await self._pause(delay)
                delay = min(delay * 2, self.reconnect_backoff[1])
                continue
            if self._stopping:
                link.close("client stopped", graceful=True)
                return
            delay = self.reconnect_backoff[0]
            first = not self._ever_connected
            self._ever_connected = True
            self._link = link
            self._connected = True
            self._connected_event.set()
            self.stats.connects += 1
            if not first:
                self.stats.reconnects += 1
            if self._failures_in_row:
                log.info(
                    "AMI connected to %s as %s after %d failed attempt(s)",
                    self.label, self.username, self._failures_in_row,
                )
            else:
                log.info("AMI connected to %s as %s (%s)", self.label, self.username, self.banner)
            self._last_failure = None
            self._failures_in_row = 0
            self._keepalive_task = asyncio.get_running_loop().create_task(self._keepalive(link))
            if self._callbacks_task is not None and not self._callbacks_task.done():
                # A resync for a link that already died is moot; do not let two run at once.
                self._callbacks_task.cancel()
            self._callbacks_task = asyncio.get_running_loop().create_task(
                self._run_on_connected(first, first_attempt)
            )
            first_attempt = None
            reason = await link.done
            self._set_down()
            if self._keepalive_task is not None:
                self._keepalive_task.cancel()
            if self._stopping:
                return
            self.stats.link_losses += 1
            log.warning("AMI link to %s lost (%s); reconnecting", self.label, reason)
            await self._pause(delay)
            delay = min(delay * 2, self.reconnect_backoff[1])

    def _set_down(self) -> None:
        self._connected = False
        self._connected_event.clear()
        self._link = None

    async def _pause(self, delay: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), delay)

    def _note_failure(self, exc: AMIError) -> None:
        """Log a connect/login failure once per kind of failure, not once per attempt."""
        self._failures_in_row += 1
        key = (type(exc), str(exc))
        if key != self._last_failure:
            self._last_failure = key
            log.error("%s (retrying with backoff up to %.1fs; logged again only if it changes)",
                      exc, self.reconnect_backoff[1])
        else:
            log.debug("AMI attempt %d failed again: %s", self._failures_in_row, exc)

    async def _open(self) -> _Link:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            raise AMIConnectError(f"cannot connect to AMI at {self.label}: {detail}") from None
        link = _Link(reader, writer, self.label)
        link.reader_task = asyncio.get_running_loop().create_task(self._read_loop(link))
        try:
            try:
                await asyncio.wait_for(link.greeted.wait(), self.connect_timeout)
            except TimeoutError:
                raise AMIConnectError(f"no AMI banner from {self.label} within {self.connect_timeout}s") from None
            if link.parser.banner is None:
                if link.parser.banner_checked:
                    raise AMIProtocolError(
                        f"{self.label} is not an AMI server (no 'Asterisk Call Manager/' banner)"
                    )
                raise AMIConnectError(
                    f"AMI at {self.label} closed the connection before its banner ({link.close_reason})"
                )
            self.banner = link.parser.banner
            try:
                pending = self._submit(
                    link,
                    {"Action": "Login", "Username": self.username, "Secret": self._secret,
                     "Events": self.events_filter},
                    "single",
                )
                # Asterisk waits 1 s before refusing a bad login; the generic action timeout covers it.
                reply = await self._wait(link, pending, self.action_timeout)
            except (AMILinkLost, AMINotConnected) as exc:
                raise AMIConnectError(f"AMI at {self.label} closed the connection during Login") from exc
            except AMITimeout:
                raise AMIConnectError(f"no answer to AMI Login from {self.label} within {self.action_timeout}s") from None
            if not reply.success:
                raise AMIAuthError(
                    f"AMI login as {self.username!r} refused by {self.label}: "
                    f"{reply.get_first('Message') or reply.response} "
                    "(check CALLCENTER_AMI_USERNAME/CALLCENTER_AMI_SECRET and manager.conf)"
                )
            # FullyBooted is a "system" event: not sent to a session logged in with Events: off.
            if not link.booted.is_set() and self.events_filter.lower() != "off":
                try:
                    await asyncio.wait_for(link.booted.wait(), self.boot_timeout)
                except TimeoutError:
                    if link.closed:
                        raise AMIConnectError(f"AMI at {self.label} closed the connection after Login") from None
                    log.warning("AMI %s: no FullyBooted event within %.1fs after Login; going on",
                                self.label, self.boot_timeout)
            if link.closed:
                raise AMIConnectError(f"AMI link to {self.label} dropped during Login ({link.close_reason})")
        except BaseException:
            link.close("login did not complete")
            raise
        return link

    async def _read_loop(self, link: _Link) -> None:
        reason = "EOF from Asterisk"
        try:
            while True:
                data = await link.reader.read(65536)
                if not data:
                    break
                for msg in link.parser.feed(data):
                    self._dispatch(link, msg)
                if not link.greeted.is_set() and link.parser.banner_checked:
                    link.greeted.set()
        except (ConnectionError, OSError) as exc:
            reason = f"connection error: {exc or type(exc).__name__}"
        except AMIProtocolError as exc:
            reason = str(exc)
        except asyncio.CancelledError:
            reason = "closed"
            raise
        except Exception as exc:  # a bug here must not leave a half-dead link behind
            log.exception("AMI reader for %s failed", self.label)
            reason = f"reader failed: {exc!r}"
        finally:
            link.close(reason)

    def _dispatch(self, link: _Link, msg: Message) -> None:
        action_id = msg.action_id
        if msg.is_event:
            self.stats.events_received += 1
            if msg.name == "FullyBooted":
                link.booted.set()
            if action_id is not None:
                pending = link.pending.get(action_id)
                if pending is not None:
                    pending.feed(msg)
                    if pending.future.done():  # answered (its waiter also removes it, if it waits)
                        del link.pending[action_id]
            for sub in list(self._subscriptions):
                sub.deliver(msg)
        elif msg.is_response:
            self.stats.responses_received += 1
            pending = link.pending.get(action_id) if action_id is not None else None
            if pending is not None:
                pending.feed(msg)
                if pending.future.done():
                    del link.pending[action_id]
            elif log.isEnabledFor(logging.DEBUG):
                log.debug("AMI response nobody waits for (late or foreign): %r", msg)
        else:
            log.debug("AMI message that is neither event nor response: %r", msg)

    async def _keepalive(self, link: _Link) -> None:
        while not link.closed:
            await asyncio.sleep(self.ping_interval)
            if link.closed:
                return
            try:
                pending = self._submit(link, {"Action": "Ping"}, "single")
                await self._wait(link, pending, self.ping_timeout)
            except AMITimeout:
                self.stats.ping_timeouts += 1
                log.warning("AMI %s: no Pong within %.1fs; dropping the link", self.label, self.ping_timeout)
                link.close("no answer to Ping")
                return
            except (AMILinkLost, AMINotConnected):
                return

    async def _run_on_connected(self, first: bool, first_attempt: asyncio.Future[None] | None) -> None:
        try:
            for callback in list(self._on_connected):
                try:
                    result = callback(self, first)
                    if inspect.isawaitable(result):
                        await result
                except Exception:
                    self.stats.callback_errors += 1
                    log.exception("AMI on_connected callback %s failed", _cb_name(callback))
        finally:
            if first_attempt is not None and not first_attempt.done():
                first_attempt.set_result(None)


__all__ = [
    "AMIClient",
    "AMIStats",
    "EventStream",
    "Subscription",
]
