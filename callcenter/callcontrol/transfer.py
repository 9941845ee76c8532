"""Warm and blind transfers of an operator's call (issue 4 §4, §6; R7.3f; A2).

The call is named by its citizen channel's uniqueid. Only the front-desk operator whose phone is
bridged with that channel may act on it (403 otherwise); an unknown channel is a 404, one that has
hung up a 410.

How the channels move (dialplan contexts of ``asterisk/extensions_calls.conf``; room = a ConfBridge
number of our own):

- hold + consult: one AMI Redirect with ExtraChannel sends the citizen into the call's room
  (``cc-room-citizen``: alone there, the citizen hears hold music) and the operator into a second,
  private room (``cc-room-operator``). The unit's duty phone is originated into that private room as
  ``Local/<number>@unit-phones/n`` (``cc-room-unit``): A role first, B role when A does not answer.
- complete: the unit's leg is redirected into the citizen's room, the operator's leg hung up.
- cancel / nobody answered: the unit's leg is hung up, the operator redirected back to the citizen.
- blind transfer (convenience service center): the citizen is redirected to ``cc-transfer`` (dials
  the number; unanswered, back to the hotline queue), the operator's leg hung up.

Telephony goes through a small ``Pbx`` interface (``AmiPbx`` over our AMI client in production, a
fake in unit tests). Nothing here touches the store: the API layer logs each step (``steps`` of a
result) to the call log and audits the case through the workflow.
"""
from __future__ import annotations

import asyncio
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from callcenter.errors import FORBIDDEN, GONE, NOT_FOUND, REFUSED, UNAVAILABLE, AppError
from callcenter.pbx.names import endpoint_of_channel
from ticketing.dialing import dial_result
from ticketing.privacy import mask_phone

DEFAULT_RING_SECONDS = 20


# --------------------------------------------------------------------------------------------
# errors: the application's own (callcenter/errors.py); the API answers {"error": code, "detail": ...}


class UnknownCall(AppError):
    """No channel with this uniqueid exists, or ever existed as far as we know."""

    kind = NOT_FOUND

    def __init__(self, uniqueid: str):
        super().__init__("call_unknown", f"no call with channel id {uniqueid[:80]!r}")


class CallHungUp(AppError):
    """The channel existed but has hung up (answered like the call-control link's ChannelGone)."""

    kind = GONE

    def __init__(self, uniqueid: str):
        super().__init__("call_ended", f"the call {uniqueid[:80]!r} has ended (the citizen hung up)")


class NotCallOwner(AppError):
    """Another operator holds this call."""

    kind = FORBIDDEN

    def __init__(self, uniqueid: str):
        super().__init__("call_owner", f"the call {uniqueid[:80]!r} is held by another operator; "
                                       "only the operator on the call may transfer or conference it")


class CallStateError(AppError):
    """The call is not in a state that allows this step."""

    kind = REFUSED

    def __init__(self, message: str):
        super().__init__("call_state", message)


class PbxUnavailable(AppError):
    kind = UNAVAILABLE

    def __init__(self, message: str = "the telephone system is not reachable; try again"):
        super().__init__("pbx_unavailable", message)


# --------------------------------------------------------------------------------------------
# the PBX interface


@dataclass(frozen=True)
class Chan:
    name: str
    uniqueid: str
    bridge_id: str = ""


@dataclass(frozen=True)
class DialResult:
    answered: bool
    reason: str  # answered, or an unanswered dial's word (ticketing.dialing): no_answer, busy, ...
    channel: str = ""  # the unit's leg (Local ...;1) when answered
    uniqueid: str = ""


class Pbx(Protocol):
    async def channel(self, uniqueid: str) -> Chan | None: ...
    async def bridge_peers(self, chan: Chan) -> list[Chan]: ...
    async def endpoint_channels(self, endpoint: str) -> list[Chan]: ...
    async def redirect(self, channel: str, context: str, exten: str,
                       extra: tuple[str, str, str] | None = None) -> None: ...
    async def hangup(self, channel: str) -> None: ...
    async def dial_into_room(self, number: str, room: str, ring_seconds: float) -> DialResult: ...
    async def call_endpoint_into_room(self, endpoint: str, room: str, context: str,
                                      ring_seconds: float) -> DialResult: ...
    async def room_members(self, room: str) -> list[str]: ...


