"""Channel state: what Asterisk is carrying right now (channels, bridges, the 12345 queue), kept
from AMI events through one table, event name -> handler, and rebuilt from Asterisk's own lists
after every login. Each change is published (``publish(topic, event)``); nothing is written here.
"""
from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from callcenter.ami.protocol import Message
from callcenter.callcontrol.cel import parse_ami_time
from callcenter.pbx.names import operator_of_channel, operator_of_interface
from ticketing.privacy import mask_phone

QUEUE = "hotline-12345"

# Queue member device states (app_queue's Status values = ast_device_state)
_FREE_STATES = {1}  # NOT_INUSE
_BUSY_STATES = {2, 3, 6, 7, 8}  # INUSE, BUSY, RINGING, RINGINUSE, ONHOLD

Publish = Callable[[str, dict[str, Any]], None]


def parse_seconds(value: str | None) -> float:
    """An AMI duration header (``HoldTime``, ``Wait``...); 0 when absent or not a number."""
    try:
        return float(value or 0)
    except ValueError:
        return 0.0


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ChannelState:
    uniqueid: str
    linkedid: str
    name: str
    state: str = ""  # ChannelStateDesc: Down, Ring, Ringing, Up, ...
    caller_number: str = ""
    connected_number: str = ""
    context: str = ""
    exten: str = ""
    bridge_id: str | None = None
    on_hold: bool = False
    created_at: datetime = field(default_factory=_now)
    answered_at: datetime | None = None
    hungup_at: datetime | None = None

    @property
    def operator(self) -> str | None:
        return operator_of_channel(self.name)

    def public(self) -> dict[str, Any]:
        """For feeds and the API: numbers masked (the screen-pop carries the caller's number on purpose)."""
        return {
            "uniqueid": self.uniqueid, "linkedid": self.linkedid, "channel": self.name, "state": self.state,
            "operator": self.operator, "bridge_id": self.bridge_id, "on_hold": self.on_hold,
            "caller_number": mask_phone(self.caller_number), "connected_number": mask_phone(self.connected_number),
            "created_at": self.created_at.isoformat(),
            "answered_at": self.answered_at.isoformat() if self.answered_at else None,
        }


@dataclass
class BridgeState:
    bridge_id: str
    bridge_type: str = ""
    technology: str = ""
    channels: set[str] = field(default_factory=set)  # uniqueids

    @property
    def is_conference(self) -> bool:
        return self.technology == "softmix"


@dataclass
class QueueCaller:
    uniqueid: str
    linkedid: str
    channel: str
    caller_number: str
    joined_at: float  # epoch seconds
    position: int = 0


@dataclass
class QueueMember:
    interface: str  # PJSIP/op8001
    name: str = ""
    status: int = 0  # device state
    paused: bool = False
    paused_reason: str = ""
    in_call: bool = False
    calls_taken: int = 0
    wrap_up_until: float | None = None  # epoch seconds: after-call work ends (callcontrol/wrapup.py)

    @property
    def extension(self) -> str | None:
        return operator_of_interface(self.interface)

    @property
    def availability(self) -> str:
        """free | busy | paused | unavailable (logged in, phone not reachable)."""
        if self.in_call or self.status in _BUSY_STATES:
            return "busy"
        if self.paused:
            return "paused"
        if self.status in _FREE_STATES:
            return "free"
        return "unavailable"

    def public(self) -> dict[str, Any]:
        return {"interface": self.interface, "extension": self.extension, "name": self.name,
                "state": self.availability, "paused": self.paused, "paused_reason": self.paused_reason,
                "in_call": self.in_call, "calls_taken": self.calls_taken,
                "wrap_up_until": self.wrap_up_until if self.paused_reason == "after_call_work" else None}


@dataclass
class QueueState:
    name: str
    callers: dict[str, QueueCaller] = field(default_factory=dict)
    members: dict[str, QueueMember] = field(default_factory=dict)

    def snapshot(self, now: float | None = None) -> dict[str, Any]:
        now = time.time() if now is None else now
        members = sorted(self.members.values(), key=lambda m: m.interface)
        counts = collections.Counter(m.availability for m in members)
        waits = [max(0.0, now - c.joined_at) for c in self.callers.values()]
        return {
            "queue": self.name,
            "callers_waiting": len(self.callers),
            "longest_wait_seconds": round(max(waits), 1) if waits else 0.0,
            "operators": {k: counts.get(k, 0) for k in ("free", "busy", "paused", "unavailable")},
            "members": [m.public() for m in members],
            "callers": [{"uniqueid": c.uniqueid, "position": c.position, "caller_number": mask_phone(c.caller_number),
                         "waiting_seconds": round(max(0.0, now - c.joined_at), 1)}
                        for c in sorted(self.callers.values(), key=lambda c: (c.position, c.joined_at))],
        }


