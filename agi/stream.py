"""The FastAGI connection's byte stream: asyncio's StreamReader/StreamWriter pair cut down to what
AGI needs (read a line or up to a separator, write, drain), as one Protocol, with read deadlines.

Why not asyncio's streams: an AGI call is a string of tiny request/response round trips (4 to 20
per call, ~15 bytes each way), and per round trip the stream pair costs some fifty Python calls
(reader protocol, waiter bookkeeping, flow control, drain) -- as much as the rest of our command
path. This class wakes the reading task only when a complete line (or the separator asked for) is
in; a line is handed over as the result of the future the task waits on (`take_line` /
`next_line`: no coroutine frame per read). Errors are the ones asyncio's streams raise
(IncompleteReadError at EOF, LimitOverrunError past the limit, the connection's own error), so
callers handle both alike.

Deadlines: a read (or a drain) waiting past the stream's ``deadline`` fails with TimeoutError.
The deadlines of all streams of a server are kept by one `Deadlines` timer instead of a timer per
call: on uvloop every timer is a libuv handle whose closing costs an extra turn of the event loop,
and on either loop a timer per call is two to four calls more on every call.
"""
from __future__ import annotations

import asyncio
import math
from typing import Any

__all__ = ["AGIStream", "BufferedAGIStream", "Deadlines", "stream_class"]

# uvloop's clock counts whole milliseconds: a timer may run up to that much before its time
_EARLY = 0.001


class Deadlines:
    """The read deadlines of many streams, kept with one timer set for the nearest of them.

    A stream's deadline moves forward with every command (``AGIStream.arm``); the timer is only
    moved when a deadline comes before it. When it runs, it fails the reads of the streams whose
    deadline has passed and sets itself for the nearest remaining one, so the number of timers
    does not grow with the number of calls (a few per `header_timeout`, whatever the call rate).
    """

    __slots__ = ("_loop", "_streams", "_timer", "next_at")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self._loop = loop
        self._streams: set[AGIStream] = set()
        self._timer: asyncio.TimerHandle | None = None
        self.next_at = math.inf  # when the timer runs (inf: no timer)

    def __len__(self) -> int:
        return len(self._streams)

    def add(self, stream: AGIStream) -> None:
        self._streams.add(stream)

    def discard(self, stream: AGIStream) -> None:
        self._streams.discard(stream)

    def schedule(self, when: float) -> None:
        """Run the check at ``when`` (called when a deadline comes before ``next_at``)."""
        if self._timer is not None:
            self._timer.cancel()
        self.next_at = when
        self._timer = self._loop.call_at(when, self._check)

    def _check(self) -> None:
        self._timer = None
        self.next_at = math.inf
        now = self._loop.time() + _EARLY
        nearest = math.inf
        for stream in self._streams:
            when = stream.deadline
            if when:
                if when <= now:
                    stream._expire()  # only sets futures' outcomes: the set does not change
                elif when < nearest:
                    nearest = when
        if nearest != math.inf:
            self.schedule(nearest)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.next_at = math.inf


