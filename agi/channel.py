"""One call's AGI conversation: typed async commands over the FastAGI socket."""
from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from ticketing.privacy import mask_text

from .protocol import (
    HANGUP_LINE,
    AGIRequest,
    ProtocolError,
    Response,
    escape_app_arg,
    format_command,
    is_usage_end,
    parse_response,
)
from .stream import AGIStream

__all__ = ["AGIChannel", "AGIError", "AGIHangup", "AGITimeout", "RecordResult"]

log = logging.getLogger("agi.channel")

DEFAULT_COMMAND_TIMEOUT = 120.0
# After a media command fails with result=-1, Asterisk sends "HANGUP" within
# microseconds if the failure was the caller hanging up (res_agi notices the
# hangup on its next loop). Waiting this long tells a hangup from an error.
DEFAULT_HANGUP_GRACE = 0.2


class AGIHangup(Exception):
    """The caller hung up: 511, a HANGUP line, or Asterisk closed the socket."""


class AGIError(Exception):
    """A command failed (510, 520, result=-1 meaning failure, broken stream)."""

    def __init__(self, message: str, *, command: str | None = None, response: Response | None = None):
        super().__init__(message)
        self.command = command
        self.response = response

    @property
    def usage(self) -> str | None:
        return self.response.usage if self.response is not None else None


class AGITimeout(AGIError):
    """Asterisk did not answer a command within its timeout."""


@dataclass(frozen=True)
class RecordResult:
    """Outcome of RECORD FILE.

    ``reason``: "dtmf" (a key ended it; ``digit`` says which), "timeout" (max
    time or silence reached), "hangup" (the caller hung up while recording; the
    file is kept and the next command raises AGIHangup). ``endpos`` is the
    length in samples as reported by Asterisk.
    """

    reason: str
    digit: str | None
    endpos: int

    @property
    def hung_up(self) -> bool:
        return self.reason == "hangup"