class AmiPbx:
    """``Pbx`` over ``callcenter.ami.AMIClient`` (stateless: asks Asterisk every time)."""

    def __init__(self, ami: Any) -> None:
        self.ami = ami

    async def _channels(self) -> list[Chan]:
        from callcenter.ami.errors import AMIError

        try:
            response, items = await self.ami.send_action_list({"Action": "CoreShowChannels"})
        except AMIError as exc:
            raise PbxUnavailable() from exc
        if not response.success:
            raise PbxUnavailable(f"CoreShowChannels failed: {response.get_first('Message')}")
        return [Chan(m.get_first("Channel") or "", m.get_first("Uniqueid") or "", m.get_first("BridgeId") or "")
                for m in items if (m.name or "").lower() == "coreshowchannel"]

    async def channel(self, uniqueid: str) -> Chan | None:
        return next((c for c in await self._channels() if c.uniqueid == uniqueid), None)

    async def bridge_peers(self, chan: Chan) -> list[Chan]:
        if not chan.bridge_id:
            return []
        return [c for c in await self._channels() if c.bridge_id == chan.bridge_id and c.uniqueid != chan.uniqueid]

    async def endpoint_channels(self, endpoint: str) -> list[Chan]:
        """The channels of a phone (``op8001``): an operator's legs, a supervisor's (supervise.py)."""
        return [c for c in await self._channels() if endpoint_of_channel(c.name) == endpoint]

    async def _send(self, action: dict[str, Any]) -> Any:
        from callcenter.ami.errors import AMIError

        try:
            reply = await self.ami.send_action(action)
        except AMIError as exc:
            raise PbxUnavailable() from exc
        return reply

    async def redirect(self, channel: str, context: str, exten: str,
                       extra: tuple[str, str, str] | None = None) -> None:
        action = {"Action": "Redirect", "Channel": channel, "Context": context, "Exten": exten, "Priority": 1}
        if extra is not None:
            action.update(ExtraChannel=extra[0], ExtraContext=extra[1], ExtraExten=extra[2], ExtraPriority=1)
        reply = await self._send(action)
        if not reply.success:
            raise CallStateError(f"could not move the call: {reply.get_first('Message')}")

    async def hangup(self, channel: str) -> None:
        await self._send({"Action": "Hangup", "Channel": channel, "Cause": 16})

    async def _originate(self, channel: str, context: str, exten: str, ring_seconds: float) -> DialResult:
        from callcenter.ami.errors import AMIError

        cid = f"cc-{uuid.uuid4().hex[:16]}"
        try:
            reply = await self.ami.originate(channel, context=context, exten=exten, priority=1, channel_id=cid,
                                             other_channel_id=f"{cid};2", dial_timeout=ring_seconds,
                                             caller_id="12345 <12345>")
        except AMIError as exc:
            raise PbxUnavailable() from exc
        if (reply.name or "").lower() != "originateresponse":
            return DialResult(False, "failed")
        if (reply.get_first("Response") or "").lower() == "success":
            return DialResult(True, "answered", reply.get_first("Channel") or "", reply.get_first("Uniqueid") or cid)
        return DialResult(False, dial_result(reply.get_first("Reason")))

    async def dial_into_room(self, number: str, room: str, ring_seconds: float) -> DialResult:
        return await self._originate(f"Local/{number}@unit-phones/n", "cc-room-unit", room, ring_seconds)

    async def call_endpoint_into_room(self, endpoint: str, room: str, context: str,
                                      ring_seconds: float) -> DialResult:
        return await self._originate(f"PJSIP/{endpoint}", context, room, ring_seconds)

    async def room_members(self, room: str) -> list[str]:
        from callcenter.ami.errors import AMIError

        try:
            response, items = await self.ami.send_action_list({"Action": "ConfbridgeList", "Conference": room})
        except AMIError as exc:
            raise PbxUnavailable() from exc
        if not response.success:  # "No active conferences." / "No Conference by that name found."
            return []
        return [m.get_first("Channel") or "" for m in items if (m.name or "").lower() == "confbridgelist"]


# --------------------------------------------------------------------------------------------
# the call under control


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_room() -> str:
    return str(100_000_000 + secrets.randbelow(900_000_000))


@dataclass(frozen=True)
class DutyTarget:
    """One number to ring at a member unit: its A or B duty phone (R5.3), or its line."""

    unit_code: str
    duty: str  # "A" | "B" | "line"
    number: str  # digits only


@dataclass
class Step:
    """One thing that happened, for the call log (A2): kind + data (numbers masked)."""

    kind: str
    data: dict[str, Any]
    at: datetime


