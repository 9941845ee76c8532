"""Asyncio FastAGI server: routes each call to an async handler by script path.

Safety rule: whatever goes wrong inside a call (unknown script, handler bug,
timeout), the server tries to set ``IVR_NEXT=queue`` and ``AGI_ERROR=<Class>``
so the dialplan after ``AGI()`` hands the caller to an operator. Whatever goes
wrong on a connection (garbage, silence, a vanished client) costs one log line
and that connection only.
"""
from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import logging
import threading
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ticketing.privacy import mask_phone, mask_text

from .channel import DEFAULT_COMMAND_TIMEOUT, AGIChannel, AGIError, AGIHangup
from .protocol import AGIRequest, HeaderError, build_request, parse_header_line, parse_header_text
from .stream import AGIStream, BufferedAGIStream, Deadlines, stream_class

__all__ = ["FastAGIServer", "Router", "ServerStats", "ServerThread", "run_in_thread", "Handler"]

log = logging.getLogger("agi.server")

Handler = Callable[[AGIChannel], Awaitable[None]]
ContextFactory = Callable[[AGIRequest], contextlib.AbstractAsyncContextManager[Any]]


def _normalize(path: str) -> str:
    return path.strip("/")


class Router(Mapping[str, Handler]):
    """Script path -> async handler. ``@router.route("ivr/main")`` registers one."""

    def __init__(self, routes: Mapping[str, Handler] | None = None):
        self._routes: dict[str, Handler] = {}
        for path, handler in (routes or {}).items():
            self.add(path, handler)

    def add(self, path: str, handler: Handler) -> None:
        if not inspect.iscoroutinefunction(handler) and not inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)
        ):
            raise TypeError(f"AGI handler for {path!r} must be an async function")
        key = _normalize(path)
        if key in self._routes:
            raise ValueError(f"AGI route {key!r} registered twice")
        self._routes[key] = handler

    def route(self, path: str) -> Callable[[Handler], Handler]:
        def decorator(handler: Handler) -> Handler:
            self.add(path, handler)
            return handler

        return decorator

    def __getitem__(self, path: str) -> Handler:
        return self._routes[_normalize(path)]

    def get(self, path: str, default: Any = None) -> Any:
        # one call per call instead of Mapping.get's three (the request's script is already bare)
        handler = self._routes.get(path)
        return handler if handler is not None else self._routes.get(_normalize(path), default)

    def __iter__(self) -> Iterator[str]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)


@dataclass
class ServerStats:
    """Counters since start. ``errors`` keys: header_timeout, malformed_header,
    header_too_long, bad_encoding, too_many_header_lines, client_vanished,
    unknown_script, handler_exception, context_error, safety_failed, internal."""

    connections: int = 0  # TCP connections accepted
    sessions_served: int = 0  # handler ran to its end (including caller hangups)
    hangups: int = 0  # sessions ended by the caller hanging up
    sent_to_safety: int = 0  # calls where IVR_NEXT=queue was set after a failure
    active: int = 0  # connections open now
    errors: Counter = field(default_factory=Counter)

    def snapshot(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "sessions_served": self.sessions_served,
            "hangups": self.hangups,
            "sent_to_safety": self.sent_to_safety,
            "active": self.active,
            "errors": dict(self.errors),
        }


