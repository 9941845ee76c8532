"""Never strand a caller (issue 16 item 2): every caller in the voice menu reaches the operator queue
within 5 s of the FastAGI server's failure. A watchdog outside the FastAGI process.

Asterisk waits for the FastAGI server's next command without a deadline. When the server dies its
sockets close, and Asterisk notices at once while it waits for the next command or runs STREAM FILE
or GET DATA (these watch the socket): AGI returns and the dialplan queues the caller (agi-unreachable
/ agi-incomplete). Not during EXEC Read (the main menu's six prompts, ~20 s, one command), RECORD
FILE (up to 120 s) or SAY DIGITS/NUMBER: those play to their end first (measured: 16.5 s, 19.5 s
and up to 5 s after the kill). A server that stops answering while its sockets stay open — the process frozen
(SIGSTOP, a long GC pause) or its event loop blocked — leaves the caller in silence, and nothing
Asterisk offers moves them: a channel in AGI that is redirected or hung up waits, in AGI's "dead"
mode, until the script closes its socket (measured here: an AMI Redirect of such a channel returns
Success and the caller stays put).

So this watchdog runs as its own process (`callcenter agi watchdog`, callcenter-watchdog.service)
with its own AMI link and no database, and follows every caller in the voice menu's AGI from AMI
events (Newexten into AGI, AGIExecStart/End: whose turn it is). It probes the server every
`probe_every` seconds (start to start) with a FastAGI session of the `health` script; after
`dead_after` failed probes in a row it marks each caller in the menu (IVR_QUEUE_REASON=agi-stalled)
and kills the server's process (SIGKILL, works on a frozen one; pid from the state dir's
fastagi.pid): the sockets close, every caller goes on to the operator queue, and systemd restarts
the hotline (its restart recovery completes the call records). It also watches that process every
`tick`: once the one seen alive is gone (killed, crashed, a zombie; maybe restarted already, when
the new one answers probes but the old sessions are dead all the same), the callers whose session
began while it was the server are orphans -- as are all callers of a server it killed. An orphan in
a command Asterisk runs without watching the socket gets the release key (AMI PlayDTMF '#' with
Receive: the caller's own key as Asterisk sees it): '#' ends Read() (its terminator), RECORD FILE
(its escape key) and SAY (a say callers cannot skip still stops on it: agi/driver.py RELEASE_KEY; a
14-digit case number would take 4-5 s); AGI then finds the socket closed and the dialplan queues the
caller. Only orphans get it, so a live server never sees a key its caller did not press; with no
live process named by the pid file (another host) nobody gets it.
A single call the server leaves waiting while it still answers probes (a handler stuck on a
database lock) is marked and redirected: the server is told the caller left and the queue takes
them as soon as that handler gives up the socket.
Why not Asterisk-side deadlines: AGI has none for a FastAGI answer, and a dialplan
TIMEOUT(absolute) would hang the caller up instead of queueing them. Why a key and not a Redirect of
orphans: a Redirect racing the caller's own way to the queue would queue them twice; a stray '#' in
the queue does nothing.
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

from agi.driver import RELEASE_KEY
from callcenter.ami.errors import AMIError

log = logging.getLogger("callcenter.watchdog")

MENU_SCRIPT = "/ivr/main"          # the AGI whose callers are moved (asterisk/extensions.conf, citizen-in)
HEALTH_SCRIPT = "health"           # agi/hotline.py answers it with one command
SAFE_PLACE = {"Context": "hotline-queue", "Exten": "s", "Priority": "1"}
STALLED = "agi-stalled"            # IVR_QUEUE_REASON of a moved caller (the queue's CallcenterQueued event)
EVENTS = ["Newexten", "AGIExecStart", "AGIExecEnd", "Hangup"]
# RELEASE_KEY, received on an orphan's channel (AMI PlayDTMF, Receive: emulated as the caller's),
# ends what the menu runs without watching the AGI socket (agi/driver.py): EXEC Read, RECORD FILE,
# SAY. STREAM FILE and GET DATA end by themselves once the socket closes.


def _menu_agi(application: str | None, data: str | None) -> bool:
    return (application or "").upper() == "AGI" and MENU_SCRIPT in (data or "")


@dataclass
class _InMenu:
    channel: str
    server_turn_since: float | None  # None: Asterisk is running a command (a prompt, a key read)
    entered: float                   # when its AGI session began (or it was found in the menu)
    orphaned: bool = False           # its server is dead: Asterisk must be made to notice
    nudged: bool = False             # the release key was sent for the command now running


@dataclass
class MenuChannels:
    """Which callers are in the voice menu's AGI, and since when the server owes each a command."""

    by_id: dict[str, _InMenu] = field(default_factory=dict)

    def on_event(self, msg: Any, now: float) -> None:
        name = msg.get_first("Event")
        uid = msg.get_first("Uniqueid") or ""
        if name == "Newexten":
            if _menu_agi(msg.get_first("Application"), msg.get_first("AppData")):
                self.by_id[uid] = _InMenu(msg.get_first("Channel") or "", now, now)
            else:
                self.by_id.pop(uid, None)  # the dialplan moved on: the AGI is over
        elif name == "Hangup":
            self.by_id.pop(uid, None)
        elif uid in self.by_id:
            c = self.by_id[uid]
            c.server_turn_since = None if name == "AGIExecStart" else now
            c.nudged = False

    def track(self, uid: str, channel: str, now: float) -> None:
        """A caller found in the menu's AGI (at start-up or after a reconnect): the server's turn."""
        self.by_id.setdefault(uid, _InMenu(channel, now, now))

    def stalled(self, now: float, after: float) -> list[tuple[str, str]]:
        return [(uid, c.channel) for uid, c in self.by_id.items()
                if not c.orphaned and c.server_turn_since is not None and now - c.server_turn_since >= after]

    def all(self) -> list[tuple[str, str]]:
        """Callers in the menu but orphans (whose server is known dead already)."""
        return [(uid, c.channel) for uid, c in self.by_id.items() if not c.orphaned]

    def orphan(self, entered_by: float | None = None) -> int:
        """The server of the callers whose session began by `entered_by` (all: None) is dead."""
        found = [c for c in self.by_id.values() if not c.orphaned and (entered_by is None or c.entered <= entered_by)]
        for c in found:
            c.orphaned = True
        return len(found)

    def to_release(self) -> list[tuple[str, str]]:
        """Orphans whose command Asterisk is still running and has not been sent the key yet. (An
        orphan in the server's turn needs nothing: Asterisk is reading the closed socket.)"""
        return [(uid, c.channel) for uid, c in self.by_id.items()
                if c.orphaned and c.server_turn_since is None and not c.nudged]

    def mark_nudged(self, uid: str) -> None:
        if uid in self.by_id:
            self.by_id[uid].nudged = True

    def forget(self, uid: str) -> None:
        self.by_id.pop(uid, None)


