"""The event broker: operators' screens and other readers subscribe to topics and get every event
published on them, each through its own bounded feed, so one slow reader never holds up the rest.

Topics: ``queue`` (queue snapshots), ``operator:<ext>`` (that operator's calls, screen-pops,
membership), ``calls`` (every channel change), ``link`` (link up/down, resyncs).
"""
from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterable
from typing import Any


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
    """Fans each published event out to the feeds subscribed to its topic (see module doc)."""

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


__all__ = ["Broker", "Feed"]
