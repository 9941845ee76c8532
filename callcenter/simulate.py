"""A simulated citizen: dial 12345 over AMI and press keys when the voice menu asks.

The citizen is a Local channel (the Asterisk testsuite's technique): its `;1` half sits in
the `test-citizen` context playing silence (so media flows and DTMF is never stuck), its
`;2` half runs the hotline's dialplan. Keys are sent with PlayDTMF onto `;1` when the menu
announces it is waiting for input (the AGI driver's `CallcenterAwaitInput` UserEvent).
"""
from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from callcenter.ami.client import AMIClient

# Let the menu's GET DATA start playing before the first key, so no key falls between commands.
KEY_DELAY_S = 0.35
DTMF_DURATION_MS = 120


@dataclass
class SimulatedCall:
    uniqueid: str                      # the menu side (`;2`): the call record's uniqueid
    caller: str
    prompts_for_input: list[str] = field(default_factory=list)  # node ids that asked for keys
    keys_sent: list[str] = field(default_factory=list)
    queued: bool = False
    queue_reason: str | None = None
    hung_up: bool = False
    events: list[dict] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)  # AGI commands the menu ran, in order (AGIExecStart)
    seconds: float = 0.0


async def simulate_call(
    ami: AMIClient,
    keys: Sequence[str] = (),
    *,
    caller: str = "13800000000",
    exten: str = "12345",
    context: str = "citizen-in",
    timeout: float = 90.0,
    hang_up_when_queued: bool = True,
    key_delay: float = KEY_DELAY_S,
    talking: bool = False,
    speak_seconds: float = 3.0,
    barge: Mapping[str, str] | None = None,
) -> SimulatedCall:
    """Place one call. `keys[i]` is what the citizen types at the i-th input prompt ("" = stay silent).
    `barge`: AGI command prefix -> keys typed once when the menu starts such a command, e.g.
    {"SAY DIGITS": "1"} presses 1 while a number is being read out (a key that interrupts)."""
    base = f"sim-{uuid.uuid4().hex[:12]}"
    result = SimulatedCall(uniqueid=f"{base};2", caller=caller)
    plan = list(keys)
    barge_left = dict(barge or {})
    done = asyncio.Event()
    local_one: dict[str, str] = {}
    pending_keys: asyncio.Queue[str] = asyncio.Queue()

    def mine(msg) -> bool:
        ids = set(msg.get_all("Uniqueid")) | set(msg.get_all("Linkedid"))
        return result.uniqueid in ids or base in ids

    def on_event(msg) -> None:
        if not mine(msg):
            return
        name = msg.get_first("Event") or ""
        user_event = msg.get_first("UserEvent") or ""
        result.events.append({"event": name, "user_event": user_event, "node": msg.get_first("Node")})
        if name == "Newchannel" and msg.get_first("Uniqueid") == base:
            local_one["channel"] = msg.get_first("Channel")
        elif name == "AGIExecStart":
            command = msg.get_first("Command") or ""
            result.commands.append(command)
            for prefix in [p for p in barge_left if command.startswith(p)]:
                pending_keys.put_nowait(barge_left.pop(prefix))
        elif user_event == "CallcenterAwaitInput":
            result.prompts_for_input.append(msg.get_first("Node") or "")
            pending_keys.put_nowait(plan.pop(0) if plan else "")
        elif user_event == "CallcenterRecording":
            # speak (the talking leg plays audio all along), then end the message with '#'
            pending_keys.put_nowait(f"@{speak_seconds}#")
        elif user_event == "CallcenterQueued" or name == "QueueCallerJoin":
            result.queued = True
            result.queue_reason = result.queue_reason or msg.get_first("Reason")
            if hang_up_when_queued:
                done.set()
        elif name == "Hangup" and msg.get_first("Uniqueid") in (base, result.uniqueid):
            result.hung_up = True
            done.set()

    sub = ami.subscribe(on_event, ["Newchannel", "UserEvent", "QueueCallerJoin", "Hangup", "AGIExecStart"])
    started = time.monotonic()

    async def press_keys() -> None:
        while True:
            keys_now = await pending_keys.get()
            if not keys_now:
                continue
            if keys_now.startswith("@"):
                wait, keys_now = keys_now[1:].split("#", 1)[0], "#"
                await asyncio.sleep(float(wait))
            await asyncio.sleep(key_delay)
            channel = local_one.get("channel")
            for digit in keys_now:
                await ami.send_action({"Action": "PlayDTMF", "Channel": channel, "Digit": digit,
                                       "Duration": DTMF_DURATION_MS})
                result.keys_sent.append(digit)
                await asyncio.sleep(0.05)

    presser = asyncio.create_task(press_keys())
    try:
        await ami.originate(f"Local/{exten}@{context}", context="test-citizen-talking" if talking else "test-citizen",
                            exten="s", priority=1,
                            caller_id=f'"citizen" <{caller}>', channel_id=base, dial_timeout=10,
                            timeout=15)
        await asyncio.wait_for(done.wait(), timeout)
    finally:
        presser.cancel()
        ami.unsubscribe(sub)
        result.seconds = time.monotonic() - started
        if not result.hung_up and "channel" in local_one:
            try:
                await ami.send_action({"Action": "Hangup", "Channel": local_one["channel"]})
            except Exception:  # already gone
                pass
    return result
