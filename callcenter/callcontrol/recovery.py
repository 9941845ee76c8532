"""Taking back, after a restart of the application, the calls operators were controlling (a
three-way call, a warm transfer in progress): Asterisk and the ConfBridge rooms keep running while
the process is down, but which operator holds which room lived only in the process.

Durable part: every call-control step the API logs (A2, ``ticketing.calls.add_event``) carries the
call's ``ControlledCall.snapshot()`` under ``data["control"]`` (callcenter/api/routers/calls.py), so
the call log already says, for each call, who held it, its room, its state and the unit on the line.
No table of its own: the latest snapshot of a call is its state.

At start-up (the call-control link's first resync, ``CallLink.on_resync``) the snapshots of the last
``lookback`` are read back and reconciled with what Asterisk reports now (the channels of the resync's
CoreShowChannels, the rooms' ConfbridgeList):

- the citizen's channel is gone, or no longer in the call's room: dropped (the API then answers 410
  for a hung-up call, or treats the call as a plain operator call again);
- otherwise the call is given back to its operator, with the operator's and the unit's legs as
  they are in the room now (an operator who hung up meanwhile is "out of the call" and may rejoin).

After later resyncs (link cut, Asterisk restarted) the calls held in memory are reconciled the same
way. Until the first restore is done the registry resolves no call (``CallControl.wait_restored``).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from callcenter.callcontrol.transfer import CallControl, Chan, ControlledCall, DutyTarget, PbxUnavailable
from callcenter.pbx.names import endpoint_of_channel
from ticketing.models import Call, CallEvent

log = logging.getLogger("callcenter.callcontrol.recovery")

CONTROL_KEY = "control"
# the kinds of the steps the call-control API logs (one of them is the last step of every action)
CONTROL_KINDS = (
    "hold", "unhold", "consult", "unit_dial", "unit_dial_result", "transfer_failed", "transfer_completed",
    "transfer_cancelled", "transfer_blind", "conference_started", "conference_failed", "conference_join",
    "conference_leave", "convenience_consent",
)
LIVE_STATES = frozenset({"talking", "consulting", "conference"})
LOOKBACK = timedelta(hours=12)  # longer than any hotline call

ChannelOf = Callable[[str], Awaitable[Chan | None]]


def held_calls(session: Session, since: datetime) -> list[dict[str, Any]]:
    """The latest control snapshot of every call stepped since ``since`` that was still held in a room
    (a three-way call, a warm transfer, a call back from either) when it was written."""
    rows = session.execute(
        select(Call.uniqueid, CallEvent.data).join(Call, Call.id == CallEvent.call_id)
        .where(CallEvent.kind.in_(CONTROL_KINDS), CallEvent.at >= since)
        .order_by(CallEvent.id)).all()
    latest: dict[str, dict[str, Any]] = {}
    for uniqueid, data in rows:
        snap = (data or {}).get(CONTROL_KEY) if isinstance(data, dict) else None
        if isinstance(snap, dict) and snap.get("v") == 1:
            latest[str(snap.get("uniqueid") or uniqueid)] = snap
    return [s for s in latest.values()
            if s.get("state") in LIVE_STATES and s.get("in_room") and s.get("operator") and s.get("room")]


def from_snapshot(snap: dict[str, Any]) -> ControlledCall:
    unit = snap.get("unit") or None
    return ControlledCall(
        uniqueid=str(snap["uniqueid"]), citizen_channel="", operator_endpoint=str(snap["operator"]),
        operator_channel=None, room=str(snap["room"]), state=str(snap["state"]),
        consult_room=snap.get("consult_room") or None, unit_channel=None,
        unit=DutyTarget(str(unit["unit"]), str(unit["duty"]), "") if isinstance(unit, dict) else None,
        case_number=snap.get("case_number") or None, in_room=bool(snap.get("in_room")),
        unit_uniqueid=snap.get("unit_uniqueid") or None)


async def reconcile(control: CallControl, cc: ControlledCall, channel_of: ChannelOf) -> bool:
    """Bring ``cc`` in line with Asterisk now. False: the call's room is over for us (drop it)."""
    citizen = await channel_of(cc.uniqueid)
    if citizen is None:
        return False
    members = await control.pbx.room_members(cc.room)
    if citizen.name not in members:
        return False  # the room ended, or the citizen was moved out of it
    cc.citizen_channel = citizen.name
    # the operator (and, in a warm transfer, the unit) are in the private room while consulting
    side = await control.pbx.room_members(cc.consult_room) if cc.state == "consulting" and cc.consult_room \
        else members
    # room members are channel names on Asterisk, call sids on Twilio (the driver names its operators)
    endpoint_of = getattr(control.pbx, "endpoint_of_member", None) or endpoint_of_channel
    cc.operator_channel = next((m for m in side if endpoint_of(m) == cc.operator_endpoint), None)
    unit_name = None
    if cc.unit_uniqueid:
        unit_leg = await channel_of(cc.unit_uniqueid)
        unit_name = unit_leg.name if unit_leg is not None and unit_leg.name in side else None
    cc.unit_channel = unit_name
    return True


class ControlRecovery:
    """Restores ``control``'s registry from the call log and keeps it in line with Asterisk after
    every resync of the call-control link (``link.on_resync(recovery.on_resync)``)."""

    def __init__(self, control: CallControl, session_factory: sessionmaker[Session], *,
                 lookback: timedelta = LOOKBACK) -> None:
        self.control = control
        self.session_factory = session_factory
        self.lookback = lookback
        self.loaded = False
        self.restored_calls = 0
        self.dropped_calls = 0
        control.restored = asyncio.Event()

    def _load(self) -> list[dict[str, Any]]:
        with self.session_factory() as session:
            return held_calls(session, self.control.clock() - self.lookback)

    async def on_resync(self, link: Any, first: bool) -> None:
        # the resync just read every channel (CoreShowChannels): look citizens and units up there
        channels = {uid: Chan(c.name, uid, c.bridge_id or "") for uid, c in link.channels.items()}

        async def channel_of(uniqueid: str) -> Chan | None:
            return channels.get(uniqueid)

        await self.restore(channel_of)

    async def restore(self, channel_of: ChannelOf | None = None) -> None:
        """First call: the held calls from the store; every call: reconcile the registry with Asterisk."""
        channel_of = channel_of or self.control.pbx.channel
        control = self.control
        async with control._global:
            try:
                if not self.loaded:
                    snaps = await asyncio.to_thread(self._load)
                    for snap in snaps:
                        current = control.calls.get(str(snap["uniqueid"]))
                        if current is None or current.state in ("ended", "transferred"):
                            control.calls[str(snap["uniqueid"])] = from_snapshot(snap)
                restored = dropped = 0
                for uniqueid, cc in list(control.calls.items()):
                    if cc.state not in LIVE_STATES or not cc.in_room:
                        continue
                    if cc.lock.locked():
                        continue  # an action is under way on it: that action sees what became of it
                    async with cc.lock:
                        keep = await reconcile(control, cc, channel_of)
                    if keep:
                        restored += 1
                    else:
                        dropped += 1
                        control.forget(uniqueid)
            except PbxUnavailable:
                log.warning("restoring held calls: Asterisk did not answer; the next resync retries")
                return
            first = not self.loaded
            self.loaded = True
            self.restored_calls, self.dropped_calls = restored, dropped
        if first or dropped:
            log.info("held calls: %d given back to their operators, %d whose room is over dropped", restored, dropped)
        if control.restored is not None:
            control.restored.set()


__all__ = ["CONTROL_KEY", "CONTROL_KINDS", "ControlRecovery", "from_snapshot", "held_calls", "reconcile"]
