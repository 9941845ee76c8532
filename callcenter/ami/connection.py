"""How the AMI client keeps its link: connect, check the banner, log in, wait for FullyBooted, read
and dispatch what Asterisk sends, Ping to notice a dead link, and reconnect with backoff, running
the ``on_connected`` callbacks after every login. Actions are written here too, at most once: an
action is encoded, checked against the link and written with no await in between, or not written
at all (``AMINotConnected``), and its answer is awaited only on the link it was written on.
``LinkKeeper`` holds this machinery and the client's state; ``AMIClient`` (``client.py``) is the
public face built on it.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import secrets as _secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
from callcenter.ami.events import EventStream, Subscription, callback_name
from callcenter.ami.inflight import Link, Pending
from callcenter.ami.protocol import Message, action_name_of, encode_action, redacted

if TYPE_CHECKING:
    from callcenter.ami.client import AMIClient

log = logging.getLogger("callcenter.ami")

ConnectedCallback = Callable[["AMIClient", bool], Any]


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


class LinkKeeper:
    """The link machinery under ``AMIClient``: its state, login, keep-alive, reconnect, dispatch and
    the write-once path (``_submit``/``_wait``)."""

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
        self._link: Link | None = None
        self._connected = False
        self._connected_event = asyncio.Event()
        self._wake = asyncio.Event()
        self._stopping = False
        self._ever_connected = False
        self._runner: asyncio.Task[None] | None = None
        self._keepalive_task: asyncio.Task[None] | None = None
        self._callbacks_task: asyncio.Task[None] | None = None
        # Who gets the events ``_dispatch`` reads: filled by AMIClient.subscribe / events.
        self._subscriptions: list[Subscription] = []
        self._streams: set[EventStream] = set()
        self._on_connected: list[ConnectedCallback] = []
        self._last_failure: tuple[type, str] | None = None
        self._failures_in_row = 0

    @property
    def label(self) -> str:
        return f"{self.host}:{self.port}"

    # -- internals: sending -----------------------------------------------------------------------
    def _submit(self, link: Link | None, action: Mapping[str, Any], kind: str) -> Pending:
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
        pending = Pending(kind, action_id, full)
        link.pending[action_id] = pending
        link.writer.write(payload)
        self.stats.actions_sent += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("AMI -> %s", pending.action)
        return pending

    async def _wait(self, link: Link | None, pending: Pending, timeout: float) -> Any:
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

    async def _open(self) -> Link:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout
            )
        except (OSError, TimeoutError) as exc:
            detail = str(exc) or type(exc).__name__
            raise AMIConnectError(f"cannot connect to AMI at {self.label}: {detail}") from None
        link = Link(reader, writer, self.label)
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

    async def _read_loop(self, link: Link) -> None:
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

    def _dispatch(self, link: Link, msg: Message) -> None:
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

    async def _keepalive(self, link: Link) -> None:
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
                    log.exception("AMI on_connected callback %s failed", callback_name(callback))
        finally:
            if first_attempt is not None and not first_attempt.done():
                first_attempt.set_result(None)



__all__ = ["AMIStats", "ConnectedCallback", "LinkKeeper"]