def process_alive(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie is not: its sockets are closed). In doubt: alive."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it exists
        pass
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[:1]
    except OSError:  # no /proc to tell a zombie by (or it just went: the next look sees it)
        return True
    return state not in (["Z"], ["X"])


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
        self.released = 0    # release keys sent to orphans (callers of a dead server)
        self._pid: int | None = None    # the server's process, last seen alive ...
        self._pid_seen_at = 0.0         # ... then
        self._told_unkillable = False   # logged once per outage

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
        self._watch_process()
        handed_on = 0
        if self.server_dead:
            waiting = self.menu.all()
            if waiting and await self._kill_server(waiting):
                handed_on = len(waiting)
        else:
            stalled = self.menu.stalled(self.clock(), self.stall_after)
            for uid, channel in stalled:
                await self._move(uid, channel)
            handed_on = len(stalled)
        await self._release_orphans()
        return handed_on

    def _watch_process(self) -> None:
        """The server's process as the pid file names it. Once the one seen alive is gone (killed,
        crashed -- maybe restarted already: the new one answers probes, yet the sessions the old one
        held are dead), the callers whose session began while it was the server are orphans."""
        now = self.clock()  # before the look: a caller who entered by then had this server
        if self._pid is not None and not process_alive(self._pid):
            orphans = self.menu.orphan(entered_by=self._pid_seen_at)
            log.error("voice menu server (pid %d) is gone: %d caller(s) in its menu go to the operator queue",
                      self._pid, orphans)
            self._pid = None
        pid = self._server_pid()
        if pid is not None and process_alive(pid):
            self._pid, self._pid_seen_at = pid, now

    async def _release_orphans(self) -> None:
        """Orphans in a command Asterisk runs without watching the AGI socket (the menu's Read, a
        recording) would hear it to its end (up to the whole menu, 20 s): the release key ends it,
        AGI finds the socket closed and the dialplan queues the caller (agi-incomplete, or the
        reason marked). Only orphans get it: a live server never sees a key its caller did not press."""
        for uid, channel in self.menu.to_release():
            try:
                reply = await self.ami.send_action({"Action": "PlayDTMF", "Channel": channel, "Digit": RELEASE_KEY,
                                                    "Receive": "true"})
            except (AMIError, OSError) as exc:  # link down: tried again next tick
                log.warning("could not release call %s: %s", uid, type(exc).__name__)
                continue
            self.menu.mark_nudged(uid)
            if reply.success:
                self.released += 1
                log.warning("call %s: its menu server is gone, its prompt ended: to the operator queue", uid)

    async def _mark(self, channel: str) -> None:
        await self.ami.send_action({"Action": "Setvar", "Channel": channel, "Variable": "IVR_QUEUE_REASON",
                                    "Value": STALLED})

    async def _kill_server(self, waiting: list[tuple[str, str]]) -> bool:
        pid = self._server_pid()
        if pid is None or not process_alive(pid):  # gone already: its callers are orphans (_watch_process)
            if not self._told_unkillable:
                self._told_unkillable = True
                log.error("voice menu server does not answer and %s names no live process: %d caller(s) waiting",
                          self.pid_file, len(waiting))
            return False
        for uid, channel in waiting:
            try:
                await self._mark(channel)
            except (AMIError, OSError) as exc:  # link down: they still go to the queue, reason agi-*
                log.warning("could not mark call %s: %s", uid, type(exc).__name__)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.menu.orphan()  # the sockets close with the process: a prompt still playing gets the key
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
            started = self.clock()
            alive = await probe(self.host, self.port, self.probe_timeout)
            if alive and self.server_dead:
                log.warning("voice menu server answers again on %s:%s", self.host, self.port)
            was_dead = self.server_dead
            self.failed_probes = 0 if alive else self.failed_probes + 1
            self._told_unkillable = self._told_unkillable and not alive
            if self.server_dead and not was_dead:
                log.error("voice menu server on %s:%s does not answer (%d probes): callers go to the operator "
                          "queue", self.host, self.port, self.failed_probes)
            # start to start: a probe that timed out is followed at once (a frozen server is known
            # probe_every + dead_after * probe_timeout after its last answer, at worst)
            await asyncio.sleep(max(0.0, self.probe_every - (self.clock() - started)))

    async def _resync(self, client, first: bool) -> None:
        """Callers already in the menu's AGI when the link (re)connects: the server's turn from now."""
        try:
            _, events = await client.send_action_list({"Action": "CoreShowChannels"})
        except (AMIError, OSError) as exc:
            log.warning("could not list channels: %s", type(exc).__name__)
            return
        now = self.clock()
        for ev in events:
            if _menu_agi(ev.get_first("Application"), ev.get_first("ApplicationData")):
                self.menu.track(ev.get_first("Uniqueid") or "", ev.get_first("Channel") or "", now)