class LiveState:
    """The channels, bridges and queue of one Asterisk, as its AMI events describe them.

    ``publish(topic, event)`` gets every channel and member change; ``queue_changed()`` is called
    whenever the queue changed (the link publishes a snapshot that also carries the link's state).
    """

    def __init__(self, queue_name: str, publish: Publish, queue_changed: Callable[[], None]) -> None:
        self.queue_name = queue_name
        self.publish = publish
        self.queue_changed = queue_changed
        self.channels: dict[str, ChannelState] = {}
        self.bridges: dict[str, BridgeState] = {}
        self.queue = QueueState(queue_name)
        # recently hung-up legs, so the API can tell "hung up" (410) from "never existed" (404)
        self.gone: collections.OrderedDict[str, ChannelState] = collections.OrderedDict()
        self._gone_limit = 5000

    def apply(self, name: str, msg: Message) -> None:
        """Apply one AMI event (``name`` lower-cased); events without a handler change nothing."""
        handler = _HANDLERS.get(name)
        if handler is not None:
            handler(self, name, msg)

    # -- channels -------------------------------------------------------------------------------
    def _new_channel(self, name: str, msg: Message) -> None:
        uid = msg.get_first("Uniqueid") or ""
        chan = ChannelState(uniqueid=uid, linkedid=msg.get_first("Linkedid") or uid,
                            name=msg.get_first("Channel") or "", state=msg.get_first("ChannelStateDesc") or "",
                            caller_number=msg.get_first("CallerIDNum") or "",
                            connected_number=msg.get_first("ConnectedLineNum") or "",
                            context=msg.get_first("Context") or "", exten=msg.get_first("Exten") or "",
                            created_at=parse_ami_time(msg.get_first("Timestamp")))
        self.channels[uid] = chan
        self._channel_changed(chan, "new")

    def _new_state(self, name: str, msg: Message) -> None:
        chan = self._touch_channel(msg)
        if chan is not None:
            chan.state = msg.get_first("ChannelStateDesc") or chan.state
            if chan.state == "Up" and chan.answered_at is None:
                chan.answered_at = parse_ami_time(msg.get_first("Timestamp"))
                self._channel_changed(chan, "answered")
            else:
                self._channel_changed(chan, "state")

    def _channel_detail(self, name: str, msg: Message) -> None:
        chan = self._touch_channel(msg)
        if chan is not None and name == "rename":
            chan.name = msg.get_first("Newname") or chan.name

    def _hangup(self, name: str, msg: Message) -> None:
        uid = msg.get_first("Uniqueid") or ""
        chan = self.channels.pop(uid, None)
        if chan is not None:
            chan.hungup_at = parse_ami_time(msg.get_first("Timestamp"))
            if chan.bridge_id and chan.bridge_id in self.bridges:
                self.bridges[chan.bridge_id].channels.discard(uid)
            self.remember_gone(chan)
            self._channel_changed(chan, "hangup", cause=msg.get_first("Cause-txt"))

    def _hold(self, name: str, msg: Message) -> None:
        chan = self._touch_channel(msg)
        if chan is not None:
            chan.on_hold = name == "hold"
            self._channel_changed(chan, name)

    # -- bridges --------------------------------------------------------------------------------
    def _bridge_create(self, name: str, msg: Message) -> None:
        bid = msg.get_first("BridgeUniqueid") or ""
        self.bridges.setdefault(bid, BridgeState(bid, msg.get_first("BridgeType") or "",
                                                 msg.get_first("BridgeTechnology") or ""))

    def _bridge_destroy(self, name: str, msg: Message) -> None:
        self.bridges.pop(msg.get_first("BridgeUniqueid") or "", None)

    def _bridge_enter(self, name: str, msg: Message) -> None:
        uid = msg.get_first("Uniqueid") or ""
        bid = msg.get_first("BridgeUniqueid") or ""
        bridge = self.bridges.setdefault(bid, BridgeState(bid, msg.get_first("BridgeType") or "",
                                                          msg.get_first("BridgeTechnology") or ""))
        bridge.technology = msg.get_first("BridgeTechnology") or bridge.technology
        bridge.channels.add(uid)
        chan = self._touch_channel(msg)
        if chan is not None:
            chan.bridge_id = bid
            self._channel_changed(chan, "bridged")

    def _bridge_leave(self, name: str, msg: Message) -> None:
        uid = msg.get_first("Uniqueid") or ""
        bid = msg.get_first("BridgeUniqueid") or ""
        if bid in self.bridges:
            self.bridges[bid].channels.discard(uid)
        chan = self.channels.get(uid)
        if chan is not None and chan.bridge_id == bid:
            chan.bridge_id = None
            self._channel_changed(chan, "unbridged")

    # -- the queue ------------------------------------------------------------------------------
    def _caller_join(self, name: str, msg: Message) -> None:
        if msg.get_first("Queue") != self.queue_name:
            return
        uid = msg.get_first("Uniqueid") or ""
        self.queue.callers[uid] = QueueCaller(
            uniqueid=uid, linkedid=msg.get_first("Linkedid") or uid, channel=msg.get_first("Channel") or "",
            caller_number=msg.get_first("CallerIDNum") or "",
            joined_at=parse_ami_time(msg.get_first("Timestamp")).timestamp(),
            position=int(msg.get_first("Position") or 0))
        self.queue_changed()

    def _caller_leave(self, name: str, msg: Message) -> None:
        if msg.get_first("Queue") != self.queue_name:
            return
        if self.queue.callers.pop(msg.get_first("Uniqueid") or "", None) is not None:
            self.queue_changed()

    def _member_changed(self, name: str, msg: Message) -> None:
        if msg.get_first("Queue") != self.queue_name:
            return
        member = _member_from(msg, self.queue.members.get(msg.get_first("Interface") or ""))
        self.queue.members[member.interface] = member
        self.queue_changed()
        if member.extension:
            self.publish(f"operator:{member.extension}", {"type": "member", "member": member.public()})

    def note_wrap_up(self, interface: str, until: float | None) -> None:
        """After-call work started (callcontrol/wrapup.py): a change of ours, not Asterisk's."""
        member = self.queue.members.get(interface)
        if member is None:
            return
        member.wrap_up_until = until
        self.queue_changed()
        if member.extension:
            self.publish(f"operator:{member.extension}", {"type": "member", "member": member.public()})

    def _member_removed(self, name: str, msg: Message) -> None:
        if msg.get_first("Queue") != self.queue_name:
            return
        member = self.queue.members.pop(msg.get_first("Interface") or "", None)
        self.queue_changed()
        if member is not None and member.extension:
            self.publish(f"operator:{member.extension}",
                         {"type": "member", "member": None, "logged_out": member.extension})

    def _agent_event(self, name: str, msg: Message) -> None:
        if msg.get_first("Queue") != self.queue_name:
            return
        ext = operator_of_interface(msg.get_first("Interface"))
        if ext:
            uid = msg.get_first("Uniqueid") or ""
            self.publish(f"operator:{ext}", {
                "type": "queue_call", "event": name.removeprefix("agent"),
                "caller_uniqueid": uid, "linkedid": msg.get_first("Linkedid") or uid,
                "operator_uniqueid": msg.get_first("DestUniqueid"),
                "caller_number": msg.get_first("CallerIDNum") or "",
                "holdtime": parse_seconds(msg.get_first("HoldTime")),
                "talktime": parse_seconds(msg.get_first("TalkTime")),
            })

    # -- helpers --------------------------------------------------------------------------------
    def _touch_channel(self, msg: Message) -> ChannelState | None:
        uid = msg.get_first("Uniqueid") or ""
        chan = self.channels.get(uid)
        if chan is None and uid and msg.get_first("Channel"):
            # an event for a channel we never saw (started while the link was down): learn it
            chan = ChannelState(uniqueid=uid, linkedid=msg.get_first("Linkedid") or uid,
                                name=msg.get_first("Channel") or "")
            self.channels[uid] = chan
        if chan is not None:
            chan.caller_number = msg.get_first("CallerIDNum") or chan.caller_number
            chan.connected_number = msg.get_first("ConnectedLineNum") or chan.connected_number
            chan.state = msg.get_first("ChannelStateDesc") or chan.state
        return chan

    def _channel_changed(self, chan: ChannelState, event: str, **extra: Any) -> None:
        payload = {"type": "call", "event": event, "channel": chan.public(), **extra}
        self.publish("calls", payload)
        ext = chan.operator
        if ext:
            self.publish(f"operator:{ext}", payload)

    def remember_gone(self, chan: ChannelState) -> None:
        self.gone[chan.uniqueid] = chan
        while len(self.gone) > self._gone_limit:
            self.gone.popitem(last=False)

    # -- after a login --------------------------------------------------------------------------
    def rebuild(self, chans: list[Message], bridges: list[Message], qitems: list[Message],
                now: float) -> list[ChannelState]:
        """Replace the state with Asterisk's lists (CoreShowChannels, BridgeList, QueueStatus).
        Returns the channels that vanished meanwhile (each published as gone)."""
        seen: dict[str, ChannelState] = {}
        for item in chans:
            uid = item.get_first("Uniqueid") or ""
            if not uid:
                continue
            old = self.channels.get(uid)
            duration = parse_seconds(item.get_first("Duration"))
            chan = ChannelState(
                uniqueid=uid, linkedid=item.get_first("Linkedid") or uid, name=item.get_first("Channel") or "",
                state=item.get_first("ChannelStateDesc") or "", caller_number=item.get_first("CallerIDNum") or "",
                connected_number=item.get_first("ConnectedLineNum") or "", context=item.get_first("Context") or "",
                exten=item.get_first("Exten") or "", bridge_id=item.get_first("BridgeId") or None,
                on_hold=old.on_hold if old else False,
                created_at=old.created_at if old else datetime.fromtimestamp(now - duration, UTC),
                answered_at=old.answered_at if old else None,
            )
            seen[uid] = chan
        vanished = [c for uid, c in self.channels.items() if uid not in seen]
        self.channels = seen
        for chan in vanished:
            chan.hungup_at = _now()
            self.remember_gone(chan)
            self.publish("calls", {"type": "channel", "event": "gone", "channel": chan.public()})
            if chan.operator:
                self.publish(f"operator:{chan.operator}", {"type": "call", "event": "hangup",
                                                           "channel": chan.public()})
        self.bridges = {}
        for item in bridges:
            bid = item.get_first("BridgeUniqueid") or ""
            if bid:
                self.bridges[bid] = BridgeState(bid, item.get_first("BridgeType") or "",
                                                item.get_first("BridgeTechnology") or "")
        for chan in self.channels.values():
            if chan.bridge_id:
                self.bridges.setdefault(chan.bridge_id, BridgeState(chan.bridge_id)).channels.add(chan.uniqueid)
        queue = QueueState(self.queue_name)
        for item in qitems:
            name = (item.name or "").lower()
            if name == "queuemember":
                member = _member_from(item)
                queue.members[member.interface] = member
            elif name == "queueentry":
                uid = item.get_first("Uniqueid") or ""
                queue.callers[uid] = QueueCaller(
                    uniqueid=uid, linkedid=(self.channels.get(uid).linkedid if uid in self.channels else uid),
                    channel=item.get_first("Channel") or "", caller_number=item.get_first("CallerIDNum") or "",
                    joined_at=now - parse_seconds(item.get_first("Wait")),
                    position=int(item.get_first("Position") or 0))
        self.queue = queue
        return vanished


