"""The watchdog that never lets the voice menu's server strand a caller (issue 16 item 2): which
callers it follows from AMI events, when one counts as left waiting, and the health probe against
a real FastAGI server and against a port that accepts connections but never answers (a frozen
process). The drill through Asterisk is tests/live/test_agi_watchdog_live.py."""
from __future__ import annotations

import asyncio
import socket

from agi.server import FastAGIServer
from callcenter.agi_watchdog import MenuChannels, probe
from callcenter.ami.protocol import Message


def ev(name: str, uid: str = "1.1", **fields: str) -> Message:
    return Message.from_mapping({"Event": name, "Uniqueid": uid, "Channel": f"Local/12345@citizen-in-{uid};2", **fields})


AGI_START = {"Application": "AGI", "AppData": "agi://127.0.0.1:4573/ivr/main,1.1"}


def test_a_caller_counts_as_waiting_only_while_the_server_owes_the_next_command():
    menu = MenuChannels()
    menu.on_event(ev("Newexten", **AGI_START), now=0.0)
    assert menu.stalled(1.9, after=2.0) == []
    assert menu.stalled(2.0, after=2.0) == [("1.1", "Local/12345@citizen-in-1.1;2")], "no first command in 2 s"
    menu.on_event(ev("AGIExecStart", Command="GET DATA main_menu 5000 1"), now=2.5)
    assert menu.stalled(30.0, after=2.0) == [], "Asterisk is reading keys: not the server's fault"
    menu.on_event(ev("AGIExecEnd"), now=31.0)
    assert menu.stalled(32.9, after=2.0) == [] and menu.stalled(33.0, after=2.0) == [("1.1", "Local/12345@citizen-in-1.1;2")]


def test_only_the_voice_menu_agi_is_followed_and_a_caller_leaves_it_with_the_dialplan_or_a_hangup():
    menu = MenuChannels()
    menu.on_event(ev("Newexten", "2.1", Application="AGI", AppData="agi://127.0.0.1:4573/ivr/survey?key=k"), now=0.0)
    menu.on_event(ev("Newexten", "3.1", Application="Queue", AppData="hotline-12345"), now=0.0)
    assert menu.all() == []
    menu.on_event(ev("Newexten", "4.1", **AGI_START), now=0.0)
    menu.on_event(ev("Newexten", "5.1", **AGI_START), now=0.0)
    menu.on_event(ev("Newexten", "4.1", Application="GotoIf", AppData="0?route"), now=1.0)  # AGI returned
    menu.on_event(ev("Hangup", "5.1"), now=1.0)
    assert menu.all() == []


def test_the_probe_tells_a_live_server_from_one_that_accepts_but_never_answers():
    async def main() -> tuple[bool, bool, bool]:
        async def health(channel) -> None:
            await channel.set_variable("CALLCENTER_AGI_ALIVE", "1")

        server = FastAGIServer({"health": health}, "127.0.0.1", 0)
        await server.start()
        try:
            alive = await probe("127.0.0.1", server.port, timeout=2.0)
        finally:
            await server.stop()
        # a frozen process: the kernel still completes the connection, nobody reads or writes
        frozen = socket.socket()
        frozen.bind(("127.0.0.1", 0))
        frozen.listen(8)
        try:
            stuck = await probe("127.0.0.1", frozen.getsockname()[1], timeout=0.5)
        finally:
            frozen.close()
        gone = await probe("127.0.0.1", server.port, timeout=0.5)  # stopped: refused
        return alive, stuck, gone

    assert asyncio.run(main()) == (True, False, False)
