"""A fake AMI server on 127.0.0.1 for protocol-level tests (ours and those of AMI consumers).

It speaks the wire format as Asterisk 22 does (banner, Login with a 1 s-like refusal delay option,
FullyBooted after login, event lists, async Originate with an OriginateResponse event) and records
every action it receives, so a test can prove what was (not) sent. It is not an Asterisk emulator:
anything beyond that is up to handlers the test installs.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Union

from callcenter.ami.protocol import Message, Parser

Reply = Union[Mapping[str, Any], Message]
Handler = Callable[["FakeSession", Message], Union[None, list[Reply], Awaitable[Union[None, list[Reply]]]]]


def encode_message(msg: Reply) -> bytes:
    items = msg.items() if isinstance(msg, Message) else Message.from_mapping(msg).items()
    return "".join(f"{k}: {v}\r\n" for k, v in items).encode("utf-8") + b"\r\n"


class FakeSession:
    """One client connection to the fake server."""

    def __init__(self, server: FakeAMIServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.authenticated = False
        self.index = len(server.sessions)
        self.actions: list[Message] = []

    def send(self, *messages: Reply) -> None:
        for msg in messages:
            self.writer.write(encode_message(msg))

    def send_raw(self, data: bytes) -> None:
        self.writer.write(data)

    def abort(self) -> None:
        self.writer.transport.abort()

    async def run(self) -> None:
        self.writer.write(f"{self.server.banner}\r\n".encode())
        parser = Parser(expect_banner=False)
        try:
            while True:
                data = await self.reader.read(65536)
                if not data:
                    break
                for action in parser.feed(data):
                    self.actions.append(action)
                    self.server.actions.append(action)
                    self.server._action_seen.set()
                    await self._handle(action)
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                self.writer.close()

    async def _handle(self, action: Message) -> None:
        name = (action.get_first("Action") or "").lower()
        if name in self.server.hold:
            return  # swallowed: no answer ever (an action "in flight")
        if not self.authenticated and name not in ("login", "challenge"):
            self.send(_reply(action, Response="Error", Message="Authentication Required"))
            return
        handler = self.server.handlers.get(name)
        if handler is None:
            self.send(_reply(action, Response="Error", Message="Invalid/unknown command"))
            return
        result = handler(self, action)
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            self.send(*result)
        await self.writer.drain()


def _reply(action: Message, **headers: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    first = headers.pop("Response", None)
    if first is not None:
        out["Response"] = first
    if action.action_id is not None:
        out["ActionID"] = action.action_id
    out.update(headers)
    return out


class FakeAMIServer:
    """``async with FakeAMIServer() as ami: client = AMIClient("127.0.0.1", ami.port, ami.username, ami.secret)``"""

    def __init__(
        self,
        username: str = "callcenter",
        secret: str = "fake-secret",
        *,
        banner: str = "Asterisk Call Manager/9.0.0",
        login_refusal_delay: float = 0.0,
        send_fully_booted: bool = True,
    ) -> None:
        self.username = username
        self.secret = secret
        self.banner = banner
        self.login_refusal_delay = login_refusal_delay
        self.send_fully_booted = send_fully_booted
        self.answer_pings = True
        self.hold: set[str] = set()  # lower-case action names never answered
        self.actions: list[Message] = []  # every action received, all sessions, in order
        self.sessions: list[FakeSession] = []
        self.logins = 0
        self.failed_logins = 0
        self.channels: list[dict[str, Any]] = []  # items for CoreShowChannels
        self.command_output: dict[str, list[str]] = {}
        self.originate_delay = 0.0
        self.originate_result = "Success"
        self.handlers: dict[str, Handler] = {
            "login": self._login,
            "logoff": self._logoff,
            "ping": self._ping,
            "command": self._command,
            "coreshowchannels": self._core_show_channels,
            "originate": self._originate,
        }
        self.port = 0
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._action_seen = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------------
    async def start(self, port: int | None = None) -> FakeAMIServer:
        """Listen (again) on 127.0.0.1; ``port`` None keeps the previous port (0 at first: ephemeral)."""
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port if port is None else port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop_listening(self) -> None:
        """Refuse new connections; existing sessions stay."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def drop_all(self) -> None:
        """Cut every session at once (like Asterisk dying)."""
        for session in self.sessions:
            session.abort()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        self.drop_all()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._server is not None:
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> FakeAMIServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        session = FakeSession(self, reader, writer)
        self.sessions.append(session)
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await session.run()
        finally:
            self._tasks.discard(task)

    # -- helpers for tests ----------------------------------------------------------------------
    @property
    def live_sessions(self) -> list[FakeSession]:
        return [s for s in self.sessions if not s.writer.transport.is_closing()]

    def broadcast(self, *messages: Reply) -> None:
        """Send events to every authenticated session."""
        for session in self.live_sessions:
            if session.authenticated:
                session.send(*messages)

    def actions_named(self, name: str) -> list[Message]:
        return [a for a in self.actions if (a.get_first("Action") or "").lower() == name.lower()]

    async def wait_for_action(self, name: str, count: int = 1, timeout: float = 2.0) -> list[Message]:
        async def until() -> list[Message]:
            while len(self.actions_named(name)) < count:
                self._action_seen.clear()
                await self._action_seen.wait()
            return self.actions_named(name)

        return await asyncio.wait_for(until(), timeout)

    # -- default handlers -----------------------------------------------------------------------
    async def _login(self, session: FakeSession, action: Message) -> list[Reply]:
        if action.get_first("Username") == self.username and action.get_first("Secret") == self.secret:
            session.authenticated = True
            self.logins += 1
            replies: list[Reply] = [_reply(action, Response="Success", Message="Authentication accepted")]
            if self.send_fully_booted:
                replies.append({"Event": "FullyBooted", "Privilege": "system,all", "Uptime": "5",
                                "LastReload": "5", "Status": "Fully Booted"})
            return replies
        self.failed_logins += 1
        if self.login_refusal_delay:
            await asyncio.sleep(self.login_refusal_delay)
        session.send(_reply(action, Response="Error", Message="Authentication failed"))
        await session.writer.drain()
        session.writer.close()  # Asterisk ends the session after a failed login
        return []

    def _logoff(self, session: FakeSession, action: Message) -> list[Reply]:
        session.send(_reply(action, Response="Goodbye", Message="Thanks for all the fish."))
        session.writer.close()
        return []

    def _ping(self, session: FakeSession, action: Message) -> list[Reply] | None:
        if not self.answer_pings:
            return None
        return [_reply(action, Response="Success", Ping="Pong", Timestamp="1732547203.000000")]

    def _command(self, session: FakeSession, action: Message) -> list[Reply]:
        lines = self.command_output.get(action.get_first("Command") or "", [])
        return [_reply(action, Response="Success", Message="Command output follows", Output=lines)]

    def _core_show_channels(self, session: FakeSession, action: Message) -> list[Reply]:
        replies: list[Reply] = [
            _reply(action, Response="Success", EventList="start", Message="Channels will follow")
        ]
        for channel in self.channels:
            replies.append({"Event": "CoreShowChannel", "ActionID": action.action_id, **channel})
        replies.append({"Event": "CoreShowChannelsComplete", "ActionID": action.action_id,
                        "EventList": "Complete", "ListItems": len(self.channels)})
        return replies

    async def _originate(self, session: FakeSession, action: Message) -> list[Reply]:
        ack = _reply(action, Response="Success", Message="Originate successfully queued")
        if (action.get_first("Async") or "").lower() != "true":
            await asyncio.sleep(self.originate_delay)  # sync Originate: the ack waits for the outcome
            return [ack]
        session.send(ack)
        success = self.originate_result == "Success"
        event = {
            "Event": "OriginateResponse",
            "Privilege": "call,all",
            "ActionID": action.action_id,
            "Response": self.originate_result,
            "Channel": action.get_first("Channel"),
            "Context": action.get_first("Context") or "",
            "Exten": action.get_first("Exten") or "",
            "Application": action.get_first("Application") or "",
            "Data": action.get_first("Data") or "",
            "Reason": "4" if success else "0",
            "Uniqueid": action.get_first("ChannelId") or "<null>",
            "CallerIDNum": "<unknown>",
            "CallerIDName": "<unknown>",
        }

        async def later() -> None:
            # Like Asterisk's originate thread: the session keeps serving other actions meanwhile.
            await asyncio.sleep(self.originate_delay)
            if not session.writer.transport.is_closing():
                session.send(event)

        task = asyncio.get_running_loop().create_task(later())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return []