_Handler = Callable[[LiveState, str, Message], None]

# The table: every AMI event that changes the state, by its lower-cased name.
_HANDLERS: dict[str, _Handler] = {
    "newchannel": LiveState._new_channel,
    "newstate": LiveState._new_state,
    **dict.fromkeys(("newcallerid", "newconnectedline", "newexten", "varset", "rename"), LiveState._channel_detail),
    "hangup": LiveState._hangup,
    "hold": LiveState._hold,
    "unhold": LiveState._hold,
    "bridgecreate": LiveState._bridge_create,
    "bridgedestroy": LiveState._bridge_destroy,
    "bridgeenter": LiveState._bridge_enter,
    "bridgeleave": LiveState._bridge_leave,
    "queuecallerjoin": LiveState._caller_join,
    "queuecallerleave": LiveState._caller_leave,
    "queuecallerabandon": LiveState._caller_leave,
    **dict.fromkeys(("queuememberadded", "queuememberstatus", "queuememberpause", "queuememberpenalty",
                     "queuememberringinuse"), LiveState._member_changed),
    "queuememberremoved": LiveState._member_removed,
    **dict.fromkeys(("agentcalled", "agentringnoanswer", "agentconnect", "agentcomplete"), LiveState._agent_event),
}


def _member_from(msg: Message, old: QueueMember | None = None) -> QueueMember:
    """A queue member from a QueueMember* event or a QueueStatus item (updating ``old`` if given)."""
    interface = msg.get_first("Interface") or msg.get_first("StateInterface") or msg.get_first("Location") or ""
    member = old or QueueMember(interface=interface)
    member.interface = interface
    member.name = msg.get_first("MemberName") or msg.get_first("Name") or member.name
    if "Status" in msg:
        member.status = int(msg.get_first("Status") or 0)
    if "Paused" in msg:
        member.paused = (msg.get_first("Paused") or "0") == "1"
    if "PausedReason" in msg:
        member.paused_reason = msg.get_first("PausedReason") or ""
    elif "Reason" in msg and (msg.name or "").lower() == "queuememberpause":
        member.paused_reason = msg.get_first("Reason") or ""
    if "InCall" in msg:
        member.in_call = (msg.get_first("InCall") or "0") == "1"
    if "CallsTaken" in msg:
        member.calls_taken = int(msg.get_first("CallsTaken") or 0)
    if not member.paused:
        member.paused_reason = ""
    if member.paused_reason != "after_call_work":
        member.wrap_up_until = None
    return member


member_from = _member_from  # (the missed-call callbacks' port reads QueueStatus with it: callcenter/callbacks.py)

__all__ = [
    "QUEUE", "BridgeState", "ChannelState", "LiveState", "member_from",
    "QueueCaller", "QueueMember", "QueueState",
    "parse_seconds",
]
