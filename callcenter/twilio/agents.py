"""Operators on Twilio (issue 15): the hotline queue a caller reaches by "operator", answered the way
the Asterisk queue answers it -- the application offers each waiting caller to a free operator.

- The caller waits in Twilio's `<Enqueue>` (its wait URL plays the hold music and asks for an offer).
- An offer is claimed in the store first (the oldest caller, the operator idle longest; conditional
  updates, so two app processes never offer one caller or one operator twice), then the caller is
  dequeued through the REST API (Queue member update) into the operator's room: a conference named
  by a room number (`TwilioPbx.room_twiml("cc-room-citizen", room)`: the caller waits there with
  hold music; leaving ends it), and the operator's phone (`client:op8001`, or the number the
  configuration gives) is rung into it by the Participants API -- `ringing` committed before the
  request, so a restart never rings twice.
- The operator's leg reports answered/completed to /twilio/voice/agent: answered is
  `operator_connected` on the call record (ticketing/calls.py, as AgentConnect on Asterisk) and the
  screen-pop (callcenter.callcontrol.screenpop: the same pop, R4.1 ownership, the same feed); the end
  is `operator_completed`, the operator free again; unanswered, the caller goes back to the queue.
  A caller who hangs up before an operator answers abandoned the queue (`queue_abandoned`).
- Being in a room from the start, the call is controlled (warm transfer, three-way) by the same
  CallControl and supervised (listen, whisper, barge) by the same Supervision as on Asterisk.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select, update
from sqlalchemy.orm import Session
from twilio.base.exceptions import TwilioRestException
from twilio.twiml.voice_response import VoiceResponse

from callcenter.callcontrol.cel import apply_logged
from callcenter.callcontrol.transfer import CallStateError, PbxUnavailable, new_room
from ticketing import calls
from ticketing.carrier_model import CarrierAgent, CarrierCall
from ticketing.models import Call, CallEvent
from ticketing.store import session_scope

from . import twiml

log = logging.getLogger("callcenter.twilio.agents")
RING_SECONDS = 20
WAITING = ("queued", "offered", "ringing")  # an operator has not answered yet
LIVE = {"queued", "ringing", "in-progress"}
_AGENT_EVENTS = ["answered", "completed"]


def _aware(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment  # SQLite gives naive UTC


class TwilioQueue:
    """The queue's work, without HTTP. `pbx` is the call-control TwilioPbx (room TwiML, rooms'
    citizens, the REST client); `pop(extension, sid, leg, holdtime)` the screen-pop."""

    def __init__(self, session_factory, pbx, *, queue: str, public_url: str, clock: Callable[[], datetime],
                 addresses: dict[str, str] | None = None, hold_music_url: str = "",
                 pop: Callable[..., Any] | None = None, ring_seconds: int = RING_SECONDS):
        self.sessions = session_factory
        self.pbx = pbx
        self.client = pbx.client
        self.queue = queue
        self.public_url = public_url.rstrip("/")
        self.clock = clock
        self.addresses = dict(addresses or {})
        self.hold_music_url = hold_music_url
        self.pop = pop
        self.ring_seconds = ring_seconds
        self._queue_sid: str | None = None

    def _tx(self, fn: Callable[[Session], Any]) -> Any:
        with session_scope(self.sessions) as session:
            return fn(session)

    async def tx(self, fn: Callable[[Session], Any]) -> Any:
        return await asyncio.to_thread(self._tx, fn)

    async def rest(self, fn: Callable[[], Any]) -> Any:
        return await self.pbx._rest(fn)

    def url(self, path: str, **query: str) -> str:
        return f"{self.public_url}{path}" + (f"?{urlencode(query)}" if query else "")

    # ---- operators: in the queue or not ---------------------------------------------------------
    def address_of(self, extension: str) -> str:
        """Where an operator is rung: the configuration's address, else the profile's softphone."""
        return self.addresses.get(extension) or f"client:op{extension}"

    async def login(self, extension: str, *, paused: bool = False, reason: str = "") -> dict[str, Any]:
        now = self.clock()

        def log_in(s: Session) -> None:
            agent = s.get(CarrierAgent, extension)
            if agent is None:
                agent = CarrierAgent(extension=extension, call_sid=None, updated_at=now)
                s.add(agent)
            agent.address, agent.logged_in, agent.paused, agent.pause_reason = (self.address_of(extension), True,
                                                                                paused, reason)
        await self.tx(log_in)
        await self.dispatch()
        return await self.state_of(extension)

    async def logout(self, extension: str) -> dict[str, Any]:
        await self.tx(lambda s: s.execute(update(CarrierAgent).where(CarrierAgent.extension == extension)
                                          .values(logged_in=False)))
        return await self.state_of(extension)

    async def set_pause(self, extension: str, paused: bool, reason: str = "") -> dict[str, Any]:
        await self.tx(lambda s: s.execute(update(CarrierAgent).where(CarrierAgent.extension == extension)
                                          .values(paused=paused, pause_reason=reason if paused else "")))
        if not paused:
            await self.dispatch()
        return await self.state_of(extension)

    async def state_of(self, extension: str) -> dict[str, Any]:
        def read(s: Session) -> dict[str, Any]:
            agent = s.get(CarrierAgent, extension)
            member = None if agent is None or not agent.logged_in else {
                "paused": agent.paused, "paused_reason": agent.pause_reason, "in_call": agent.call_sid is not None}
            return {"extension": extension, "driver": "twilio", "logged_in": member is not None, "member": member}
        return await self.tx(read)

    # ---- a caller joins the queue -----------------------------------------------------------
    def enqueue_twiml(self) -> str:
        response = VoiceResponse()
        twiml.enqueue(response, self.queue, self.url("/twilio/voice/queue"), self.url("/twilio/voice/queue/wait"))
        return str(response)

    def wait_twiml(self) -> str:
        """The Enqueue's wait URL: hold music (the install's own, else a pause) and back here."""
        response = VoiceResponse()
        if self.hold_music_url:
            response.play(self.hold_music_url)
        else:
            response.pause(length=10)
        return str(response)

    def queued(self, s: Session, state: CarrierCall, at: datetime) -> None:
        """In the flow's closing transaction: the caller waits for an operator (A2 `queued`)."""
        row = s.get(CarrierCall, state.id)
        row.queue_state, row.queued_at, row.operator, row.room = "queued", at, None, None
        calls.add_event(s, state.call_id, kind="queued", at=at, dedup_key=f"twilio:{state.call_sid}:queued",
                        data={"queue": self.queue, "driver": "twilio", "reason": "caller_choice"})

    # ---- offering: the oldest caller to the operator idle longest ---------------------------
    def _claim(self, s: Session) -> tuple[str, str] | None:
        waiting = s.execute(select(CarrierCall.id, CarrierCall.call_sid).where(CarrierCall.queue_state == "queued")
                            .order_by(CarrierCall.queued_at, CarrierCall.id).limit(1)).first()
        if waiting is None:
            return None
        free = s.execute(select(CarrierAgent.extension).where(
            CarrierAgent.logged_in.is_(True), CarrierAgent.paused.is_(False), CarrierAgent.call_sid.is_(None))
            .order_by(CarrierAgent.updated_at, CarrierAgent.extension).limit(1)).scalar()
        if free is None:
            return None
        took_agent = s.execute(update(CarrierAgent).where(CarrierAgent.extension == free,
                                                          CarrierAgent.call_sid.is_(None))
                               .values(call_sid=waiting.call_sid, leg_sid=None)).rowcount
        took_call = s.execute(update(CarrierCall).where(CarrierCall.id == waiting.id,
                                                        CarrierCall.queue_state == "queued")
                              .values(queue_state="offered", operator=free, room=new_room())).rowcount
        if took_agent != 1 or took_call != 1:
            s.rollback()  # another process took one of them: try again
            return ("", "")
        return waiting.call_sid, free

    async def dispatch(self) -> int:
        """Offer waiting callers to free operators; how many were dequeued."""
        offered = 0
        for _ in range(50):
            claim = await self.tx(self._claim)
            if claim is None:
                return offered
            if claim == ("", ""):
                continue
            sid, extension = claim
            if await self._dequeue(sid):
                offered += 1
                log.info("queue: call %s offered to operator %s (twilio)", sid, extension)
            else:  # not (or no longer) in the carrier's queue
                await self.tx(lambda s, sid=sid: self._unoffer(s, sid))
                if not await self._ended(sid):
                    return offered  # it waits on (e.g. back on its way into the queue)
        return offered

    async def _ended(self, sid: str) -> bool:
        """The caller's call is over at the carrier (its status callback may come later, or never):
        settled now, so it does not stand in front of the queue."""
        try:
            call = await self.rest(lambda: self.client.calls(sid).fetch())
        except TwilioRestException as exc:
            if exc.status != 404:
                return False
            call = None
        except PbxUnavailable:
            return False
        if call is not None and call.status in LIVE:
            return False
        await self.caller_gone(sid, self.clock(), dispatch=False)
        return True

    def _unoffer(self, s: Session, sid: str) -> None:
        self._release(s, sid, None)
        s.execute(update(CarrierCall).where(CarrierCall.call_sid == sid, CarrierCall.queue_state == "offered")
                  .values(queue_state="queued", operator=None, room=None))

    async def queue_sid(self) -> str:
        if self._queue_sid is None:
            queues = await self.rest(lambda: self.client.queues.list(limit=100))
            self._queue_sid = next((q.sid for q in queues if q.friendly_name == self.queue), None)
            if self._queue_sid is None:
                raise LookupError(f"no Twilio queue named {self.queue!r}")
        return self._queue_sid

    async def _dequeue(self, sid: str) -> bool:
        url = self.url("/twilio/voice/operator")
        try:
            qsid = await self.queue_sid()
            await self.rest(lambda: self.client.queues(qsid).members(sid).update(url=url, method="POST"))
        except (TwilioRestException, LookupError, PbxUnavailable) as exc:  # the offer is taken back
            log.info("queue: call %s could not be dequeued (%s)", sid, getattr(exc, "status", exc))
            return False
        return True

    def _release(self, s: Session, sid: str, queue_state: str | None, *, free_at: datetime | None = None) -> None:
        """The operator offered `sid` is free again; the call's queue state becomes `queue_state`."""
        values: dict[str, Any] = {"call_sid": None, "leg_sid": None}
        if free_at is not None:
            values["updated_at"] = free_at
        s.execute(update(CarrierAgent).where(CarrierAgent.call_sid == sid).values(**values))
        if queue_state is not None:
            s.execute(update(CarrierCall).where(CarrierCall.call_sid == sid).values(queue_state=queue_state))

    # ---- the caller dequeued into the operator's room: ring the operator --------------------
    async def _load(self, sid: str) -> CarrierCall | None:
        def load(s: Session) -> CarrierCall | None:
            row = s.execute(select(CarrierCall).where(CarrierCall.call_sid == sid)).scalar_one_or_none()
            if row is not None:
                s.expunge(row)
            return row
        return await self.tx(load)

    def citizen_twiml(self, state: CarrierCall) -> str:
        self.pbx.citizen_of_room[state.room] = state.call_sid
        return self.pbx.room_twiml("cc-room-citizen", state.room)

    async def dequeued(self, sid: str) -> str:
        """The dequeued caller's TwiML (the operator's room); the operator rung once."""
        state = await self._load(sid)
        if state is None or state.queue_state not in ("offered", "ringing", "connected") or not state.room:
            return self.enqueue_twiml()  # no offer stands for it: it waits on
        if state.queue_state == "offered":
            await self.ring(state)
        return self.citizen_twiml(state)

    async def ring(self, state: CarrierCall) -> bool:
        """Ring the offered operator into the room, once: `ringing` is committed before the request."""
        claimed = await self.tx(lambda s: s.execute(update(CarrierCall).where(
            CarrierCall.id == state.id, CarrierCall.queue_state == "offered").values(queue_state="ringing")).rowcount)
        if claimed != 1:
            return False
        address = self.address_of(state.operator)
        self.pbx.citizen_of_room[state.room] = state.call_sid
        callback = self.url("/twilio/voice/agent", call=state.call_sid, ext=state.operator)
        try:
            participant = await self.rest(lambda: self.client.conferences(state.room).participants.create(
                from_=self.pbx.from_number, to=address, timeout=self.ring_seconds, label="operator",
                start_conference_on_enter=True, end_conference_on_exit=False, beep="false",
                status_callback=callback, status_callback_method="POST", status_callback_event=_AGENT_EVENTS,
                conference_status_callback=self.pbx._room_callback(state.room),
                conference_status_callback_method="POST", conference_status_callback_event=["join", "leave"]))
        except TwilioRestException as exc:
            log.warning("queue: operator %s could not be rung (%s): the caller waits again", state.operator,
                        exc.code or exc.status)
            await self.requeue(state.call_sid)
            return False
        leg = participant.call_sid
        self.pbx._dialled[leg] = address
        await self.tx(lambda s: s.execute(update(CarrierAgent).where(CarrierAgent.call_sid == state.call_sid)
                                          .values(leg_sid=leg)))
        return True

    async def requeue(self, sid: str) -> None:
        """The operator did not answer: the caller back in the queue, the operator free."""
        def back(s: Session) -> None:
            self._release(s, sid, None, free_at=self.clock())  # the next offer goes to another operator
            s.execute(update(CarrierCall).where(CarrierCall.call_sid == sid)
                      .values(queue_state="queued", operator=None, room=None))
        await self.tx(back)
        try:
            twiml = self.enqueue_twiml()
            await self.rest(lambda: self.client.calls(sid).update(twiml=twiml))
        except TwilioRestException as exc:
            if exc.status != 404:
                raise
            await self.tx(lambda s: s.execute(update(CarrierCall).where(CarrierCall.call_sid == sid)
                                              .values(queue_state="done")))
        await self.dispatch()

    # ---- the operator's leg: answered, ended ------------------------------------------------
    async def agent_status(self, sid: str, extension: str, params: dict[str, str]) -> None:
        status = params.get("CallStatus", "")
        leg = params.get("CallSid", "")
        if status == "in-progress":
            await self.answered(sid, extension, leg)
        elif status in ("completed", "busy", "no-answer", "failed", "canceled"):
            await self.leg_ended(sid, extension, leg)

    async def answered(self, sid: str, extension: str, leg: str) -> bool:
        """The operator took the call: `operator_connected` once, and the screen-pop."""
        now = self.clock()

        def connect(s: Session) -> float | None:
            state = s.execute(select(CarrierCall).where(CarrierCall.call_sid == sid)).scalar_one_or_none()
            if state is None or state.queue_state not in ("offered", "ringing") or state.operator != extension:
                return None
            state.queue_state = "connected"
            s.execute(update(CarrierAgent).where(CarrierAgent.extension == extension).values(leg_sid=leg))
            held = round((now - _aware(state.queued_at)).total_seconds(), 1) if state.queued_at else None
            self._log(s, state, "operator_connected", now, leg,
                      {"operator": extension, "operator_uniqueid": leg, "holdtime": held})
            return held if held is not None else 0.0
        held = await self.tx(connect)
        if held is None:
            return False
        self.pbx._dialled[leg] = self.address_of(extension)
        if self.pop is not None:
            try:
                await self.pop(extension, sid, leg, held)
            except Exception:
                log.exception("screen-pop for operator %s failed", extension)
        return True

    def _log(self, s: Session, state: CarrierCall, kind: str, at: datetime, leg: str, data: dict[str, Any]) -> None:
        """A queue event on the call record, as the Asterisk path's call-log writer writes it."""
        if not calls.add_event(s, state.call_id, kind=kind, at=at, dedup_key=f"twilio:{state.call_sid}:{kind}:{leg}",
                               data={"queue": self.queue, "driver": "twilio", "uniqueid": state.call_sid, **data}):
            return
        apply_logged(s, s.get(Call, state.call_id), kind, at=at, uniqueid=state.call_sid, operator=data.get("operator"))

    async def leg_ended(self, sid: str, extension: str, leg: str, *, ended_at: datetime | None = None) -> None:
        """The operator's leg ended: after a conversation, the operator is free (and a caller left
        alone in the room is hung up); unanswered, the caller goes back to the queue."""
        now = ended_at or self.clock()

        def end(s: Session) -> str | None:
            state = s.execute(select(CarrierCall).where(CarrierCall.call_sid == sid)).scalar_one_or_none()
            if state is None or state.operator != extension:
                return None
            was = state.queue_state
            if was == "connected":
                state.queue_state = "done"
                connected = s.execute(select(CallEvent.at).where(
                    CallEvent.call_id == state.call_id, CallEvent.kind == "operator_connected")).scalar()
                talked = round((now - _aware(connected)).total_seconds(), 1) if connected else None
                self._log(s, state, "operator_completed", now, leg,
                          {"operator": extension, "talktime": talked, "reason": "operator"})
                self._release(s, sid, None, free_at=now)
                return "hang_up_citizen" if state.room_twiml is None else "done"
            return "requeue" if was in ("offered", "ringing") else None
        what = await self.tx(end)
        if what == "requeue":
            await self.requeue(sid)
            return
        if what == "hang_up_citizen":  # the operator put the phone down: the caller is not left on hold
            try:
                await self.pbx.hangup(sid)
            except CallStateError:
                pass  # the caller's call had ended first (its room ended the operator's leg)
        if what is not None:
            await self.dispatch()

    async def caller_gone(self, sid: str, at: datetime, *, dispatch: bool = True) -> None:
        """The caller's call ended (status callback): waiting, they abandoned the queue; an operator
        being rung for them is stopped and free again."""
        def gone(s: Session) -> str | None:
            state = s.execute(select(CarrierCall).where(CarrierCall.call_sid == sid)).scalar_one_or_none()
            if state is None or state.queue_state not in WAITING:
                return None
            leg = s.execute(select(CarrierAgent.leg_sid).where(CarrierAgent.call_sid == sid)).scalar()
            state.queue_state = "done"
            if calls.add_event(s, state.call_id, kind="queue_abandoned", at=at, dedup_key=f"twilio:{sid}:queue",
                               data={"queue": self.queue, "driver": "twilio", "uniqueid": sid}):
                apply_logged(s, s.get(Call, state.call_id), "queue_abandoned", at=at, uniqueid=sid)
            self._release(s, sid, None)
            return leg or ""
        leg = await self.tx(gone)
        if leg:
            await self.pbx.hangup(leg)
        if leg is not None and dispatch:
            await self.dispatch()

    def operator_room(self, extension: str, session: Session | None = None) -> tuple[str, str, str] | None:
        """(citizen sid, the operator's leg, the room) of the operator's answered call, if any
        (read in `session` when given: SQLite allows one transaction at a time)."""
        def read(s: Session):
            return s.execute(select(CarrierCall.call_sid, CarrierAgent.leg_sid, CarrierCall.room)
                             .join(CarrierAgent, CarrierAgent.call_sid == CarrierCall.call_sid)
                             .where(CarrierAgent.extension == extension, CarrierCall.queue_state == "connected")).first()
        row = read(session) if session is not None else self._tx(read)
        return (row[0], row[1], row[2]) if row is not None and row[1] else None
