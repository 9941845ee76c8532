"""Event delivery of the AMI client: every event read from the link goes to every matching
``Subscription`` (made by ``AMIClient.subscribe``). Sync callbacks run inline; async ones run in
order in one task per subscription, so a slow subscriber cannot stall the link (and its Pongs); an
exception in one subscriber is logged and counted and affects nothing else. ``EventStream``
(``AMIClient.events()``) is a bounded async iterator over events that drops the oldest when full.
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from callcenter.ami.protocol import Message

if TYPE_CHECKING:
    from callcenter.ami.client import AMIClient

log = logging.getLogger("callcenter.ami")

EventCallback = Callable[[Message], Any]

# An async subscriber this far behind is reported once (until it catches up).
_BACKLOG_WARNING = 10_000


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
                log.exception("AMI event subscriber %s failed on %s", callback_name(self.callback), msg.name)
                return
            if result is not None and inspect.isawaitable(result):  # a plain function returning a coroutine
                task = asyncio.ensure_future(result)
                task.add_done_callback(self._log_task_error)
            return
        self._queue.append(msg)
        self._ready.set()
        if len(self._queue) > _BACKLOG_WARNING and not self._backlog_warned:
            self._backlog_warned = True
            log.warning("AMI event subscriber %s is %d events behind", callback_name(self.callback), len(self._queue))
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._work())

    def _log_task_error(self, task: asyncio.Future[Any]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._client.stats.callback_errors += 1
            log.error(
                "AMI event subscriber %s failed", callback_name(self.callback), exc_info=task.exception()
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
                log.exception("AMI event subscriber %s failed on %s", callback_name(self.callback), msg.name)

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


def callback_name(cb: Callable[..., Any]) -> str:
    return getattr(cb, "__qualname__", None) or repr(cb)


__all__ = ["EventCallback", "EventStream", "Subscription", "callback_name"]