class _Turns:
    """One command at a time on a channel, in arrival order. Taking a free turn (nearly always: a
    call's commands run one after another) is one flag, not asyncio.Lock's four calls."""

    __slots__ = ("busy", "_waiters")

    def __init__(self) -> None:
        self.busy = False
        self._waiters: deque[asyncio.Future] | None = None

    def take(self) -> bool:
        """Take the turn if it is free; False means `await wait()` for it."""
        if self.busy:
            return False
        self.busy = True
        return True

    async def wait(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wait for the turn (only when busy); on return the caller holds it."""
        fut = loop.create_future()
        if self._waiters is None:
            self._waiters = deque()
        self._waiters.append(fut)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # handed the turn just as we were cancelled: pass it on
            raise

    def release(self) -> None:
        waiters = self._waiters
        while waiters:
            fut = waiters.popleft()
            if not fut.done():
                fut.set_result(None)  # the turn passes on: busy stays True
                return
        self.busy = False


class AGIChannel:
    """Async FastAGI commands for one call.

    Every read is bounded by ``command_timeout`` (plus the media time for
    GET DATA, WAIT FOR DIGIT and RECORD FILE). ``context`` is whatever the
    server's context_factory yielded for this call (None without one).
    """

    def __init__(
        self,
        reader: AGIStream,
        writer: AGIStream,
        request: AGIRequest,
        *,
        command_timeout: float = DEFAULT_COMMAND_TIMEOUT,
        hangup_grace: float = DEFAULT_HANGUP_GRACE,
        context: Any = None,
        session_id: str = "",
    ):
        self.request = request
        self.context = context
        self.command_timeout = command_timeout
        self.hangup_grace = hangup_grace
        self.session_id = session_id
        self.hungup = False  # the channel is dead (caller or we hung up)
        self.commands_sent = 0
        self._reader = reader
        self._writer = writer
        self._transport = writer.transport
        self._loop = reader.loop or asyncio.get_running_loop()  # (get_running_loop: a getpid() each)
        self._debug = log.isEnabledFor(logging.DEBUG)  # checked once per call, not twice per command
        self._turns = _Turns()  # one command at a time on the stream
        self._owed = 0  # responses still due for commands already sent
        self._pushback: deque[str] = deque()
        self._hangup_reported = False  # AGIHangup raised once for a HANGUP line
        self._we_hung_up = False
        self._closed = False  # EOF seen, or the stream can no longer be trusted
        self._broken_reason: str | None = None

    # ---- raw I/O -------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    async def _readline(self) -> str:
        if self._pushback:
            return self._pushback.popleft()
        try:
            raw = await self._reader.readline()
        except TimeoutError:
            raise  # the stream's deadline: the command turns it into AGITimeout
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError) as exc:
            raise self._stream_failed(exc) from None
        # Values (e.g. a GBK caller name read by GET VARIABLE) may not be UTF-8;
        # surrogateescape keeps the bytes and sends them back unchanged.
        return raw.decode("utf-8", "surrogateescape").rstrip("\r\n")

    def release(self) -> None:
        """The session is over (the server calls this): no read deadline left behind."""
        self._reader.disarm()

    def _stream_failed(self, exc: BaseException) -> Exception:
        """What a failed read of the stream means for the call (TimeoutError is handled before)."""
        if isinstance(exc, asyncio.LimitOverrunError):
            self._break("response line too long")
            return AGIError("response line longer than the stream limit")
        self._closed = True
        self.hungup = True
        if isinstance(exc, asyncio.IncompleteReadError):
            return AGIHangup("Asterisk closed the AGI connection")
        return AGIHangup(f"AGI connection lost: {exc.__class__.__name__}")

    def _break(self, reason: str) -> None:
        self._closed = True
        self._broken_reason = reason

    async def _read_response(self, first: str | None = None) -> Response:
        """Read one complete response (``first``: its first line, already read), handling HANGUP
        and provisional lines."""
        while True:
            if first is None:
                line = await self._readline()
            else:
                line, first = first, None
            if line[:11] == "200 result=":  # nearly every answer: none of the cases below
                return parse_response([line])
            if line == HANGUP_LINE:
                self.hungup = True
                if self._we_hung_up or self._hangup_reported:
                    continue
                self._hangup_reported = True
                raise AGIHangup("caller hung up (HANGUP from Asterisk)")
            if line.startswith("100 "):
                continue  # provisional ("100 result=0 Trying..." before GOSUB's answer)
            lines = [line]
            if line.startswith("520-"):  # is_usage_start
                while not is_usage_end(lines[-1]) or len(lines) == 1:
                    lines.append(await self._readline())
            try:
                return parse_response(lines)
            except ProtocolError as exc:
                self._break("unparseable response")
                raise AGIError(f"unparseable response: {mask_text(str(exc))}") from None

    async def command(self, raw: str, *, timeout: float | None = None) -> Response:
        """Send one raw command line and return its response.

        Raises AGIHangup on 511 / HANGUP / EOF, AGIError on 510 and 520 (the
        usage text is on the exception), AGITimeout when no answer comes.
        """
        if "\n" in raw or "\r" in raw:
            raise ValueError("an AGI command is one line")
        turns = self._turns
        if not turns.take():
            await turns.wait(self._loop)
        stream = self._reader
        try:
            if self._closed:
                if self._broken_reason:
                    raise AGIError(f"AGI stream unusable: {self._broken_reason}", command=raw)
                raise AGIHangup("AGI connection already closed")
            limit = self.command_timeout if timeout is None else timeout
            stream.arm(limit)  # this command's read (and drain) must end in time: else TimeoutError
            try:
                self._transport.write(raw.encode("utf-8", "surrogateescape") + b"\n")
                self._owed += 1  # once buffered it will be sent, so its answer is due
                self.commands_sent += 1
                if stream._paused:  # the transport's buffer is full: wait until it takes more
                    await stream.drain()
                if self._debug:
                    log.debug("%s >> %s", self.session_id, mask_text(raw))
                while True:
                    # the usual answer (a line "200 result=N" already in, or the next one in) is
                    # read here; anything else and pushed-back lines go the long way
                    if self._pushback:
                        response = await self._read_response()
                    else:
                        line = stream.take_line()
                        if line is None:
                            line = await stream.next_line()
                        text = line.decode("utf-8", "surrogateescape").rstrip("\r\n")
                        if text[:11] == "200 result=":
                            response = parse_response([text])
                        else:
                            response = await self._read_response(text)
                    self._owed -= 1
                    if self._owed == 0:
                        break
                    # a response owed to an earlier command that was cut short
            except TimeoutError:
                raise AGITimeout(f"no answer within {limit:.1f}s", command=_first_word(raw)) from None
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, OSError) as exc:
                raise self._stream_failed(exc) from None
            finally:
                stream.deadline = 0.0  # stream.disarm(), inline
                stream.expired = False
        finally:
            turns.release()
        if self._debug:
            log.debug("%s << %s", self.session_id, mask_text(response.text))
        if response.code == 200:
            return response
        if response.code == 511:
            self.hungup = True
            raise AGIHangup("command not permitted on a dead channel (511)")
        if response.code == 510:
            raise AGIError(f"invalid or unknown command: {_first_word(raw)}", command=raw, response=response)
        if response.code == 520:
            raise AGIError(f"invalid command syntax: {_first_word(raw)}", command=raw, response=response)
        raise AGIError(f"unexpected response code {response.code}", command=raw, response=response)

    def send(self, command: str, *args: object, timeout: float | None = None) -> Coroutine[Any, Any, Response]:
        """Format (quoting args) and send a command: ``await channel.send("SET VARIABLE", "X", v)``.

        A plain function returning `command()`'s coroutine, not a coroutine of its own: one frame
        less on every resumption of every command (a bad argument raises at the call)."""
        return self.command(format_command(command, *args), timeout=timeout)

    async def _failed(self, what: str, response: Response) -> None:
        """result=-1: raise AGIHangup if Asterisk reports a hangup right after, else AGIError."""
        if self.hungup:
            raise AGIHangup(f"{what}: channel hung up")
        turns = self._turns
        if not turns.take():
            await turns.wait(self._loop)
        try:
            line = None
            if not self._closed and not self._owed:
                try:
                    async with asyncio.timeout(self.hangup_grace):
                        line = await self._readline()
                except TimeoutError:
                    line = None
                except AGIHangup:
                    raise AGIHangup(f"{what}: connection closed") from None
            if line == HANGUP_LINE:
                self.hungup = True
                self._hangup_reported = True
                raise AGIHangup(f"{what}: caller hung up")
            if line is not None:
                self._pushback.append(line)
        finally:
            turns.release()
        raise AGIError(f"{what} failed (result={response.result_raw})", command=what, response=response)

    # ---- typed commands ------------------------------------------------

    async def answer(self) -> None:
        r = await self.command("ANSWER")
        if r.result == -1:
            await self._failed("ANSWER", r)

    async def hangup(self) -> None:
        """Hang up the call. Idempotent; a channel already gone is not an error."""
        if self.hungup or self._closed:
            self.hungup = True
            return
        self._we_hung_up = True
        try:
            await self.command("HANGUP")
        except AGIHangup:
            pass
        self.hungup = True

    async def set_variable(self, name: str, value: object) -> None:
        await self.send("SET VARIABLE", name, value)

    async def get_variable(self, name: str) -> str | None:
        """Channel variable or dialplan function value; None when unset."""
        r = await self.send("GET VARIABLE", name)
        if r.result == 1:
            return r.data if r.data is not None else ""
        return None

    async def get_full_variable(self, expression: str) -> str | None:
        """An expression with ``${...}`` substitutions evaluated on the channel (GET FULL VARIABLE):
        several values in one round trip. None when Asterisk reports it unset (result=0)."""
        r = await self.send("GET FULL VARIABLE", expression)
        if r.result == 1:
            return r.data if r.data is not None else ""
        return None

    async def verbose(self, message: str, level: int = 1) -> None:
        await self.send("VERBOSE", message, level)

    async def stream_file(self, name: str, escape_digits: str = "") -> str | None:
        """Play a prompt; return the escape digit that interrupted it, else None.

        A prompt missing in every language makes Asterisk answer result=-1,
        which raises AGIError (so the call goes to safety, not into silence).
        """
        r = await self.send("STREAM FILE", name, escape_digits)
        return await self._digit_result("STREAM FILE", r)

    async def get_data(self, name: str, timeout_ms: int, max_digits: int) -> tuple[str, bool]:
        """Play ``name`` and collect up to ``max_digits`` digits ('#' ends input).

        Returns (digits, timed_out). ``timeout_ms`` is the inter-digit timeout.
        """
        media = timeout_ms / 1000.0 * (max_digits + 1)
        r = await self.send("GET DATA", name, int(timeout_ms), int(max_digits), timeout=self.command_timeout + media)
        if r.result_raw == "-1":
            await self._failed("GET DATA", r)
        return r.result_raw, (r.data == "timeout")

    async def wait_for_digit(self, timeout_ms: int) -> str | None:
        """Wait for one key press; None on timeout. timeout_ms=-1 waits forever."""
        media = max(timeout_ms, 0) / 1000.0
        r = await self.send("WAIT FOR DIGIT", int(timeout_ms), timeout=self.command_timeout + media)
        return await self._digit_result("WAIT FOR DIGIT", r)

    async def say_digits(self, digits: str, escape: str = "") -> str | None:
        r = await self.send("SAY DIGITS", digits, escape)
        return await self._digit_result("SAY DIGITS", r)

    async def say_number(self, number: int, escape: str = "") -> str | None:
        r = await self.send("SAY NUMBER", int(number), escape)
        return await self._digit_result("SAY NUMBER", r)

    async def record_file(
        self,
        path_without_ext: str,
        fmt: str = "wav",
        escape_digits: str = "#",
        timeout_ms: int = 60000,
        beep: bool = True,
        silence_s: int | None = None,
    ) -> RecordResult:
        """Record the caller to ``path_without_ext.fmt``.

        Ends on an escape digit, after ``timeout_ms`` (-1: no limit), after
        ``silence_s`` seconds of silence, or when the caller hangs up.
        """
        args: list[object] = [path_without_ext, fmt, escape_digits, int(timeout_ms), 0]
        if beep:
            args.append("BEEP")
        if silence_s:
            args.append(f"s={int(silence_s)}")
        media = max(timeout_ms, 0) / 1000.0
        r = await self.send("RECORD FILE", *args, timeout=self.command_timeout + media)
        endpos = r.endpos or 0
        result = r.result
        if r.data == "dtmf" and result and result > 0:
            return RecordResult("dtmf", chr(result), endpos)
        if r.data == "timeout":
            return RecordResult("timeout", None, endpos)
        if r.data == "hangup":
            self.hungup = True  # the recording is kept; the next command raises AGIHangup
            return RecordResult("hangup", None, endpos)
        if r.data == "randomerror" and result and result > 0:
            return RecordResult("dtmf", chr(result), 0)  # key pressed during the beep
        await self._failed(f"RECORD FILE ({r.data})", r)
        raise AssertionError("unreachable")

    async def exec(self, app: str, *args: object, timeout: float | None = None) -> int:
        """Run a dialplan application; return its result.

        Args are joined with commas, each escaped so the application receives
        it literally. -2 (no such application) and -1 raise.
        """
        data = ",".join(escape_app_arg(a) for a in args)
        return await self.exec_raw(app, data, timeout=timeout)

    async def exec_raw(self, app: str, data: str = "", *, timeout: float | None = None) -> int:
        """EXEC with the application data passed verbatim (no escaping)."""
        r = await self.send("EXEC", app, data, timeout=timeout)
        result = r.result
        if result == -2:
            raise AGIError(f"no such application: {app}", command="EXEC", response=r)
        if result is None:
            raise AGIError(f"EXEC {app}: unexpected result {r.result_raw!r}", command="EXEC", response=r)
        if result < 0:
            await self._failed(f"EXEC {app}", r)
        return result

    async def user_event(self, name: str, **fields: object) -> None:
        """Emit an AMI UserEvent ``name`` with ``fields`` as headers (EXEC UserEvent)."""
        body = [f"{key}: {value}" for key, value in fields.items()]
        await self.exec("UserEvent", name, *body)

    async def _digit_result(self, what: str, r: Response) -> str | None:
        result = r.result
        if result is None or result < 0:
            await self._failed(what, r)
        if result == 0:
            return None
        return chr(result)


def _first_word(raw: str) -> str:
    words = raw.split()
    if len(words) >= 2 and words[0].upper() in {"STREAM", "SET", "GET", "WAIT", "SAY", "RECORD", "CHANNEL", "DATABASE", "SPEECH", "CONTROL", "RECEIVE", "SEND", "TDD", "ASYNCAGI"}:
        return " ".join(words[:2]).upper()
    return words[0].upper() if words else ""