@dataclass
class ControlledCall:
    uniqueid: str  # the citizen's channel
    citizen_channel: str
    operator_endpoint: str  # op8001
    operator_channel: str | None  # None while the operator is out of the call (left a conference)
    room: str
    state: str = "talking"  # talking | consulting | conference | transferred | ended
    consult_room: str | None = None
    unit_channel: str | None = None  # the unit's leg (Local ...;1) in the consult room or conference
    unit: DutyTarget | None = None
    case_number: str | None = None
    in_room: bool = False  # citizen and operator already moved into the room
    unit_uniqueid: str | None = None  # the unit leg's uniqueid (found again after a restart by it)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def snapshot(self) -> dict[str, Any]:
        """What a restarted process needs to give the call back to its operator (stored with the
        call's log, callcenter.callcontrol.recovery). Uniqueids, not channel names: a unit leg's name
        carries the duty phone's number; names are looked up again from Asterisk."""
        return {"v": 1, "uniqueid": self.uniqueid, "operator": self.operator_endpoint, "room": self.room,
                "state": self.state, "consult_room": self.consult_room, "in_room": self.in_room,
                "case_number": self.case_number, "unit_uniqueid": self.unit_uniqueid,
                "unit": ({"unit": self.unit.unit_code, "duty": self.unit.duty} if self.unit else None)}


@dataclass
class Outcome:
    """What an operation did: the call's state now, and the steps to log."""

    call: ControlledCall
    steps: list[Step]
    connected: DutyTarget | None = None

    def as_dict(self) -> dict[str, Any]:
        c = self.call
        return {
            "uniqueid": c.uniqueid, "state": c.state, "room": c.room,
            "operator_in_call": c.operator_channel is not None,
            "unit": ({"unit": c.unit.unit_code, "duty": c.unit.duty} if c.unit else None),
            "connected": ({"unit": self.connected.unit_code, "duty": self.connected.duty}
                          if self.connected else None),
            "steps": [{"kind": s.kind, **s.data} for s in self.steps],
        }


