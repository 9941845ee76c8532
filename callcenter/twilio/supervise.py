"""Listen, whisper, barge on an operator's Twilio call (issue 15): the same Supervision service, API
and audit records (A1: who, whom, how, how long) as the ChanSpy path on Asterisk
(callcenter/callcontrol/supervise.py), over this `Pbx`.

An operator answers Twilio queue calls in a conference room (agents.py), so a supervisor is one more
participant of the room the operator is in now (their call's room, or the consult / three-way room
call control moved them to), rung on their own phone (client:op8009) by the Participants API:

- listen:  ``Muted=true`` -- nobody hears the supervisor;
- whisper: ``Coaching=true`` + ``CallSidToCoach=<the operator's leg>`` -- the operator alone hears them;
- barge:   unmuted, not coaching -- everyone hears them.

A mode switch updates the participant in place (no new ring); stopping hangs the leg up; the leg
leaving the room (the room's participant-leave callback) ends the session, audited, as the Hangup
event does on Asterisk.
"""
from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from callcenter.callcontrol.supervise import CONTEXTS
from callcenter.callcontrol.transfer import CallStateError, Chan, DialResult

from .conference import TwilioPbx

MODE_OF_CONTEXT = {context: mode for mode, context in CONTEXTS.items()}


def participant_options(mode: str, operator_leg: str) -> dict[str, Any]:
    """How a supervisor's participant is set for a mode (the Participants API's parameters)."""
    if mode == "listen":
        return {"muted": True, "coaching": False}
    if mode == "whisper":
        return {"muted": False, "coaching": True, "call_sid_to_coach": operator_leg}
    return {"muted": False, "coaching": False}


class TwilioSpyPbx:
    """`Supervision`'s Pbx on Twilio. `operator_room(extension)` gives (the citizen's call sid, the
    operator's leg, the queue call's room) of the operator's answered call (agents.py); `control`
    (the Twilio CallControl) says where call control has moved the operator since."""

    def __init__(self, pbx: TwilioPbx, operator_room: Callable[[str], tuple[str, str, str] | None],
                 control: Any = None):
        self.pbx = pbx
        self.operator_room = operator_room
        self.control = control
        self.spies: dict[str, tuple[str, str]] = {}  # supervisor's leg -> (conference sid, operator's leg)

    def _room_now(self, citizen: str, room: str) -> str:
        cc = self.control.calls.get(citizen) if self.control is not None else None
        if cc is None or cc.operator_channel is None or cc.state in ("ended", "transferred"):
            return room
        if cc.state == "consulting" and cc.consult_room:
            return cc.consult_room
        return cc.room if cc.in_room else room

    async def _where(self, extension: str) -> tuple[str, str, str] | None:
        found = await asyncio.to_thread(self.operator_room, extension)
        if found is None:
            return None
        citizen, leg, room = found
        room = self._room_now(citizen, room)
        self.pbx.citizen_of_room.setdefault(room, citizen)  # the room's legs are logged on the citizen's call
        return citizen, leg, room

    # ---- what Supervision asks --------------------------------------------------------------
    async def endpoint_channels(self, endpoint: str) -> list[Chan]:
        found = await self._where(endpoint.removeprefix("op"))
        if found is None:
            return []
        citizen, leg, _room = found
        return [Chan(leg, leg, citizen)]  # bridged with the citizen's call: the call log's row

    async def bridge_peers(self, chan: Chan) -> list[Chan]:
        return [Chan(chan.bridge_id, chan.bridge_id, chan.bridge_id)] if chan.bridge_id else []

    async def channel(self, uniqueid: str) -> Chan | None:
        return await self.pbx.channel(uniqueid)

    async def hangup(self, channel: str) -> None:
        self.spies.pop(channel, None)
        await self.pbx.hangup(channel)

    async def call_endpoint_into_room(self, endpoint: str, extension: str, context: str,
                                      ring_seconds: float) -> DialResult:
        """Ring the supervisor's phone into the operator's room, set for the mode."""
        found = await self._where(extension)
        if found is None:
            raise CallStateError(f"operator {extension} is not on a call")
        _citizen, leg, room = found
        result = await self.pbx._ring(f"client:{endpoint}", room, ring_seconds,
                                      **participant_options(MODE_OF_CONTEXT[context], leg))
        if result.answered:
            self.spies[result.uniqueid] = (self.pbx.conference_of.get(result.uniqueid, room), leg)
        return result

    async def redirect(self, channel: str, context: str, exten: str,
                       extra: tuple[str, str, str] | None = None) -> None:
        """A mode switch: the supervisor's participant updated in place."""
        conference, leg = self.spies.get(channel, ("", ""))
        if not conference:
            raise CallStateError("this supervisor's leg is not in a room this process knows")
        await self.pbx.update_participant(conference, channel, **participant_options(MODE_OF_CONTEXT[context], leg))
