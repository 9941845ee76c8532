"""What Asterisk saw of the SIP load benchmark's calls (benchmarks/sip_load.py), from AMI events with
Asterisk's own timestamps (manager.conf timestampevents): per trunk channel its caller, answer, prompt
starts, keys, queue arrival and reason, hang-up, and the RTP statistics its hangup handler reports
([trunk-hangup] in asterisk/extensions.conf).

A prompt starts at an AGI command that plays (STREAM FILE, SAY ..., GET DATA, EXEC Read/Playback: our
menu) or a Newexten of Read/Playback/SayDigits (the pure-dialplan menu). Latencies:
- first prompt: answer (Newstate Up) -> the first prompt start;
- after a key: a key's DTMFEnd -> the next prompt start, when no other key came between (inside a
  typed case number only the last digit has a response).
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field

PROMPT_COMMANDS = ("STREAM FILE", "CONTROL STREAM FILE", "SAY ", "GET DATA", "GET OPTION", "EXEC Read",
                   "EXEC Playback", "EXEC Background")
PROMPT_APPS = {"Read", "Playback", "SayDigits", "SayNumber", "Background"}
TRUNKS = {"PJSIP/trunk-": "ours", "PJSIP/bench-trunk-": "dialplan"}
EVENT_FILTERS = ("Event: Newchannel", "Event: Newstate", "Event: Newexten", "Event: AGIExecStart",
                 "Event: DTMFEnd", "Event: UserEvent", "Event: Hangup")


@dataclass
class TrunkCall:
    uniqueid: str
    variant: str
    caller: str
    created: float
    answered: float | None = None
    prompts: list[float] = field(default_factory=list)
    keys: list[tuple[float, str]] = field(default_factory=list)
    queued: float | None = None
    reason: str = ""
    ended: float | None = None
    qos: dict[str, str] = field(default_factory=dict)

    @property
    def in_menu(self) -> bool:
        return self.answered is not None and self.queued is None and self.ended is None

    def first_prompt_ms(self) -> float | None:
        if self.answered is None:
            return None
        after = [p for p in self.prompts if p >= self.answered]
        return (after[0] - self.answered) * 1000 if after else None

    def key_response_ms(self) -> list[float]:
        out = []
        for i, (at, _) in enumerate(self.keys):
            next_key = self.keys[i + 1][0] if i + 1 < len(self.keys) else float("inf")
            after = [p for p in self.prompts if at <= p < next_key]
            if after:
                out.append((after[0] - at) * 1000)
        return out

    def rtp(self) -> tuple[int, int, float] | None:
        """(packets received, packets lost, receive jitter in ms) as Asterisk counted them.

        Names in CHANNEL(rtcp,all) (res_rtp_asterisk ast_rtp_get_stat): `lp` is Asterisk's own count
        of the caller's packets lost (as of its last RTCP report, every 5 s); `txjitter` is ITS
        measure of the jitter of the stream it receives (rtp->rxjitter, seconds), while `rxjitter` is
        what the far end reported by RTCP (SIPp sends none: 0)."""
        if not self.qos:
            return None
        try:
            return (int(self.qos.get("rxcount", "0")), max(0, int(self.qos.get("lp", "0"))),
                    float(self.qos.get("txjitter", "0")) * 1000)
        except ValueError:
            return None


class TrunkCalls:
    """AMI session (raw asyncio) collecting TrunkCall records; `calls` by uniqueid. A subclass may
    follow more (EVENT_CLASSES, FILTERS, on_event): the failure drills (tests/live/drills.py)."""

    EVENT_CLASSES = "call,user,dialplan,agi,dtmf"
    FILTERS = EVENT_FILTERS

    def __init__(self) -> None:
        self.calls: dict[str, TrunkCall] = {}
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task | None = None
        self._replies: dict[str, asyncio.Future] = {}
        self._n = 0
        self.events = 0

    async def connect(self, host: str, port: int, username: str, secret: str) -> None:
        self.reader, self.writer = await asyncio.open_connection(host, port, limit=1 << 20)
        await asyncio.wait_for(self.reader.readline(), 10)
        self._task = asyncio.create_task(self._read_loop())
        reply = await self.action("Login", Username=username, Secret=secret, Events=self.EVENT_CLASSES)
        if reply.get("Response") != "Success":
            raise RuntimeError(f"AMI login failed: {reply.get('Message')}")
        for pattern in self.FILTERS:  # nothing else crosses the socket (VarSet, CEL, ...)
            await self.action("Filter", Operation="Add", Filter=pattern)

    async def action(self, name: str, **fields: str) -> dict[str, str]:
        self._n += 1
        action_id = f"sip-load-{os.getpid()}-{self._n}"
        fut = asyncio.get_running_loop().create_future()
        self._replies[action_id] = fut
        lines = [f"Action: {name}", f"ActionID: {action_id}"] + [f"{k}: {v}" for k, v in fields.items()]
        assert self.writer is not None
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            return await asyncio.wait_for(fut, 10)
        finally:
            self._replies.pop(action_id, None)

    async def close(self) -> None:
        if self.writer is not None:
            with contextlib.suppress(Exception):
                await self.action("Logoff")
            self.writer.close()
        if self._task is not None:
            self._task.cancel()

    async def _read_loop(self) -> None:
        assert self.reader is not None
        while True:
            try:
                raw = await self.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            msg: dict[str, str] = {}
            for line in raw.decode("utf-8", "replace").split("\r\n"):
                key, sep, value = line.partition(": ")
                if sep:
                    msg.setdefault(key, value)
            if "Event" not in msg:
                fut = self._replies.get(msg.get("ActionID", ""))
                if fut is not None and not fut.done():
                    fut.set_result(msg)
                continue
            self.events += 1
            self.on_event(msg)

    def on_event(self, msg: dict[str, str]) -> None:
        event, uid = msg["Event"], msg.get("Uniqueid", "")
        try:
            at = float(msg.get("Timestamp") or time.time())
        except ValueError:
            at = time.time()
        if event == "Newchannel":
            channel = msg.get("Channel", "")
            for prefix, variant in TRUNKS.items():
                if channel.startswith(prefix):
                    self.calls[uid] = TrunkCall(uid, variant, msg.get("CallerIDNum", ""), at)
            return
        call = self.calls.get(uid)
        if call is None:
            return
        if event == "Newstate" and msg.get("ChannelStateDesc") == "Up" and call.answered is None:
            call.answered = at
        elif event == "AGIExecStart" and msg.get("Command", "").startswith(PROMPT_COMMANDS):
            call.prompts.append(at)
        elif event == "Newexten" and msg.get("Application") in PROMPT_APPS:
            call.prompts.append(at)
        elif event == "DTMFEnd" and msg.get("Direction") == "Received":
            call.keys.append((at, msg.get("Digit", "")))
        elif event == "UserEvent" and msg.get("UserEvent") == "CallcenterQueued" and call.queued is None:
            call.queued, call.reason = at, msg.get("Reason", "")
        elif event == "UserEvent" and msg.get("UserEvent") == "CallcenterRtpQuality":
            call.qos = dict(p.split("=", 1) for p in msg.get("Qos", "").split(";") if "=" in p)
        elif event == "Hangup":
            call.ended = at

    def live(self, variant: str) -> tuple[int, int]:
        """(calls in progress, of them in the menu) of a variant now."""
        mine = [c for c in self.calls.values() if c.variant == variant and c.ended is None]
        return len(mine), sum(1 for c in mine if c.in_menu)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]
