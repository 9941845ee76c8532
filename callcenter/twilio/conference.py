"""Transfers and three-way calls of Twilio calls (issue 15 item 2): the call-control `Pbx` port
(callcenter/callcontrol/transfer.py) over Twilio's REST API, so the same API operations and the same
rules (callcenter/api/routers/calls.py, CallControl, conference.py) drive both drivers.

How each primitive becomes Twilio (rooms are Twilio conferences named by the room number):

- a channel is a call sid; the citizen's operator is the live child leg of its <Dial> (ParentCallSid),
  known by its `to` (client:op8001 or sip:op8001@...: the same endpoint names as the PJSIP phones);
- redirect -> the call's TwiML replaced (Calls update): <Dial><Conference> for the rooms (the citizen
  waits with hold music until someone who starts the room joins; its leaving ends the room), <Hangup>,
  <Dial> for a blind transfer. Moving the operator's leg ends the <Dial> bridge, whose action URL
  Twilio then asks: `note_room` stores the citizen's room first, and that webhook answers the same
  room (voice.py), so the citizen is never hung up between the two updates;
- ringing a unit or an operator into a room -> the Participants API (the A then B order and its steps
  stay in CallControl), answered when the participant is connected; supervisors join the same way
  (supervise.py: muted, coaching);
- hangup -> the call completed; room members -> the conference's participants.

Each room reports its participants joining and leaving to /twilio/voice/conference?call=<citizen sid>,
which logs them on the citizen's call as conference_join / conference_leave, as the ConfBridge events
are logged on Asterisk; the room is recorded and the recording fetched (recordings.py).
"""
from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import Dial, VoiceResponse

from callcenter.callcontrol.transfer import (
    CallStateError,
    Chan,
    DialResult,
    PbxUnavailable,
)

_LIVE = {"queued", "ringing", "in-progress"}
# Twilio's final call statuses -> the unanswered dial's word (ticketing.dialing)
_UNANSWERED = {"busy": "busy", "no-answer": "no_answer", "canceled": "no_answer", "failed": "failed"}
_ENDPOINT = re.compile(r"^(?:client:|sip:)(op[0-9]+)(?:@.*)?$")
_ROOM_EVENTS = ["join", "leave"]


def endpoint_of_leg(to: str | None) -> str | None:
    """``client:op8001`` / ``sip:op8001@host`` -> ``op8001`` (an operator's leg); None otherwise."""
    match = _ENDPOINT.match(to or "")
    return match.group(1) if match else None


