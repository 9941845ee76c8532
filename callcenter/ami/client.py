"""Our asyncio AMI client: one TCP link to Asterisk's manager interface, kept up in the background.
This module is its public face (start/stop, subscribe, actions, Originate); the link machinery is in
``connection.py``, actions awaiting answers in ``inflight.py``, event delivery in ``events.py``.

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
import contextlib
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any

from callcenter.ami.connection import ConnectedCallback, LinkKeeper
from callcenter.ami.errors import AMIError
from callcenter.ami.events import EventCallback, EventStream, Subscription
from callcenter.ami.protocol import Message


class AMIClient(LinkKeeper):
    """Asyncio AMI client. Typical use::

        client = AMIClient.from_settings()
        client.on_connected(resync)             # async def resync(client, first): ...
        client.subscribe(on_event, ["Newchannel", "Hangup"])
        await client.start()                    # raises AMIAuthError / AMIConnectError at once
        reply = await client.send_action({"Action": "Ping"})
        ...
        await client.stop()

    Constructor arguments (host, port, credentials, timeouts, backoff, Login ``Events:`` filter):
    see ``LinkKeeper.__init__``.
    """

    @classmethod
    def from_settings(cls, settings: Any = None, **kwargs: Any) -> AMIClient:
        """Client for the install's Asterisk (``CALLCENTER_AMI_*`` settings, else the secret the install
        wrote into the state dir's secrets.env: any state dir, not only the default one)."""
        from callcenter.pbx.credentials import ami_secret

        if settings is None:
            from callcenter.settings import get_settings

            settings = get_settings()
        return cls(settings.ami_host, settings.ami_port, settings.ami_username, ami_secret(settings), **kwargs)

    def __repr__(self) -> str:  # no secret here, ever
        state = "connected" if self._connected else "down"
        return f"<AMIClient {self.username}@{self.host}:{self.port} {state}>"

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


__all__ = ["AMIClient"]