class AGIStream(asyncio.Protocol):
    """Reader and writer of one connection. ``limit``: the longest line (or header block) accepted.

    ``deadlines``: the `Deadlines` this stream's deadline is kept by (the server's); without one
    the stream makes its own. ``deadline`` is the loop time by which the read (or drain) under way
    must end, 0 for none; `arm` sets it.
    """

    def __init__(self, limit: int = 65536, *, loop: asyncio.AbstractEventLoop | None = None,
                 deadlines: Deadlines | None = None):
        self.limit = limit
        self.transport: asyncio.Transport | None = None
        self.deadline = 0.0
        self.deadlines = deadlines
        self.loop = loop  # set at connection_made when not given
        self._buffer = bytearray()
        self._eof = False
        self._error: BaseException | None = None  # the connection was lost with this error
        self._waiter: asyncio.Future | None = None
        self._wanted = b"\n"  # what the waiter waits for
        self._line_waiter = False  # the waiter's result is the line itself (next_line)
        self.expired = False  # the deadline passed: reads that must wait fail (until arm/disarm)
        self._paused = False  # the transport asked us to stop writing (its buffer is full)
        self._drain_waiter: asyncio.Future | None = None
        self._lost = False
        self._reading_paused = False

    # ---- protocol callbacks ------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if self.loop is None:
            self.loop = asyncio.get_running_loop()
        if self.deadlines is None:
            self.deadlines = Deadlines(self.loop)
        self.deadlines.add(self)

    def data_received(self, data: bytes) -> None:
        buffer = self._buffer
        buffer += data
        waiter = self._waiter
        if waiter is not None:
            if self._line_waiter:
                # the buffer held no line end when the waiter was made: only new data can hold it
                if b"\n" in data or len(buffer) > self.limit:
                    self._waiter = None
                    if not waiter.done():
                        try:
                            waiter.set_result(self.take_line())
                        except Exception as exc:  # LimitOverrunError
                            waiter.set_exception(exc)
                    return
            # wake the reader only for what it waits for, or when the buffer passed the limit (it
            # raises LimitOverrunError); the header block's blank line may straddle two chunks
            elif self._wanted in buffer or len(buffer) > self.limit:
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
        if self.deadlines is not None:
            self.deadlines.discard(self)
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
        if waiter is None or waiter.done():
            return
        if not self._line_waiter:
            waiter.set_result(None)
            return
        try:
            line = self.take_line()
        except Exception as exc:  # EOF, the connection's error
            waiter.set_exception(exc)
            return
        if line is None:  # not reached: _wake runs at EOF, where take_line raises
            waiter.set_exception(asyncio.IncompleteReadError(b"", None))
        else:
            waiter.set_result(line)

    # ---- deadlines ---------------------------------------------------------

    def arm(self, limit: float) -> None:
        """Reads and drains from now on must end within ``limit`` seconds (``deadline = 0``: no limit)."""
        loop = self.loop
        assert loop is not None and self.deadlines is not None, "arm() before connection_made()"
        when = self.deadline = loop.time() + limit
        self.expired = False
        if when < self.deadlines.next_at:
            self.deadlines.schedule(when)

    def disarm(self) -> None:
        """No deadline (AGIChannel does the same by setting both attributes)."""
        self.deadline = 0.0
        self.expired = False

    def _expire(self) -> None:
        self.deadline = 0.0
        self.expired = True
        for waiter in (self._waiter, self._drain_waiter):
            if waiter is not None and not waiter.done():
                waiter.set_exception(TimeoutError("read deadline passed"))
        self._waiter = self._drain_waiter = None

    # ---- reading -----------------------------------------------------------

    def take_line(self) -> bytes | None:
        """The next line (with its "\\n") if it is in, else None (then await `next_line()`).

        Raises when none can come any more: LimitOverrunError past the limit, the connection's
        error, IncompleteReadError at EOF (with what was left)."""
        buffer = self._buffer
        pos = buffer.find(b"\n")
        if pos >= 0:
            if pos >= self.limit:
                raise asyncio.LimitOverrunError("separator found past the limit", pos)
            data = bytes(buffer[: pos + 1])
            del buffer[: pos + 1]
            return data
        self._no_separator_yet()
        return None

    def _no_separator_yet(self) -> None:
        """No separator in the buffer: raise if none can come (over the limit, an error, EOF)."""
        buffer = self._buffer
        if len(buffer) > self.limit:
            raise asyncio.LimitOverrunError("separator not found within the limit", len(buffer))
        if self._error is not None:
            raise self._error
        if self._eof:
            partial = bytes(buffer)
            buffer.clear()
            raise asyncio.IncompleteReadError(partial, None)

    def next_line(self) -> asyncio.Future:
        """A future for the next line, when `take_line()` just returned None: its result is the
        line; it fails as `take_line` would, or with TimeoutError when the deadline passes."""
        if self.expired:
            raise TimeoutError("read deadline passed")
        if self._reading_paused and not self._lost and self.transport is not None:
            self._reading_paused = False
            self.transport.resume_reading()
        waiter = self.loop.create_future()  # type: ignore[union-attr]
        self._waiter = waiter
        self._line_waiter = True
        return waiter

    async def readline(self) -> bytes:
        """The next line, with its "\\n"."""
        line = self.take_line()
        if line is None:
            line = await self.next_line()
        return line

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
            self._no_separator_yet()
            if self.expired:
                raise TimeoutError("read deadline passed")
            offset = max(0, len(buffer) + 1 - seplen)
            if self._reading_paused and not self._lost and self.transport is not None:
                self._reading_paused = False
                self.transport.resume_reading()
            waiter = self.loop.create_future()  # type: ignore[union-attr]
            self._waiter = waiter
            self._wanted = separator
            self._line_waiter = False
            try:
                await waiter
            finally:
                self._waiter = None

    # ---- writing -----------------------------------------------------------

    def write(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    async def drain(self) -> None:
        """Wait while the transport's buffer is full; raise if the connection is gone (TimeoutError
        when the deadline passes first)."""
        if self._lost:
            raise self._error or ConnectionResetError("connection lost")
        if not self._paused:
            return
        if self.expired:
            raise TimeoutError("write deadline passed")
        waiter = self.loop.create_future()  # type: ignore[union-attr]
        self._drain_waiter = waiter
        await waiter

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.transport.get_extra_info(name, default) if self.transport is not None else default


class BufferedAGIStream(AGIStream, asyncio.BufferedProtocol):
    """AGIStream for asyncio's own event loop: the transport receives into one reused buffer.

    With a plain Protocol asyncio's selector transport calls ``recv(256 KiB)`` for every read: each
    one a fresh 256 KiB allocation, which glibc serves with mmap, shrinks with mremap and frees
    with munmap (three system calls and a page fault per read, 5-6 reads per call; strace of the
    server through Asterisk). ``scratch``: the buffer to receive into, shared by every stream of
    a server (each read is copied out before the next one can start: one thread, one loop).
    uvloop does not need this: it receives into a buffer of its own.
    """

    def __init__(self, limit: int = 65536, *, loop: asyncio.AbstractEventLoop | None = None,
                 deadlines: Deadlines | None = None, scratch: memoryview | None = None):
        super().__init__(limit, loop=loop, deadlines=deadlines)
        self._scratch = scratch if scratch is not None else memoryview(bytearray(65536))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._scratch

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._scratch[:nbytes].tobytes())


def stream_class(loop: asyncio.AbstractEventLoop) -> type[AGIStream]:
    """BufferedAGIStream on asyncio's selector loop (see there), AGIStream on any other (uvloop)."""
    return BufferedAGIStream if isinstance(loop, asyncio.selector_events.BaseSelectorEventLoop) else AGIStream
