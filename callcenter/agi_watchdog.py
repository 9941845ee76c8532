"""Never strand a caller (issue 16 item 2): a watchdog outside the FastAGI process.

Asterisk waits for the FastAGI server's next command without a deadline. A server that was killed
is no danger: its sockets close, AGI returns and the dialplan queues the caller (reason
agi-unreachable / agi-incomplete). A server that stops answering while its sockets stay open — the
process frozen (SIGSTOP, a long GC pause) or its event loop blocked — leaves the caller in silence,
and nothing Asterisk offers moves them: a channel in AGI that is redirected or hung up waits, in
AGI's "dead" mode, until the script closes its socket (measured here: an AMI Redirect of such a
channel returns Success and the caller stays put).

So this watchdog runs as its own process (`callcenter agi watchdog`, callcenter-watchdog.service)
with its own AMI link and no database, and follows every caller in the voice menu's AGI from AMI
events (Newexten into AGI, AGIExecStart/End: whose turn it is). It probes the server every
`probe_every` seconds with a FastAGI session of the `health` script; after `dead_after` failed
probes in a row it marks each caller in the menu (IVR_QUEUE_REASON=agi-stalled) and kills the
server's process (SIGKILL, works on a frozen one; pid from the state dir's fastagi.pid): the sockets
close, every caller goes on to the operator queue, and systemd restarts the hotline (its restart
recovery completes the call records). A single call the server leaves waiting while it still
answers probes (a handler stuck on a database lock) is marked and redirected: the server is told
the caller left and the queue takes them as soon as that handler gives up the socket.
Why not Asterisk-side deadlines: AGI has none for a FastAGI answer, and a dialplan
TIMEOUT(absolute) would hang the caller up instead of queueing them.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from callcenter.ami.errors import AMIError

log = logging.getLogger("callcenter.watchdog")

MENU_SCRIPT = "/ivr/main"          # the AGI whose callers are moved (asterisk/extensions.conf, citizen-in)
HEALTH_SCRIPT = "health"           # agi/hotline.py answers it with one command
SAFE_PLACE = {"Context": "hotline-queue", "Exten": "s", "Priority": "1"}
STALLED = "agi-stalled"            # IVR_QUEUE_REASON of a moved caller (the queue's CallcenterQueued event)
EVENTS = ["Newexten", "AGIExecStart", "AGIExecEnd", "Hangup"]


@dataclass
class _InMenu:
    channel: str
    server_turn_since: float | None  # None: Asterisk is running a command (a prompt, a key read)


@dataclass
class MenuChannels:
    """Which callers are in the voice menu's AGI, and since when the server owes each a command."""

    by_id: dict[str, _InMenu] = field(default_factory=dict)

    def on_event(self, msg: Any, now: float) -> None:
        name = msg.get_first("Event")
        uid = msg.get_first("Uniqueid") or ""
        if name == "Newexten":
            if (msg.get_first("Application") or "").upper() == "AGI" and MENU_SCRIPT in (msg.get_first("AppData") or ""):
                self.by_id[uid] = _InMenu(msg.get_first("Channel") or "", now)
            else:
                self.by_id.pop(uid, None)  # the dialplan moved on: the AGI is over
        elif name == "Hangup":
            self.by_id.pop(uid, None)
        elif uid in self.by_id:
            self.by_id[uid].server_turn_since = None if name == "AGIExecStart" else now

    def track(self, uid: str, channel: str, now: float) -> None:
        """A caller found in the menu's AGI (at start-up or after a reconnect): the server's turn."""
        self.by_id.setdefault(uid, _InMenu(channel, now))

    def stalled(self, now: float, after: float) -> list[tuple[str, str]]:
        return [(uid, c.channel) for uid, c in self.by_id.items()
                if c.server_turn_since is not None and now - c.server_turn_since >= after]

    def all(self) -> list[tuple[str, str]]:
        return [(uid, c.channel) for uid, c in self.by_id.items()]

    def forget(self, uid: str) -> None:
        self.by_id.pop(uid, None)


