"""Three-way calls (三方通话, issue 4 §5): citizen, operator and a member unit in one ConfBridge.

Used for R7.3a (consultation answered with the unit on the line), R7.3e (urgent help, public
service) and R7.3g (urgent help, emergency management office). One AMI Redirect with ExtraChannel
moves the citizen and the operator into the call's room; the unit's duty phone is originated into
it (A role first, B when A does not answer). The operator may drop out (the leg is hung up; the
citizen and the unit stay) and rejoin (the operator's phone is called into the room again). R7.4:
the operator then rates the call live (``Workflow.record_live_outcome``); no callback follows.
"""
from __future__ import annotations

from callcenter.callcontrol.transfer import (
    CallControl,
    CallStateError,
    ControlledCall,
    DutyTarget,
    Outcome,
    Step,
)

OPERATOR_RING_SECONDS = 20


async def start_three_way(control: CallControl, cc: ControlledCall, targets: list[DutyTarget]) -> Outcome:
    """Move citizen and operator into the room and ring the unit into it. If nobody at the unit
    answers, citizen and operator stay together in the room (state ``talking``)."""
    if not targets:
        raise CallStateError("the unit has no duty phone to call (roster A/B and line all empty)")
    async with cc.lock:
        if cc.state != "talking" or cc.operator_channel is None:
            raise CallStateError(f"a three-way call starts from a call the operator is talking on (now: {cc.state})")
        steps: list[Step] = []
        if not cc.in_room:
            await control.pbx.redirect(cc.citizen_channel, "cc-room-citizen", cc.room,
                                       extra=(cc.operator_channel, "cc-room-operator", cc.room))
            cc.in_room = True
        steps.append(control.step("conference_started", room=cc.room))
        answered = await control.ring_unit(targets, cc.room, steps)
        if answered is None:
            steps.append(control.step("conference_failed", unit=targets[0].unit_code, reason="no_answer"))
            return Outcome(cc, steps)
        target, result = answered
        cc.unit_channel, cc.unit, cc.unit_uniqueid = result.channel, target, result.uniqueid or None
        cc.state = "conference"
        steps.append(control.step("conference_join", party="unit", unit=target.unit_code, duty=target.duty))
        return Outcome(cc, steps, connected=target)


async def leave(control: CallControl, cc: ControlledCall) -> Outcome:
    """The operator drops out; citizen and unit go on talking."""
    async with cc.lock:
        if cc.state != "conference":
            raise CallStateError("the operator can only leave a three-way call in progress")
        if cc.operator_channel is None:
            raise CallStateError("the operator has already left the three-way call")
        channel, cc.operator_channel = cc.operator_channel, None
        await control.pbx.hangup(channel)
        return Outcome(cc, [control.step("conference_leave", party="operator", endpoint=cc.operator_endpoint)])


async def rejoin(control: CallControl, cc: ControlledCall) -> Outcome:
    """Call the operator's phone into the room again."""
    async with cc.lock:
        if cc.state != "conference":
            raise CallStateError("there is no three-way call in progress to rejoin")
        if cc.operator_channel is not None:
            raise CallStateError("the operator is still in the three-way call")
        result = await control.pbx.call_endpoint_into_room(cc.operator_endpoint, cc.room, "cc-room-operator",
                                                          OPERATOR_RING_SECONDS)
        if not result.answered:
            raise CallStateError(f"the operator's phone did not answer ({result.reason})")
        cc.operator_channel = result.channel
        return Outcome(cc, [control.step("conference_join", party="operator", endpoint=cc.operator_endpoint)])


async def members(control: CallControl, cc: ControlledCall) -> list[str]:
    """Channel names in the call's room right now (ConfbridgeList)."""
    return await control.pbx.room_members(cc.room)
