"""A protocol-level stand-in for Asterisk, for tests of AGI handlers.

It connects to a FastAGI server like Asterisk's AGI() does, sends a realistic
header block and answers each command, either scripted step by step
(``read_command`` / ``reply``) or through a ``responder`` function.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from urllib.parse import urlencode

__all__ = ["FakeAsterisk", "make_header", "default_responder"]


def make_header(
    script: str = "ivr/main",
    *,
    host: str = "127.0.0.1",
    query: Mapping[str, str] | None = None,
    args: tuple[str, ...] | list[str] = (),
    callerid: str = "13812345678",
    uniqueid: str = "1732512345.1",
    channel: str = "PJSIP/citizen-00000001",
    language: str = "zh",
    context: str = "citizen-in",
    extension: str = "12345",
    extra: Mapping[str, str] | None = None,
) -> bytes:
    """The header block Asterisk 22 sends for ``AGI(agi://host/script?query,args...)``."""
    network_script = script + ("?" + urlencode(query) if query else "")
    env = {
        "agi_network": "yes",
        "agi_network_script": network_script,
        "agi_request": f"agi://{host}/{network_script}",
        "agi_channel": channel,
        "agi_language": language,
        "agi_type": channel.split("/", 1)[0],
        "agi_uniqueid": uniqueid,
        "agi_version": "22.10.1",
        "agi_callerid": callerid,
        "agi_calleridname": "unknown",
        "agi_callingpres": "0",
        "agi_callingani2": "0",
        "agi_callington": "0",
        "agi_callingtns": "0",
        "agi_dnid": extension,
        "agi_rdnis": "unknown",
        "agi_context": context,
        "agi_extension": extension,
        "agi_priority": "2",
        "agi_enhanced": "0.0",
        "agi_accountcode": "",
        "agi_threadid": "140000000000000",
    }
    for i, value in enumerate(args, start=1):
        env[f"agi_arg_{i}"] = value
    env.update(extra or {})
    return "".join(f"{k}: {v}\n" for k, v in env.items()).encode() + b"\n"


def default_responder(command: str) -> str:
    """Answers like a live channel where nothing is pressed and every variable is unset."""
    upper = command.upper()
    if upper.startswith(("ANSWER", "SET VARIABLE", "VERBOSE", "HANGUP")):
        return "200 result=1"
    if upper.startswith("GET DATA"):
        return "200 result= (timeout)"
    if upper.startswith("GET FULL VARIABLE") and "READSTATUS" in upper:
        return "200 result=1 (TIMEOUT|)"  # after EXEC Read: nothing pressed (agi/driver.py _read_app)
    if upper.startswith(("STREAM FILE", "CONTROL STREAM FILE")):
        return "200 result=0 endpos=1600"
    if upper.startswith("RECORD FILE"):
        return "200 result=0 (timeout) endpos=8000"
    return "200 result=0"


def pressing(key: str = "1", linkedid: str = "1732512345.7", read_status: str = "OK"):
    """Answers like a live channel where the caller presses `key` at the first read (the menu's
    Read(): READSTATUS `read_status`; GET DATA: that key), prompts play to their end, variables are set."""
    def respond(command: str) -> str:
        upper = command.upper()
        if upper.startswith("GET VARIABLE"):
            return f"200 result=1 ({linkedid})"
        if upper.startswith("GET DATA"):
            return f"200 result={key}"
        if upper.startswith("GET FULL VARIABLE"):
            return f"200 result=1 ({read_status}|{key})"
        if upper.startswith("STREAM FILE"):
            return "200 result=0 endpos=160"
        if upper.startswith("SET VARIABLE"):
            return "200 result=1"
        return "200 result=0"
    return respond


class FakeAsterisk:
    """One emulated AGI() call to a FastAGI server on (host, port)."""

    def __init__(self, host: str, port: int, script: str = "ivr/main", **header_kwargs: object):
        self.host = host
        self.port = port
        self.header = make_header(script, **header_kwargs)  # type: ignore[arg-type]
        self.commands: list[str] = []
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self, send_header: bool = True) -> FakeAsterisk:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        if send_header:
            await self.send_raw(self.header)
        return self

    async def send_raw(self, data: bytes) -> None:
        assert self.writer is not None
        self.writer.write(data)
        await self.writer.drain()

    async def read_command(self, timeout: float = 5.0) -> str | None:
        """Next command line from the server; None when the server closed."""
        assert self.reader is not None
        try:
            raw = await asyncio.wait_for(self.reader.readline(), timeout)
        except ConnectionError:
            return None
        if not raw:
            return None
        command = raw.decode("utf-8", "surrogateescape").rstrip("\n")
        self.commands.append(command)
        return command

    async def reply(self, *lines: str) -> None:
        await self.send_raw("".join(line + "\n" for line in lines).encode("utf-8", "surrogateescape"))

    async def run(
        self,
        responder: Callable[[str], str | list[str]] | Mapping[str, str] | None = None,
        timeout: float = 10.0,
    ) -> list[str]:
        """Answer every command until the server closes; return all commands seen.

        ``responder`` is a function command -> reply line(s), or a mapping from
        command prefix to reply (longest prefix wins; default_responder otherwise).
        """
        respond = _as_responder(responder)

        async def loop() -> None:
            while True:
                command = await self.read_command(timeout)
                if command is None:
                    return
                answer = respond(command)
                await self.reply(*([answer] if isinstance(answer, str) else answer))

        await asyncio.wait_for(loop(), timeout)
        return self.commands

    async def closed_by_server(self, timeout: float = 5.0) -> bool:
        """True if the server closes the connection (EOF) within timeout."""
        assert self.reader is not None
        try:
            while True:
                data = await asyncio.wait_for(self.reader.read(65536), timeout)
                if not data:
                    return True
        except ConnectionError:
            return True
        except TimeoutError:
            return False

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def __aenter__(self) -> FakeAsterisk:
        return await self.connect()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


def _as_responder(responder: Callable[[str], str | list[str]] | Mapping[str, str] | None):
    if responder is None:
        return default_responder
    if callable(responder):
        return responder
    prefixes = sorted(responder.items(), key=lambda kv: -len(kv[0]))

    def by_prefix(command: str) -> str:
        for prefix, answer in prefixes:
            if command.upper().startswith(prefix.upper()):
                return answer
        return default_responder(command)

    return by_prefix
