"""The FastAGI connection's byte stream: asyncio's StreamReader/StreamWriter pair cut down to what
AGI needs (read up to a separator, write, drain), as one Protocol.

Why not asyncio's streams: an AGI call is a string of tiny request/response round trips (4 to 20
per call, ~15 bytes each way), and per round trip the stream pair costs some fifty Python calls
(reader protocol, waiter bookkeeping, flow control, drain) -- as much as the rest of our command
path. This class wakes the reading task only when a complete line (or the separator asked for) is
in, and `readuntil` returns at once when it already is. Errors are the ones asyncio's streams raise
(IncompleteReadError at EOF, LimitOverrunError past the limit, the connection's own error), so
callers handle both alike.
"""
from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["AGIStream"]


class AGIStream(asyncio.Protocol):
    """Reader and writer of one connection. ``limit``: the longest line (or header block) accepted."""

    def __init__(self, limit: int = 65536):
        self.limit = limit
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None  # the connection was lost with this error
        self._waiter: asyncio.Future | None = None
        self._wanted = b"\n"  # what the waiter waits for
        self._paused = False  # the transport asked us to stop writing (its buffer is full)
        self._drain_waiter: asyncio.Future | None = None
        self._lost = False
        self._reading_paused = False

    # ---- protocol callbacks ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        waiter = self._waiter
        if waiter is not None:
            # wake the reader only for what it waits for, or when the buffer passed the limit (it
            # raises LimitOverrunError); a line: look at the new data only, else (the header block's
            # blank line, which may straddle two chunks) at the whole buffer
            wanted = self._wanted
            if (b"\n" in data if wanted == b"\n" else wanted in buffer) or len(buffer) > self.limit:
                self._waiter = None
                if not waiter.done():
                    waiter.set_result(None)
                return
        if len(buffer) > 2 * self.limit and self.transport is not None and not self._reading_paused:
            self._reading_paused = True  # nobody reads it: stop taking more (bounded memory)
            self.transport.pause_reading()

    def eof_received(self) -> bool:
        self._eof = True
        self._wake()
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._eof = True
        if exc is not None:
            self._error = exc
        self._wake()
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        waiter, self._drain_waiter = self._drain_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---- reading -----------------------------------------------------------

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """The data up to and including ``separator``, as StreamReader.readuntil."""
        buffer = self._buffer
        offset = 0
        seplen = len(separator)
        while True:
            pos = buffer.find(separator, offset)
            if pos >= 0:
                end = pos + seplen
                if end > self.limit:
                    raise asyncio.LimitOverrunError("separator found past the limit", pos)
                data = bytes(buffer[:end])
                del buffer[:end]
                return data
            if len(buffer) > self.limit:
                raise asyncio.LimitOverrunError("separator not found within the limit", len(buffer))
            if self._error is not None:
                raise self._error
            if self._eof:
                partial = bytes(buffer)
                buffer.clear()
                raise asyncio.IncompleteReadError(partial, None)
            offset = max(0, len(buffer) + 1 - seplen)
            if self._reading_paused and not self._lost and self.transport is not None:
                self._reading_paused = False
                self.transport.resume_reading()
            waiter = asyncio.get_running_loop().create_future()
            self._waiter = waiter
            self._wanted = separator
            try:
                await waiter
            finally:
                self._waiter = None

    # ---- writing -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's buffer is full; raise if the connection is gone."""
        if self._lost:
            raise self._error or ConnectionResetError("connection lost")
        if not self._paused:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._drain_waiter = waiter
        await waiter

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default) if self.transport is not None else default
