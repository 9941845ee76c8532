"""The watchdog that never lets the voice menu's server strand a caller (issue 16 item 2): which
callers it follows from AMI events, when one counts as left waiting, and the health probe against
a real FastAGI server and against a port that accepts connections but never answers (a frozen
process). The drill through Asterisk is tests/live/test_agi_watchdog_live.py."""
from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time

import pytest

from agi.channel import RecordResult
from agi.driver import AGIDriver
from agi.server import FastAGIServer
from callcenter.agi_watchdog import RELEASE_KEY, STALLED, AgiWatchdog, MenuChannels, probe, process_alive
from callcenter.ami.protocol import Message


def ev(name: str, uid: str = "1.1", **fields: str) -> Message:
    return Message.from_mapping({"Event": name, "Uniqueid": uid, "Channel": _chan(uid), **fields})


def _chan(uid: str) -> str:
    return f"Local/12345@citizen-in-{uid};2"


AGI_START = {"Application": "AGI", "AppData": "agi://127.0.0.1:4573/ivr/main,1.1"}


def test_a_caller_counts_as_waiting_only_while_the_server_owes_the_next_command():
    menu = MenuChannels()
    menu.on_event(ev("Newexten", **AGI_START), now=0.0)
    assert menu.stalled(1.9, after=2.0) == []
    assert menu.stalled(2.0, after=2.0) == [("1.1", "Local/12345@citizen-in-1.1;2")], "no first command in 2 s"
    menu.on_event(ev("AGIExecStart", Command="GET DATA main_menu 5000 1"), now=2.5)
    assert menu.stalled(30.0, after=2.0) == [], "Asterisk is reading keys: not the server's fault"
    menu.on_event(ev("AGIExecEnd"), now=31.0)
    assert menu.stalled(32.9, after=2.0) == [] and menu.stalled(33.0, after=2.0) == [("1.1", _chan("1.1"))]


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


# -- callers of a dead server (issue 16 item 2: in the queue within 5 s of the server's failure) ------
# A command Asterisk runs without watching the AGI socket (the menu's Read(), RECORD FILE) would play
# to its end after the server died; the watchdog ends it with a key -- but only for an orphan, a caller
# whose server is gone: a live server must never get a key its caller did not press.

def test_only_orphans_in_a_running_command_get_the_release_key_once_per_command():
    menu = MenuChannels()
    for uid, at in (("1.1", 0.0), ("2.1", 1.0), ("3.1", 5.0)):
        menu.on_event(ev("Newexten", uid, **AGI_START), now=at)
        menu.on_event(ev("AGIExecStart", uid, Command="EXEC Read IVR_DIGITS,..."), now=at + 0.5)
    menu.on_event(ev("AGIExecEnd", "2.1"), now=2.0)  # 2.1: Asterisk waits on the (closed) socket: EOF ends it
    assert menu.orphan(entered_by=3.0) == 2, "3.1 began its session after the server was last seen alive"
    assert menu.to_release() == [("1.1", _chan("1.1"))]
    menu.mark_nudged("1.1")
    assert menu.to_release() == [], "one key per command"
    menu.on_event(ev("AGIExecEnd", "1.1"), now=6.0)
    menu.on_event(ev("AGIExecStart", "1.1", Command="RECORD FILE ..."), now=6.1)  # a command begun as it died
    assert menu.to_release() == [("1.1", _chan("1.1"))]
    assert menu.stalled(60.0, after=2.0) == [], "an orphan leaves by itself: never redirected"


class FakeAMI:
    def __init__(self) -> None:
        self.actions: list[dict] = []

    async def send_action(self, action, timeout=None):
        self.actions.append(dict(action))
        return Message.from_mapping({"Response": "Success"})

    def sent(self, name: str) -> list[dict]:
        return [a for a in self.actions if a["Action"] == name]


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def server_processes():
    """Stand-ins for the FastAGI server's process: real ones, so the watchdog's pid checks are real."""
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        procs.append(subprocess.Popen(["sleep", "60"]))
        return procs[-1]
    yield start
    for p in procs:
        p.kill()
        p.wait()


def _dog(tmp_path, clock) -> tuple[AgiWatchdog, FakeAMI]:
    ami = FakeAMI()
    return AgiWatchdog(ami, "127.0.0.1", 1, pid_file=tmp_path / "fastagi.pid", clock=clock), ami


def _enter(dog: AgiWatchdog, uid: str, now: float, command: str | None = "EXEC Read IVR_DIGITS,...") -> None:
    dog.menu.on_event(ev("Newexten", uid, **AGI_START), now=now)
    if command:
        dog.menu.on_event(ev("AGIExecStart", uid, Command=command), now=now)


def test_a_killed_server_s_callers_in_a_running_command_get_the_key_and_nobody_else(tmp_path, server_processes):
    clock = Clock()
    dog, ami = _dog(tmp_path, clock)
    server = server_processes()
    dog.pid_file.write_text(f"{server.pid}\n")
    _enter(dog, "1.1", clock.now)                  # in the menu's Read()
    _enter(dog, "2.1", clock.now, command=None)    # the server's turn
    asyncio.run(dog.check())
    assert ami.actions == [], "the server is alive: its callers are its own"

    server.kill()
    server.wait()
    clock.now += 0.25
    asyncio.run(dog.check())
    assert ami.sent("PlayDTMF") == [{"Action": "PlayDTMF", "Channel": _chan("1.1"), "Digit": RELEASE_KEY,
                                     "Receive": "true"}]
    assert ami.sent("Setvar") == [] and ami.sent("Redirect") == [], "the dialplan queues them (agi-incomplete)"
    asyncio.run(dog.check())
    assert len(ami.sent("PlayDTMF")) == 1 and dog.released == 1