class FastAGIServer:
    """FastAGI server.

    ``router``: mapping script path -> ``async def handler(channel)``.
    ``context_factory(request)``: optional async context manager entered per call;
    its value is ``channel.context``. A caller hanging up is a normal end of a
    call: the context then exits without an exception.
    """

    def __init__(
        self,
        router: Mapping[str, Handler],
        host: str = "127.0.0.1",
        port: int = 4573,
        *,
        header_timeout: float = 5.0,
        max_line: int = 65536,
        max_header_lines: int = 256,
        context_factory: ContextFactory | None = None,
        safe_next: tuple[str, str] = ("IVR_NEXT", "queue"),
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        safety_timeout: float = 5.0,
        stop_timeout: float = 10.0,
        backlog: int = 1024,
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ):
        self.router = router
        self.on_stop = on_stop  # after the last call: e.g. give back the handlers' database connections
        self.host = host
        self._requested_port = port
        self.header_timeout = header_timeout
        self.max_line = max_line
        self.max_header_lines = max_header_lines
        self.context_factory = context_factory
        self.safe_next = safe_next
        self.command_timeout = command_timeout
        self.safety_timeout = safety_timeout
        self.stop_timeout = stop_timeout
        self.backlog = backlog
        self.stats = ServerStats()
        self._server: asyncio.base_events.Server | None = None
        self._sessions: set[asyncio.Task] = set()
        self._ids = itertools.count(1)
        self._stopped: asyncio.Event | None = None
        self._deadlines: Deadlines | None = None

    # ---- lifecycle -----------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (useful with port=0), else the configured one."""
        if self._server is not None and self._server.sockets:
            return self._server.sockets[0].getsockname()[1]
        return self._requested_port

    @property
    def sessions(self) -> frozenset[asyncio.Task]:
        """Session tasks currently running (for tests and diagnostics)."""
        return frozenset(self._sessions)

    async def start(self) -> None:
        if self._server is not None:
            return
        self._stopped = asyncio.Event()
        loop = asyncio.get_running_loop()
        deadlines = self._deadlines = Deadlines(loop)  # every connection's read deadline, one timer
        self._server = await loop.create_server(
            _connection_factory(self, loop, deadlines), self.host, self._requested_port, backlog=self.backlog)
        log.info("FastAGI server listening on %s:%d", self.host, self.port)

    async def serve_forever(self) -> None:
        await self.start()
        assert self._stopped is not None
        await self._stopped.wait()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop listening, let calls in flight finish (bounded), then close."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        limit = self.stop_timeout if timeout is None else timeout
        pending = set(self._sessions)
        if pending:
            _, pending = await asyncio.wait(pending, timeout=limit)
        if pending:
            log.warning("FastAGI stop: cancelling %d call(s) still running after %.1fs", len(pending), limit)
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=2.0)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2.0)
        if self._deadlines is not None:
            self._deadlines.close()
        if self.on_stop is not None:
            await self.on_stop()
        assert self._stopped is not None
        self._stopped.set()
        log.info("FastAGI server stopped (%s)", self.stats.snapshot())

    async def __aenter__(self) -> FastAGIServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # ---- one connection ------------------------------------------------
    # One coroutine frame for the whole call (header, routing, context, handler): every wake-up of
    # the call resumes each frame of its await chain, so helpers here would cost on every command.

    async def _on_connect(self, conn: _Connection, sid: str) -> None:
        stats = self.stats
        stats.connections += 1
        stats.active += 1
        try:
            try:
                request = await self._read_header(conn)
            except HeaderError as exc:
                stats.errors[exc.kind] += 1
                log.warning("%s from %s: closed, %s: %s", sid, _peer(conn), exc.kind, mask_text(str(exc)))
                return
            channel = AGIChannel(conn, conn, request, command_timeout=self.command_timeout, session_id=sid)
            who = _Who(sid, request)
            handler = self.router.get(request.script)
            if handler is None:
                stats.errors["unknown_script"] += 1
                log.warning("%s: unknown AGI script %r, sending call to %s=%s", who, request.script, *self.safe_next)
                await self._to_safety(who, channel, "UnknownScript")
                return
            debug = log.isEnabledFor(logging.DEBUG)  # once, not once per line
            if debug:
                log.debug("%s: start", who)
            started = False
            try:
                if self.context_factory is None:
                    started = True
                    try:
                        await handler(channel)
                    except AGIHangup:
                        stats.hangups += 1  # a normal end of a call, not an error
                else:
                    async with self.context_factory(request) as ctx:
                        channel.context = ctx
                        started = True
                        await self._call(handler, channel)  # a hangup: the context exits cleanly
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                kind = "handler_exception" if started else "context_error"
                stats.errors[kind] += 1
                log.error("%s: %s %s, sending call to %s=%s", who, kind.replace("_", " "), _describe(exc), *self.safe_next)
                await self._to_safety(who, channel, type(exc).__name__)
            else:
                stats.sessions_served += 1
                if debug:
                    log.debug("%s: done (%d commands)", who, channel.commands_sent)
            finally:
                channel.release()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not take the server down
            stats.errors["internal"] += 1
            log.error("%s: internal error %s: %s", sid, type(exc).__name__, mask_text(str(exc)))
        finally:
            self._close(conn)
            stats.active -= 1
            self._sessions.discard(conn.task)

    async def _read_header(self, reader: AGIStream) -> AGIRequest:
        # The first line alone (so garbage such as an HTTP request is refused at once), then the
        # rest of the block in one read: per-line reads cost ~45 us more per call.
        # (A block of a single header line then waits for header_timeout; Asterisk sends ~25.)
        # The deadline was armed when the connection was accepted (_Connection.connection_made).
        count = 0
        try:
            first = await reader.readuntil(b"\n")
            if first in (b"\n", b"\r\n"):
                raise HeaderError("malformed_header", "empty header block")
            parse_header_line(first.decode("utf-8").rstrip("\n"))
            count = 1
            rest = await reader.readuntil(b"\n\n")
        except TimeoutError:  # (before OSError: TimeoutError is one)
            raise HeaderError(
                "header_timeout", f"no complete header within {self.header_timeout:g}s ({count} lines)"
            ) from None
        except asyncio.IncompleteReadError as exc:
            seen = count + exc.partial.count(b"\n")
            raise HeaderError("client_vanished", f"connection closed after {seen} header lines") from None
        except asyncio.LimitOverrunError:
            raise HeaderError("header_too_long", f"header line or block longer than {self.max_line} bytes") from None
        except UnicodeDecodeError:
            raise HeaderError("bad_encoding", "header line 1 is not UTF-8") from None
        except (ConnectionError, OSError) as exc:
            raise HeaderError("client_vanished", f"connection lost ({type(exc).__name__})") from None
        finally:
            reader.disarm()
        try:
            text = (first + rest).decode("utf-8")
        except UnicodeDecodeError as exc:
            line_no = (first + rest)[: exc.start].count(b"\n") + 1
            raise HeaderError("bad_encoding", f"header line {line_no} is not UTF-8") from None
        count = text.count("\n") - 1  # the block ends with "\n\n"
        if count > self.max_header_lines:
            raise HeaderError("too_many_header_lines", f"{count} header lines (max {self.max_header_lines})")
        return build_request(parse_header_text(text, count), copy=False)

    async def _call(self, handler: Handler, channel: AGIChannel) -> None:
        try:
            result = handler(channel)
            if not inspect.isawaitable(result):
                raise TypeError("AGI handler is not an async function")
            await result
        except AGIHangup:
            self.stats.hangups += 1  # a normal end of a call, not an error

    async def _to_safety(self, who: object, channel: AGIChannel, error_name: str) -> None:
        """Best effort: IVR_NEXT=queue and AGI_ERROR=<Class> so the dialplan queues the caller."""
        if channel.hungup or channel.closed:
            return  # nobody left to route
        name, value = self.safe_next
        try:
            async with asyncio.timeout(self.safety_timeout):
                await channel.set_variable(name, value)
                await channel.set_variable("AGI_ERROR", error_name)
            self.stats.sent_to_safety += 1
        except (AGIHangup, AGIError, TimeoutError, OSError) as exc:
            self.stats.errors["safety_failed"] += 1
            log.warning("%s: could not set %s: %s", who, name, type(exc).__name__)

    def _close(self, writer: AGIStream) -> None:
        """Close without waiting (waiting costs a task per call); a peer that does not read what
        is still buffered gets the connection aborted after a second."""
        transport = writer.transport
        if transport.is_closing():
            return
        pending = transport.get_write_buffer_size()
        transport.close()
        if pending:
            asyncio.get_running_loop().call_later(1.0, transport.abort)