class CallControl:
    """Transfers and conferences of operators' calls, one registry per process."""

    def __init__(self, pbx: Pbx, *, ring_seconds: float = DEFAULT_RING_SECONDS,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.pbx = pbx
        self.ring_seconds = ring_seconds
        self.clock = clock
        self.calls: dict[str, ControlledCall] = {}
        self._global = asyncio.Lock()
        # set by callcenter.callcontrol.recovery once the calls held before a restart are back; until
        # then no call is resolved (an operator's conference would look like nobody's)
        self.restored: asyncio.Event | None = None
        self.restore_wait = 10.0

    def step(self, kind: str, **data: Any) -> Step:
        return Step(kind, data, self.clock())

    # -- who holds the call ---------------------------------------------------------------------
    async def resolve(self, endpoint: str | None, uniqueid: str, *, known: bool = False) -> ControlledCall:
        """The call ``uniqueid`` if the operator at ``endpoint`` ("op8001"; None: the user has no
        phone) holds it. ``known``: the store has logged this call (a vanished channel then is a
        hung-up call, 410, not an unknown one, 404)."""
        await self.wait_restored()
        async with self._global:
            cc = self.calls.get(uniqueid)
            chan = await self.pbx.channel(uniqueid)
            if chan is None:
                if cc is not None or known:
                    if cc is not None:
                        cc.state = "ended"
                    raise CallHungUp(uniqueid)
                raise UnknownCall(uniqueid)
            if cc is not None and cc.state not in ("ended", "transferred"):
                if endpoint is None or cc.operator_endpoint != endpoint:
                    raise NotCallOwner(uniqueid)
                return cc
            if cc is not None and cc.state == "transferred":
                raise CallStateError("the call was transferred; it is no longer the operator's")
            peers = await self.pbx.bridge_peers(chan)
            # the driver names its operator legs (Asterisk: PJSIP/op8001-..., Twilio: client:op8001)
            endpoint_of = getattr(self.pbx, "endpoint_of", None) or (lambda c: endpoint_of_channel(c.name))
            operators = [(ep, p) for p in peers if (ep := endpoint_of(p))]
            if not operators:
                raise CallStateError("the call is not connected to an operator (still in the menu or queue?)")
            if endpoint is None or all(ep != endpoint for ep, _ in operators):
                raise NotCallOwner(uniqueid)
            op_chan = next(p for ep, p in operators if ep == endpoint)
            cc = ControlledCall(uniqueid=uniqueid, citizen_channel=chan.name, operator_endpoint=endpoint,
                                operator_channel=op_chan.name, room=new_room())
            self.calls[uniqueid] = cc
            return cc

    def forget(self, uniqueid: str) -> None:
        self.calls.pop(uniqueid, None)

    async def wait_restored(self) -> None:
        if self.restored is None or self.restored.is_set():
            return
        ami = getattr(self.pbx, "ami", None)
        if ami is not None and not getattr(ami, "connected", True):
            raise PbxUnavailable()  # nothing to wait for until Asterisk is back
        try:
            await asyncio.wait_for(self.restored.wait(), self.restore_wait)
        except TimeoutError:
            raise PbxUnavailable("call control is still taking back the calls held before a restart; "
                                 "try again shortly") from None

    # -- ringing a unit: A first, B when A does not answer -----------------------------------------
    async def ring_unit(self, targets: list[DutyTarget], room: str,
                        steps: list[Step]) -> tuple[DutyTarget, DialResult] | None:
        """Originate each target into ``room`` in turn until one answers; every try is a step."""
        for target in targets:
            steps.append(self.step("unit_dial", unit=target.unit_code, duty=target.duty,
                                   number=mask_phone(target.number), room=room))
            result = await self.pbx.dial_into_room(target.number, room, self.ring_seconds)
            steps.append(self.step("unit_dial_result", unit=target.unit_code, duty=target.duty,
                                   number=mask_phone(target.number), result=result.reason))
            if result.answered:
                return target, result
        return None

    # -- warm transfer ----------------------------------------------------------------------------
    async def start_warm_transfer(self, cc: ControlledCall, targets: list[DutyTarget]) -> Outcome:
        """Hold the citizen (music), put the operator in a private room with the unit's duty phone."""
        if not targets:
            raise CallStateError("the unit has no duty phone to call (roster A/B and line all empty)")
        async with cc.lock:
            if cc.state != "talking" or cc.operator_channel is None:
                raise CallStateError(f"a warm transfer starts from a call the operator is talking on (now: {cc.state})")
            steps: list[Step] = []
            cc.consult_room = new_room()
            await self.pbx.redirect(cc.citizen_channel, "cc-room-citizen", cc.room,
                                    extra=(cc.operator_channel, "cc-room-operator", cc.consult_room))
            cc.in_room = True
            cc.state = "consulting"
            steps.append(self.step("hold", room=cc.room, reason="warm_transfer"))
            answered = await self.ring_unit(targets, cc.consult_room, steps)
            if answered is None:
                # nobody answered: the operator goes back to the citizen
                await self._operator_back(cc)
                steps.append(self.step("transfer_failed", unit=targets[0].unit_code, reason="no_answer"))
                steps.append(self.step("unhold", room=cc.room))
                return Outcome(cc, steps)
            target, result = answered
            cc.unit_channel, cc.unit, cc.unit_uniqueid = result.channel, target, result.uniqueid or None
            steps.append(self.step("consult", unit=target.unit_code, duty=target.duty))
            return Outcome(cc, steps, connected=target)

    async def _operator_back(self, cc: ControlledCall) -> None:
        cc.state = "talking"
        cc.consult_room = None
        if cc.operator_channel is not None:
            await self.pbx.redirect(cc.operator_channel, "cc-room-operator", cc.room)

    async def complete_transfer(self, cc: ControlledCall) -> Outcome:
        """The unit takes the citizen; the operator's leg ends."""
        async with cc.lock:
            if cc.state != "consulting" or cc.unit_channel is None:
                raise CallStateError("no warm transfer with a unit on the line to complete")
            unit_chan = cc.unit_channel
            if cc.operator_channel is not None:
                await self.pbx.redirect(unit_chan, "cc-room-unit", cc.room,
                                        extra=(cc.operator_channel, "cc-hangup", "s"))
            else:
                await self.pbx.redirect(unit_chan, "cc-room-unit", cc.room)
            cc.state = "transferred"
            cc.operator_channel = None
            cc.consult_room = None
            unit = cc.unit
            return Outcome(cc, [self.step("transfer_completed", unit=unit.unit_code if unit else None,
                                          duty=unit.duty if unit else None, room=cc.room)], connected=unit)

    async def cancel_transfer(self, cc: ControlledCall) -> Outcome:
        """Hang up the unit, return the operator to the citizen."""
        async with cc.lock:
            if cc.state != "consulting":
                raise CallStateError("no warm transfer in progress to cancel")
            unit = cc.unit
            if cc.unit_channel is not None:
                await self.pbx.hangup(cc.unit_channel)
            cc.unit_channel, cc.unit, cc.unit_uniqueid = None, None, None
            await self._operator_back(cc)
            return Outcome(cc, [self.step("transfer_cancelled", unit=unit.unit_code if unit else None,
                                          duty=unit.duty if unit else None),
                                self.step("unhold", room=cc.room)])

    # -- blind transfer (R7.3f convenience service center) ------------------------------------------
    async def blind_transfer(self, cc: ControlledCall, target: DutyTarget) -> Outcome:
        async with cc.lock:
            if cc.state not in ("talking",) or cc.operator_channel is None:
                raise CallStateError(f"a transfer starts from a call the operator is talking on (now: {cc.state})")
            await self.pbx.redirect(cc.citizen_channel, "cc-transfer", target.number,
                                    extra=(cc.operator_channel, "cc-hangup", "s"))
            cc.state = "transferred"
            cc.operator_channel = None
            return Outcome(cc, [self.step("transfer_blind", unit=target.unit_code, duty=target.duty,
                                          number=mask_phone(target.number))], connected=target)
