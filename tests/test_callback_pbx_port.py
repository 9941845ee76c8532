"""The callback runner's PBX port over AMI (issue 10 item 3; R7.4): AMI's answers and errors
become the port's outcomes, and the one the exactly-once bookkeeping rests on is kept: certainly
not sent (`NotSent`: the same key may go again) versus may have run (`OutcomeUnknown`: never
dialled again blindly). Against the fake PBX of tests/callback_fake_pbx.py."""
from __future__ import annotations

import asyncio
import gc
import warnings

import pytest
from sqlalchemy import select

from callback import attempts as A
from callback.pbx import ANSWERED, NOT_ANSWERED, REFUSED, DialResult, NotSent, OutcomeUnknown
from callback.runner import CallbackRunner
from callcenter.ami.client import AMIClient
from callcenter.ami.errors import AMILinkLost
from callcenter.ami.fake import _reply
from callcenter.callbacks import LEDGER_FAMILY, AmiCallbackPbx
from tests.callback_fake_pbx import FakePBX
from tests.live.callback_helpers import reported_case
from ticketing.models import CallbackAttempt
from ticketing.store import session_scope

DIAL = dict(phone="13800000001", key="cb-1-1", case_number="20260304-000001", context="outbound-callback",
            caller_id='"12345" <12345>', dial_timeout=5)


async def _port(pbx: FakePBX) -> AmiCallbackPbx:
    ami = AMIClient(*pbx.client_args(), action_timeout=2)
    await ami.start()
    return AmiCallbackPbx(ami)


async def test_issue10_originate_as_the_dialplan_expects_and_its_answers():
    async with FakePBX(busy_after=0.01) as pbx:
        port = await _port(pbx)
        try:
            assert port.connected
            assert await port.originate(channel_id="t-1", **DIAL) == DialResult(NOT_ANSWERED, reason=5)
            (sent,) = pbx.server.actions_named("Originate")
            assert (sent.get_first("Channel"), sent.get_first("Context"), sent.get_first("Exten"),
                    sent.get_first("ChannelId")) == ("Local/13800000001@outbound-callback", "outbound-callback",
                                                     "survey", "t-1")
            assert set(sent.get_all("Variable")) == {"__CALLBACK_KEY=cb-1-1", "__CALLBACK_LEDGER=t-1",
                                                     "CALLBACK_CASE=20260304-000001"}
            # the ledger the dialplan writes before it dials
            assert await port.ledger_has("t-1", timeout=2)
            await port.ledger_forget("t-1", timeout=2)
            assert not await port.ledger_has("t-1", timeout=2)
            assert pbx.server.actions_named("DBGet")[0].get_first("Family") == LEDGER_FAMILY

            pbx.server.handlers["originate"] = lambda s, a: [_reply(a, Response="Error", Message="no such context")]
            assert await port.originate(channel_id="t-2", **DIAL) == DialResult(REFUSED, message="no such context")
            pbx.server.handlers["originate"] = pbx.server._originate  # the fake's own: answered
            assert (await port.originate(channel_id="t-3", **DIAL)).outcome == ANSWERED
        finally:
            await port.stop()


async def test_issue10_channels_up_and_hangup_by_unique_id():
    async with FakePBX() as pbx:
        pbx.server.channels = [{"Channel": "Local/1@outbound-callback-00000001;1", "Uniqueid": "t-9"}]
        port = await _port(pbx)
        hung: list[str] = []
        sub = port.on_hangup(hung.append)
        try:
            assert await port.channels_up(timeout=2) == {"t-9"}
            pbx.server.handlers["hangup"] = lambda s, a: [_reply(a, Response="Success")]
            await port.hangup("t-9")
            assert [a.get_first("Channel") for a in pbx.server.actions_named("Hangup")] == [
                "Local/1@outbound-callback-00000001;1"]
            pbx.server.broadcast({"Event": "Hangup", "Uniqueid": "t-9", "Channel": "x"})
            for _ in range(100):
                if hung:
                    break
                await asyncio.sleep(0.01)
            assert hung == ["t-9"]
        finally:
            sub.close()
            await port.stop()


async def test_issue10_link_down_is_not_sent_and_a_lost_answer_is_unknown():
    never_started = AmiCallbackPbx(AMIClient("127.0.0.1", 9, "nobody", "x"))
    assert not never_started.connected
    with pytest.raises(NotSent):
        never_started.originate(channel_id="t-1", **DIAL)  # raised before anything is written

    async with FakePBX() as pbx:
        pbx.server.hold.add("originate")  # written, never answered...
        port = await _port(pbx)
        try:
            dialling = port.originate(channel_id="t-2", **DIAL)
            await pbx.server.wait_for_action("Originate")
            pbx.server.drop_all()  # ...and the link drops: it may have run
            with pytest.raises(OutcomeUnknown) as lost:
                await dialling
            assert isinstance(lost.value.__cause__, AMILinkLost)
        finally:
            await port.stop()


async def test_issue10_a_dial_nobody_awaits_is_closed_cleanly():
    async with FakePBX() as pbx:
        port = await _port(pbx)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # "coroutine ... was never awaited" would fail here
                port.originate(channel_id="t-1", **DIAL).close()
                gc.collect()
        finally:
            await port.stop()


async def test_r7_4_an_attempt_not_sent_goes_back_with_the_same_key(seeded, domain):
    """The link is down when the slot opens: nothing was dialled, so the attempt is scheduled again
    under the same key (never a second key for one attempt, never a dial counted)."""
    reported_case(seeded, domain, "13800000001")
    runner = CallbackRunner(domain, seeded, AmiCallbackPbx(AMIClient("127.0.0.1", 9, "nobody", "x")))
    try:
        assert await runner.sweep() == 1
    finally:
        await runner.stop(wait=True)
    assert runner.stats.outcomes == {"not_sent": 1}
    with session_scope(seeded) as s:
        (attempt,) = s.execute(select(CallbackAttempt)).scalars().all()
        assert (attempt.state, attempt.attempt_no) == (A.SCHEDULED, 1)