class TwilioPbx:
    """`callcenter.callcontrol.transfer.Pbx` over a twilio.rest.Client (blocking: run off the loop).
    `note_room(call_sid, twiml)` stores the TwiML a call is being moved to (before it is moved)."""

    def __init__(self, client: Any, *, public_url: str, from_number: str, hold_music_url: str = "",
                 note_room: Callable[[str, str], None] | None = None, poll_seconds: float = 0.5,
                 room_of: Callable[[str], str | None] | None = None):
        self.client = client
        self.room_of = room_of  # a queue call's operator room (agents.py): its operator is a participant
        self.public_url = public_url.rstrip("/")
        self.from_number = from_number
        self.hold_music_url = hold_music_url
        self.note_room = note_room
        self.poll_seconds = poll_seconds
        self.citizen_of_room: dict[str, str] = {}  # room -> the citizen's call sid (whose log gets the legs)
        self._dialled: dict[str, str] = {}  # leg sid -> whom it dialled (client:op8001: the operator's phone)
        self.conference_of: dict[str, str] = {}  # a leg rung into a room -> the conference's sid

    async def _rest(self, fn: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(fn)
        except TwilioRestException:
            raise
        except Exception as exc:
            raise PbxUnavailable("the carrier (Twilio) is not reachable; try again") from exc

    # ---- channels ---------------------------------------------------------------------------
    async def channel(self, uniqueid: str) -> Chan | None:
        try:
            call = await self._rest(lambda: self.client.calls(uniqueid).fetch())
        except TwilioRestException as exc:
            if exc.status == 404:
                return None
            raise PbxUnavailable(f"the carrier refused to show the call ({exc.code})") from exc
        if call.status not in _LIVE:
            return None
        return Chan(call.sid, call.sid, call.sid)  # a call's <Dial> bridge is named by its own sid

    async def bridge_peers(self, chan: Chan) -> list[Chan]:
        legs = await self._rest(lambda: self.client.calls.list(parent_call_sid=chan.uniqueid, status="in-progress",
                                                                limit=20))
        self._dialled.update({leg.sid: leg.to or "" for leg in legs})
        peers = [Chan(leg.sid, leg.sid, chan.uniqueid) for leg in legs]  # a leg is moved by its sid
        room = await asyncio.to_thread(self.room_of, chan.uniqueid) if not peers and self.room_of else None
        if room:  # answered from the operators' queue: the operator is in the caller's room
            peers = [Chan(sid, sid, chan.uniqueid) for sid in await self.room_members(room) if sid != chan.uniqueid]
        return peers

    def endpoint_of(self, chan: Chan) -> str | None:
        return endpoint_of_leg(self._dialled.get(chan.uniqueid))

    def endpoint_of_member(self, member: str) -> str | None:
        """A room member (a call sid, from room_members) -> the operator it is, if one."""
        return endpoint_of_leg(self._dialled.get(member))

    async def endpoint_channels(self, endpoint: str) -> list[Chan]:
        legs = await self._rest(lambda: self.client.calls.list(to=f"client:{endpoint}", status="in-progress",
                                                                limit=20))
        return [Chan(leg.sid, leg.sid, leg.parent_call_sid or "") for leg in legs]

    # ---- moving calls ---------------------------------------------------------------------
    def _room_callback(self, room: str) -> str:
        citizen = self.citizen_of_room.get(room, "")
        return f"{self.public_url}/twilio/voice/conference?{urlencode({'call': citizen, 'room': room})}"

    def _recording_callback(self, room: str) -> str:
        citizen = self.citizen_of_room.get(room, "")
        return f"{self.public_url}/twilio/voice/recording?{urlencode({'call': citizen})}"

    def room_twiml(self, context: str, exten: str) -> str:
        """The TwiML of a dialplan context of asterisk/extensions_calls.conf, for this driver."""
        response = VoiceResponse()
        if context == "cc-hangup":
            response.hangup()
            return str(response)
        if context == "cc-transfer":
            response.dial(exten, caller_id=self.from_number or None)
            return str(response)
        citizen = context == "cc-room-citizen"
        dial = Dial()
        options: dict[str, Any] = {
            "start_conference_on_enter": not citizen,  # the citizen alone waits (hold music)
            "end_conference_on_exit": citizen,  # the citizen leaving ends the room for everyone
            "status_callback": self._room_callback(exten), "status_callback_method": "POST",
            "status_callback_event": " ".join(_ROOM_EVENTS), "beep": False}
        if citizen:
            options.update(record="record-from-start", recording_status_callback=self._recording_callback(exten),
                           recording_status_callback_method="POST", recording_status_callback_event="completed")
            if self.hold_music_url:
                options["wait_url"] = self.hold_music_url
        dial.conference(exten, **options)
        response.append(dial)
        return str(response)

    async def redirect(self, channel: str, context: str, exten: str,
                       extra: tuple[str, str, str] | None = None) -> None:
        if context == "cc-room-citizen":  # the legs of its rooms (and of the consult room) are its own
            self.citizen_of_room[exten] = channel
            if extra is not None:
                self.citizen_of_room[extra[2]] = channel
        moves = [(channel, context, exten)]
        if extra is not None:
            moves.insert(0, extra)  # the operator's (child) leg first: moving the parent would hang it up
        for sid, ctx, ext in moves:
            twiml = self.room_twiml(ctx, ext)
            if self.note_room is not None and ctx in ("cc-room-citizen", "cc-transfer"):  # the citizen's moves
                await asyncio.to_thread(self.note_room, sid, twiml)
            try:
                await self._rest(lambda sid=sid, twiml=twiml: self.client.calls(sid).update(twiml=twiml))
            except TwilioRestException as exc:
                raise CallStateError(f"could not move the call ({exc.code or exc.status})") from exc

    async def hangup(self, channel: str) -> None:
        try:
            await self._rest(lambda: self.client.calls(channel).update(status="completed"))
        except TwilioRestException as exc:
            if exc.status != 404:
                raise CallStateError(f"could not hang up the leg ({exc.code or exc.status})") from exc

    # ---- ringing into a room ----------------------------------------------------------------
    async def _ring(self, to: str, room: str, ring_seconds: float, **more: Any) -> DialResult:
        try:
            participant = await self._rest(lambda: self.client.conferences(room).participants.create(
                from_=self.from_number, to=to, timeout=int(max(5, ring_seconds)), start_conference_on_enter=True,
                end_conference_on_exit=False, beep="false", conference_status_callback=self._room_callback(room),
                conference_status_callback_method="POST", conference_status_callback_event=_ROOM_EVENTS, **more))
        except TwilioRestException as exc:
            return DialResult(False, "failed" if exc.status < 500 else "unreachable")
        conference, sid = participant.conference_sid, participant.call_sid
        self._dialled[sid] = to
        self.conference_of[sid] = conference
        deadline = time.monotonic() + ring_seconds + 10
        status = participant.status
        while status != "connected":
            if time.monotonic() > deadline:
                await self.hangup(sid)
                return DialResult(False, "no_answer")
            await asyncio.sleep(self.poll_seconds)
            try:
                status = (await self._rest(lambda: self.client.conferences(conference).participants(sid)
                                           .fetch())).status
            except TwilioRestException as exc:
                if exc.status != 404:
                    raise PbxUnavailable(f"the carrier refused to show the participant ({exc.code})") from exc
                status = "gone"  # it never joined (or left): the leg's own status says why
            if status in ("gone", "failed", "complete"):
                leg = await self._rest(lambda: self.client.calls(sid).fetch())
                return DialResult(False, _UNANSWERED.get(leg.status, "failed"))
        return DialResult(True, "answered", sid, sid)

    async def dial_into_room(self, number: str, room: str, ring_seconds: float) -> DialResult:
        return await self._ring(number, room, ring_seconds)

    async def call_endpoint_into_room(self, endpoint: str, room: str, context: str,
                                      ring_seconds: float) -> DialResult:
        return await self._ring(f"client:{endpoint}", room, ring_seconds)

    async def room_members(self, room: str) -> list[str]:
        rooms = await self._rest(lambda: self.client.conferences.list(friendly_name=room, status="in-progress",
                                                                       limit=5))
        members: list[str] = []
        for conf in rooms:
            members += [p.call_sid for p in await self._rest(lambda c=conf: self.client.conferences(c.sid)
                                                               .participants.list(limit=50))]
        for sid in members:  # whom each leg called (an operator's phone?), asked once
            if sid not in self._dialled:
                try:
                    self._dialled[sid] = (await self._rest(lambda sid=sid: self.client.calls(sid).fetch())).to or ""
                except TwilioRestException:
                    self._dialled[sid] = ""
        return members

    async def participant(self, room: str, sid: str) -> Any | None:
        """The leg `sid` in the room now (its conference sid, muted, coaching), or None."""
        rooms = await self._rest(lambda: self.client.conferences.list(friendly_name=room, status="in-progress",
                                                                       limit=5))
        for conf in rooms:
            try:
                return await self._rest(lambda c=conf: self.client.conferences(c.sid).participants(sid).fetch())
            except TwilioRestException as exc:
                if exc.status != 404:
                    raise PbxUnavailable(f"the carrier refused to show the participant ({exc.code})") from exc
        return None

    async def update_participant(self, conference_sid: str, sid: str, **changes: Any) -> None:
        """Mute, unmute, coach (supervise.py): the participant changed in place, no new ring."""
        try:
            await self._rest(lambda: self.client.conferences(conference_sid).participants(sid).update(**changes))
        except TwilioRestException as exc:
            raise CallStateError(f"could not change the participant ({exc.code or exc.status})") from exc
