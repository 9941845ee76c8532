"""Self-service while waiting, on the real Asterisk (issue 14 item 6; GB/T 33358-2016: no voice menu
before an operator, so the menu's self-service is offered while the caller waits).

Three citizens (originated Local channels put straight into the queue context, as in
test_board_live.py; their `;1` halves send silence so keys are never stuck) wait while the only
operator (baresip op8004, auto-answer) is paused. The second presses 5 (AMI PlayDTMF onto its `;1`):
Asterisk takes it out of the queue into [queue-self-service] (queues.conf `context`), our FastAGI
server runs the main menu's own progress step (entry `waiting`), the citizen keys a case number when
the menu asks (its CallcenterAwaitInput UserEvent) and hears the case's status; the dialplan puts them
back at position 2: behind the citizen who joined before them, ahead of the one who joined after.
The operator, unpaused, answers the first citizen, then them, not the third. The call log has the
exit, the self-service and the return, and no abandon (A2); the figures count one offered, answered call.
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta

import pytest
from sqlalchemy import select

from callcenter.callcontrol import CallControl
from callcenter.simulate import DTMF_DURATION_MS, KEY_DELAY_S
from tests.live.helpers import AmiSession, agi_port_lock, hangup_channels, hold_tcp_port, originate_local, user_event
from tests.live.phones import operator_phones
from ticketing.audit import SYSTEM
from ticketing.enums import CaseKind, Channel
from ticketing.figures import CallFigures, Period
from ticketing.models import Call, CallEvent
from ticketing.store import session_scope

pytestmark = pytest.mark.live

OPERATOR = "8004"
QUEUE = "hotline-12345"
AHEAD, CALLER, BEHIND = "13912300020", "13912300021", "13912300022"


def _user_event(name: str, uid: str):
    return lambda m: m.name == "UserEvent" and m.get_first("UserEvent") == name and m.get_first("Uniqueid") == uid


async def _press(cc: CallControl, channel: str, keys: str) -> None:
    await asyncio.sleep(KEY_DELAY_S)  # the menu's GET DATA has started playing (callcenter/simulate.py)
    for key in keys:
        await cc.link.ami.send_action({"Action": "PlayDTMF", "Channel": channel, "Digit": key,
                                       "Duration": DTMF_DURATION_MS})
        await asyncio.sleep(0.05)


async def _citizen(cc: CallControl, caller: str) -> tuple[str, str]:
    """A citizen straight into the queue; returns (its `;1` channel name, the queued `;2` uniqueid)."""
    base = f"live-{uuid.uuid4().hex[:10]}"
    joined = asyncio.ensure_future(cc.link.wait_for(
        lambda m: m.name == "QueueCallerJoin" and m.get_first("Uniqueid") == f"{base}-2", 30))
    await asyncio.sleep(0)
    reply = await cc.link.ami.send_action({
        "Action": "Originate", "Channel": "Local/s@hotline-queue", "Context": "test-citizen", "Exten": "s",
        "Priority": "1", "CallerID": f'"citizen" <{caller}>', "Async": "true", "ChannelId": base,
        "OtherChannelId": f"{base}-2", "Timeout": "30000"})
    assert reply.success, reply
    await joined
    return cc.link.channels[base].name, f"{base}-2"


async def test_gbt33358_caller_waiting_checks_progress_by_key_5_and_is_answered_from_their_place(
        hotline, asterisk, tmp_path):
    with session_scope(hotline.sessions) as s:
        case = hotline.domain.workflow(s).accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE,
                                                 title="社保卡补办", description="咨询社保卡补办",
                                                 citizen_phone="13800000098")
        number = case.number
    cc = CallControl.from_settings(asterisk, hotline.sessions, hotline.domain)
    commands: list[str] = []  # the AGI commands run on the first citizen's channel
    await cc.start()
    try:
        with operator_phones(asterisk, tmp_path, [OPERATOR]):
            await cc.queue.login(OPERATOR, "刘洋", paused=True, reason="after_call_work")  # nobody free
            cc.wrapup.seconds = 1.0  # the operator's after-call work between the two calls
            ahead_leg, ahead = await _citizen(cc, AHEAD)
            first_leg, first = await _citizen(cc, CALLER)
            await _citizen(cc, BEHIND)
            joined_ms = await cc.link.ami.send_action({"Action": "Getvar", "Channel": cc.link.channels[first].name,
                                                       "Variable": "QUEUE_JOINED"})
            assert len(joined_ms.get_first("Value") or "") == 13, joined_ms  # epoch ms ([hotline-queue])
            cc.link.on_event(lambda m: commands.append(m.get_first("Command") or "")
                             if m.name == "AGIExecStart" and m.get_first("Uniqueid") == first else None)

            stepped_out = asyncio.ensure_future(cc.link.wait_for(_user_event("CallcenterQueueSelfService", first), 30))
            asked = asyncio.ensure_future(cc.link.wait_for(
                lambda m: _user_event("CallcenterAwaitInput", first)(m) and m.get_first("Node") == "progress_input",
                30))
            await asyncio.sleep(0)
            await _press(cc, first_leg, "5")
            exit_event = await stepped_out
            await asked
            returned = asyncio.ensure_future(cc.link.wait_for(_user_event("CallcenterQueueReturn", first), 60))
            rejoined = asyncio.ensure_future(cc.link.wait_for(
                lambda m: m.name == "QueueCallerJoin" and m.get_first("Uniqueid") == first, 60))
            await asyncio.sleep(0)
            await _press(cc, first_leg, number.replace("-", "") + "#")
            back, join = await returned, await rejoined
            assert (exit_event.get_first("Key"), exit_event.get_first("Position")) == ("5", "2")
            assert back.get_first("AgiStatus") == "SUCCESS"
            # back at the place they left: behind who joined before them, ahead of who joined after
            assert (back.get_first("Position"), join.get_first("Position")) == ("2", "2")

            connected = asyncio.ensure_future(cc.link.wait_for(lambda m: m.name == "AgentConnect", 60))
            await asyncio.sleep(0)
            await cc.queue.unpause(OPERATOR)
            assert (await connected).get_first("Uniqueid") == ahead
            connected = asyncio.ensure_future(cc.link.wait_for(lambda m: m.name == "AgentConnect", 90))
            await asyncio.sleep(0)
            await cc.link.ami.send_action({"Action": "Hangup", "Channel": ahead_leg})  # that call ends
            assert (await connected).get_first("Uniqueid") == first  # then theirs, not the third's
            await cc.link.calllog.flush()
    finally:
        link = cc.link
        for chan in list(link.channels.values()):
            if chan.linkedid.startswith("live-") and link.connected:
                with contextlib.suppress(Exception):
                    await link.ami.send_action({"Action": "Hangup", "Channel": chan.name})
        if link.connected:
            with contextlib.suppress(Exception):
                await cc.queue.logout(OPERATOR)
        await cc.link.calllog.flush()
        await cc.stop()

    # the caller heard the case's status through the menu's progress step, then the way back
    played = [c for c in commands if "hotline/" in c]
    assert any("hotline/progress_status_is" in c for c in played), played
    assert any("hotline/status_new" in c for c in played) and any("waiting_back_to_queue" in c for c in played)
    with hotline.sessions() as s:
        call = s.execute(select(Call).where(Call.uniqueid == first)).scalar_one()
        events = s.execute(select(CallEvent.kind, CallEvent.data).where(CallEvent.call_id == call.id)
                           .order_by(CallEvent.at, CallEvent.id)).all()
        kinds = [k for k, _ in events if k in ("queued", "queue_self_service", "self_service", "queue_returned",
                                                "operator_connected", "queue_abandoned")]
        service = next(d for k, d in events if k == "self_service")
        # the AGI's record is stamped by the test's fake clock; the queue's by Asterisk: compare sets
        assert sorted(kinds) == sorted(["queued", "queue_self_service", "self_service", "queue_returned", "queued",
                                        "operator_connected"]), kinds
        assert (service["case_number"], service["reason"]) == (number, "self_service_return")
        assert "progress_status" in service["path"]
        exit_data = next(d for k, d in events if k == "queue_self_service")
        assert (exit_data["key"], exit_data["position"]) == ("5", 2)
        assert call.outcome == "answered"
        # one offered call, answered, no abandon (R4.x figures read the same rows as the board)
        joined_at = next(c.at for c in s.execute(select(CallEvent).where(
            CallEvent.call_id == call.id, CallEvent.kind == "queued")).scalars())
        rows = CallFigures(s).queue_calls(Period(joined_at - timedelta(hours=1), joined_at + timedelta(hours=1)))
        mine = [r for r in rows if r.call_id == call.id]
        assert len(mine) == 1 and mine[0].answered and not mine[0].abandoned, mine
        assert mine[0].wait_s >= exit_data["waited"]


def test_with_fastagi_down_the_caller_who_pressed_5_is_back_in_the_queue_at_their_place(asterisk):
    """No caller is stranded: with nothing on the FastAGI port the self-service cannot run (AGISTATUS
    FAILURE) and the caller is back in the queue at once, at their place (behind the one who joined
    first). The queue's offer of key 5 is a prompt Asterisk finds for language zh."""
    with AmiSession(asterisk) as ami:
        _, played = originate_local(ami, "s", "test-playback",
                                    variables={"__PROMPT": "hotline/queue_self_service_offer"})
        assert ami.wait_for(user_event("CallcenterPlayback", Uniqueid=played), timeout=40)["Status"] == "SUCCESS"
        try:
            with agi_port_lock(asterisk), hold_tcp_port(asterisk.agi_host, asterisk.agi_port):
                ids = []
                for caller in (AHEAD, CALLER):
                    one = f"live-{uuid.uuid4().hex[:10]}"
                    two = f"{one}-2"
                    reply = ami.action({"Action": "Originate", "Channel": "Local/s@hotline-queue",
                                        "Context": "test-citizen", "Exten": "s", "Priority": "1",
                                        "CallerID": f'"citizen" <{caller}>', "Async": "true", "ChannelId": one,
                                        "OtherChannelId": two, "Timeout": "30000"})
                    assert reply.get("Response") == "Success", reply
                    ami.wait_for(lambda m, two=two: m.get("Event") == "QueueCallerJoin" and m.get("Uniqueid") == two,
                                 timeout=20)
                    ids.append((one, two))
                leg, mine = ids[1]  # the second caller presses 5
                channel = next(c for c in _channels(ami) if c.get("Uniqueid") == leg)["Channel"]
                ami.action({"Action": "PlayDTMF", "Channel": channel, "Digit": "5", "Duration": str(DTMF_DURATION_MS)})
                back = ami.wait_for(user_event("CallcenterQueueReturn", Uniqueid=mine), timeout=20)
                join = ami.wait_for(lambda m: m.get("Event") == "QueueCallerJoin" and m.get("Uniqueid") == mine,
                                    timeout=10)
            assert (back["AgiStatus"], back["Position"], join["Position"]) == ("FAILURE", "2", "2")
            assert not [m for m in ami.pending if m.get("Event") == "QueueCallerAbandon"]
        finally:
            hangup_channels(ami, "^Local/s@hotline-queue-.*")


def _channels(ami: AmiSession) -> list[dict]:
    ami.send({"Action": "CoreShowChannels", "ActionID": "qs-chans"})
    found = []
    while True:
        msg = ami.wait_for(lambda m: m.get("ActionID") == "qs-chans", timeout=10)
        if msg.get("Event") == "CoreShowChannelsComplete":
            return found
        found.append(msg)