def test_a_server_killed_and_restarted_between_two_looks_orphans_only_the_old_one_s_callers(tmp_path, server_processes):
    clock = Clock()
    dog, ami = _dog(tmp_path, clock)
    old = server_processes()
    dog.pid_file.write_text(f"{old.pid}\n")
    _enter(dog, "1.1", clock.now)
    asyncio.run(dog.check())
    old.kill()
    old.wait()
    new = server_processes()  # restarted, answering probes, before the watchdog looked again
    dog.pid_file.write_text(f"{new.pid}\n")
    clock.now += 0.25
    _enter(dog, "2.1", clock.now)                  # a session of the new server
    asyncio.run(dog.check())
    assert [a["Channel"] for a in ami.sent("PlayDTMF")] == [_chan("1.1")]
    clock.now += 0.25
    _enter(dog, "3.1", clock.now)
    asyncio.run(dog.check())
    assert [a["Channel"] for a in ami.sent("PlayDTMF")] == [_chan("1.1")], "the new server is alive"


def test_a_frozen_server_is_killed_first_then_its_callers_in_a_running_command_get_the_key(tmp_path, server_processes):
    clock = Clock()
    dog, ami = _dog(tmp_path, clock)
    server = server_processes()
    dog.pid_file.write_text(f"{server.pid}\n")
    _enter(dog, "1.1", clock.now)
    _enter(dog, "2.1", clock.now, command=None)
    dog.failed_probes = dog.dead_after  # the probes found it frozen
    assert asyncio.run(dog.check()) == 2
    assert server.wait(5) == -signal.SIGKILL and dog.kills == 1
    assert [a["Action"] for a in ami.actions] == ["Setvar", "Setvar", "PlayDTMF"]  # marked, killed, released
    assert {a["Value"] for a in ami.sent("Setvar")} == {STALLED}
    assert ami.sent("PlayDTMF")[0]["Channel"] == _chan("1.1")


def test_without_a_live_process_to_kill_failed_probes_release_nobody(tmp_path):
    """Probes fail and the pid file names no live process (another host, a stale file): the server may
    still hold sessions (a graceful stop), so no key."""
    clock = Clock()
    dog, ami = _dog(tmp_path, clock)
    _enter(dog, "1.1", clock.now)
    dog.failed_probes = dog.dead_after
    assert asyncio.run(dog.check()) == 0 and ami.actions == []


def test_a_zombie_server_counts_as_dead():
    """Killed but not yet reaped by its parent (systemd, a test): its sockets are closed already."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        assert process_alive(proc.pid)
        proc.send_signal(signal.SIGKILL)
        for _ in range(200):
            if not process_alive(proc.pid):
                break
            time.sleep(0.01)
        assert not process_alive(proc.pid)
    finally:
        proc.wait()


def test_every_command_the_menu_runs_without_watching_the_socket_ends_on_the_release_key():
    """Asterisk does not watch the AGI socket during EXEC Read, RECORD FILE and SAY (measured: a killed
    server's caller hears them out: the main menu 20 s, a case number 4-5 s). Each must end on the
    release key, a say callers cannot skip too, or an orphan hears it out."""
    class Channel:  # what the driver asks Asterisk for
        command_timeout = 5.0

        def __init__(self) -> None:
            self.calls: list[tuple[str, str]] = []

        async def say_digits(self, s, escape):
            self.calls.append(("SAY DIGITS", escape))

        async def say_number(self, n, escape):
            self.calls.append(("SAY NUMBER", escape))

        async def record_file(self, path, fmt, escape, *rest):
            self.calls.append(("RECORD FILE", escape))
            return RecordResult("dtmf", "#", 8000)

        async def exec_raw(self, app, data, timeout=None):
            self.calls.append((f"EXEC {app}", data.split(",")[3]))  # Read()'s options: none, '#' ends it

        async def get_full_variable(self, expression):
            return "OK|1"

        async def user_event(self, name, **fields):
            pass

    async def main(channel: Channel) -> None:
        driver = AGIDriver(channel, recordings_dir="/r", uniqueid="1.1")
        for interruptible in (False, True):
            await driver.say_digits("20260304123456", interruptible)
            await driver.say_number(3, interruptible)
        await driver.record("message", 120)
        await driver.read_digits(["a", "b", "c"], 1, 5.0)

    channel = Channel()
    asyncio.run(main(channel))
    assert [c for c, _ in channel.calls] == ["SAY DIGITS", "SAY NUMBER"] * 2 + ["RECORD FILE", "EXEC Read"]
    assert all(RELEASE_KEY in escape for c, escape in channel.calls if c != "EXEC Read"), channel.calls
    assert ("EXEC Read", "") in channel.calls and RELEASE_KEY == "#"  # Read()'s own terminator