async def probe(host: str, port: int, timeout: float) -> bool:
    """One FastAGI session of the health script: alive if the server sends a command in time."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port)
            try:
                writer.write((f"agi_network: yes\nagi_network_script: {HEALTH_SCRIPT}\n"
                              f"agi_request: agi://{host}:{port}/{HEALTH_SCRIPT}\n"
                              "agi_channel: watchdog\nagi_uniqueid: watchdog\n\n").encode())
                await writer.drain()
                line = await reader.readline()
                if line:
                    writer.write(b"200 result=1\n")
                    await writer.drain()
                return bool(line)
            finally:
                writer.close()
    except (TimeoutError, OSError):
        return False


class AgiWatchdog:
    """The watchdog's loop over an AMI client (callcenter.ami.client.AMIClient)."""

    def __init__(self, ami, host: str, port: int, *, stall_after: float = 2.0, probe_every: float = 1.0,
                 probe_timeout: float = 1.0, dead_after: int = 2, tick: float = 0.25,
                 pid_file: Path | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.ami, self.host, self.port = ami, host, port
        self.stall_after, self.probe_every, self.probe_timeout = stall_after, probe_every, probe_timeout
        self.dead_after, self.tick, self.clock = dead_after, tick, clock
        self.pid_file = pid_file
        self.menu = MenuChannels()
        self.failed_probes = 0
        self.moved = 0       # callers redirected (a stalled call of a server that still answers)
        self.kills = 0       # times the frozen server was killed

    @property
    def server_dead(self) -> bool:
        return self.failed_probes >= self.dead_after

    async def run(self) -> None:
        subscription = self.ami.subscribe(lambda msg: self.menu.on_event(msg, self.clock()), EVENTS)
        self.ami.on_connected(self._resync)
        if self.ami.connected:  # else the first login runs it
            await self._resync(self.ami, True)
        prober = asyncio.create_task(self._probe_forever())
        try:
            while True:
                await self.check()
                await asyncio.sleep(self.tick)
        finally:
            prober.cancel()
            self.ami.unsubscribe(subscription)

    async def check(self) -> int:
        """Act on what the server left waiting; returns how many callers were handed on."""
        if self.server_dead:
            waiting = self.menu.all()
            if waiting and await self._kill_server(waiting):
                return len(waiting)
            return 0
        stalled = self.menu.stalled(self.clock(), self.stall_after)
        for uid, channel in stalled:
            await self._move(uid, channel)
        return len(stalled)

    async def _mark(self, channel: str) -> None:
        await self.ami.send_action({"Action": "Setvar", "Channel": channel, "Variable": "IVR_QUEUE_REASON",
                                    "Value": STALLED})

    async def _kill_server(self, waiting: list[tuple[str, str]]) -> bool:
        pid = self._server_pid()
        if pid is None:
            log.error("voice menu server is frozen and %s names no process: %d caller(s) waiting",
                      self.pid_file, len(waiting))
            return False
        for uid, channel in waiting:
            try:
                await self._mark(channel)
            except (AMIError, OSError) as exc:  # link down: they still go to the queue, reason agi-*
                log.warning("could not mark call %s: %s", uid, type(exc).__name__)
            self.menu.forget(uid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.kills += 1
        self.failed_probes = 0  # the restarted server is probed afresh
        log.error("killed the frozen voice menu server (pid %d): %d caller(s) go to the operator queue",
                  pid, len(waiting))
        return True

    def _server_pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text().strip()) if self.pid_file else 0
        except (OSError, ValueError):
            return None
        return pid if pid > 1 and pid != os.getpid() else None

    async def _move(self, uid: str, channel: str) -> None:
        self.menu.forget(uid)
        try:
            await self._mark(channel)
            reply = await self.ami.send_action({"Action": "Redirect", "Channel": channel, **SAFE_PLACE})
        except (AMIError, OSError) as exc:  # link down: the resync after reconnecting finds the caller again
            log.warning("could not move call %s to the operator queue: %s", uid, type(exc).__name__)
            return
        if reply.success:
            self.moved += 1
            log.warning("call %s waited on the voice menu server: sent to the operator queue", uid)
        else:  # gone meanwhile (hung up): nothing to do
            log.info("call %s could not be moved: %s", uid, reply.get_first("Message"))

    async def _probe_forever(self) -> None:
        while True:
            alive = await probe(self.host, self.port, self.probe_timeout)
            if alive and self.server_dead:
                log.warning("voice menu server answers again on %s:%s", self.host, self.port)
            was_dead = self.server_dead
            self.failed_probes = 0 if alive else self.failed_probes + 1
            if self.server_dead and not was_dead:
                log.error("voice menu server on %s:%s does not answer (%d probes): callers go to the operator "
                          "queue", self.host, self.port, self.failed_probes)
            await asyncio.sleep(self.probe_every)

    async def _resync(self, client, first: bool) -> None:
        """Callers already in the menu's AGI when the link (re)connects: the server's turn from now."""
        try:
            _, events = await client.send_action_list({"Action": "CoreShowChannels"})
        except (AMIError, OSError) as exc:
            log.warning("could not list channels: %s", type(exc).__name__)
            return
        now = self.clock()
        for ev in events:
            if (ev.get_first("Application") or "").upper() == "AGI" and MENU_SCRIPT in (ev.get_first("ApplicationData") or ""):
                self.menu.track(ev.get_first("Uniqueid") or "", ev.get_first("Channel") or "", now)