class _Who:
    """The call as log lines name it, formatted only when a line is written (most calls log none)."""

    __slots__ = ("sid", "request")

    def __init__(self, sid: str, request: AGIRequest):
        self.sid = sid
        self.request = request

    def __str__(self) -> str:
        r = self.request
        return f"{self.sid} {r.script or '/'} uid={r.unique_id or '-'} from={mask_phone(r.caller_id) or '-'}"


class _Connection(AGIStream):
    """One accepted connection: its session task starts as soon as the socket is accepted, with the
    header's deadline armed."""

    def __init__(self, server: FastAGIServer, loop: asyncio.AbstractEventLoop, deadlines: Deadlines, **kwargs: Any):
        super().__init__(server.max_line, loop=loop, deadlines=deadlines, **kwargs)
        self._agi_server = server
        self.task: asyncio.Task | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        server = self._agi_server
        self.arm(server.header_timeout)
        sid = f"agi-{next(server._ids)}"
        self.task = task = self.loop.create_task(server._on_connect(self, sid), name=sid)  # type: ignore[union-attr]
        server._sessions.add(task)


class _BufferedConnection(_Connection, BufferedAGIStream):
    """The same on asyncio's own loop: received into one buffer the server's connections share."""


def _connection_factory(server: FastAGIServer, loop: asyncio.AbstractEventLoop,
                        deadlines: Deadlines) -> Callable[[], _Connection]:
    if stream_class(loop) is BufferedAGIStream:
        scratch = memoryview(bytearray(65536))
        return lambda: _BufferedConnection(server, loop, deadlines, scratch=scratch)
    return lambda: _Connection(server, loop, deadlines)


def _peer(writer: AGIStream) -> str:
    info = writer.get_extra_info("peername")
    if isinstance(info, tuple) and len(info) >= 2:
        return f"{info[0]}:{info[1]}"
    return str(info)


def _describe(exc: BaseException) -> str:
    """One line: Class: message (at file:line in function), numbers masked."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        f = frames[-1]
        where = f" (at {f.filename.rsplit('/', 1)[-1]}:{f.lineno} in {f.name})"
    message = mask_text(str(exc)).replace("\n", " ")[:300]
    return f"{type(exc).__name__}: {message}{where}"


class ServerThread:
    """A FastAGIServer running on its own event loop in a background thread."""

    def __init__(self, server: FastAGIServer):
        self.server = server
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="fastagi-server", daemon=True)

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            try:
                await self.server.start()
            except BaseException as exc:
                self._error = exc
                self._ready.set()
                return
            self._ready.set()
            await self.server.serve_forever()

        asyncio.run(main())

    def start(self, timeout: float = 10.0) -> ServerThread:
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("FastAGI server thread did not start")
        if self._error is not None:
            raise self._error
        return self

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    def stop(self, timeout: float = 15.0) -> None:
        if self.loop is not None and self._thread.is_alive():
            fut = asyncio.run_coroutine_threadsafe(self.server.stop(), self.loop)
            fut.result(timeout)
        self._thread.join(timeout)

    def __enter__(self) -> ServerThread:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def run_in_thread(server: FastAGIServer, timeout: float = 10.0) -> ServerThread:
    """Start ``server`` in a background thread; returns a handle with ``.stop()``/``.port``."""
    return ServerThread(server).start(timeout)
