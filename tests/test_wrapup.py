"""After-call work (issue 17 item 3): after each queue call the operator is held out of the queue
for the configured time with the pause reason `after_call_work` (shown on the desk and the board
with the time left), released by itself when the time is up, and never overriding a pause of the
operator's own. Against the fake AMI server of tests/test_callcontrol_link.py."""
from __future__ import annotations

import asyncio
import time

import pytest

from callcenter.ami.client import AMIClient
from callcenter.callcontrol import CallControl
from tests.test_callcontrol_link import QUEUE, Fake, until

WRAP_S = 0.6


@pytest.fixture
async def fake():
    f = Fake()
    await f.server.start()
    try:
        yield f
    finally:
        await f.server.close()


def make_cc(fake, sessions, domain, seconds=WRAP_S):
    ami = AMIClient("127.0.0.1", fake.server.port, fake.server.username, fake.server.secret,
                    reconnect_backoff=(0.05, 0.2), ping_interval=5)
    return CallControl.create(ami, sessions, domain, after_call_work_s=seconds)


def pauses(fake) -> list[tuple[str, str]]:
    return [(a.get_first("Paused"), a.get_first("Reason") or "") for a in fake.server.actions_named("QueuePause")]


def member_added(fake, ext="8001", paused="0", reason=""):
    fake.event(Event="QueueMemberAdded", Queue=QUEUE, Interface=f"PJSIP/op{ext}", MemberName="王芳",
               StateInterface=f"PJSIP/op{ext}", Status="1", Paused=paused, PausedReason=reason, InCall="0")


def call_ended(fake, ext="8001", queue=QUEUE):
    fake.event(Event="AgentComplete", Queue=queue, Interface=f"PJSIP/op{ext}", MemberName="王芳",
               Uniqueid="c1", Linkedid="c1", HoldTime="3", TalkTime="40", Reason="caller")


async def test_after_each_queue_call_the_operator_wraps_up_then_is_offered_calls_again(fake, sessions, domain):
    cc = make_cc(fake, sessions, domain)
    await cc.start()
    board = cc.board.subscribe()
    try:
        member_added(fake)
        await until(lambda: cc.queue.member("8001") is not None)
        before = time.time()
        call_ended(fake)
        await until(lambda: pauses(fake) == [("true", "after_call_work")])
        await until(lambda: cc.queue.member("8001").wrap_up_until is not None)
        shown = cc.queue.state_of("8001")["member"]
        assert shown["paused_reason"] == "after_call_work"
        assert before + WRAP_S <= shown["wrap_up_until"] <= time.time() + WRAP_S
        # the wallboard shows it: pushed to its viewers although no AMI event announced it
        while True:
            event = await board.get(3)
            ops = event["state"]["operators"]["list"] if event and event["type"] == "board" else []
            if ops and ops[0]["wrap_up_until"] is not None:
                break
        assert ops[0]["wrap_up_until"] == shown["wrap_up_until"] and ops[0]["paused_reason"] == "after_call_work"
        await until(lambda: pauses(fake) == [("true", "after_call_work"), ("false", "")], timeout=WRAP_S + 3)
        # the wrap-up ends once the unpause is answered: a moment after the action went out
        await until(lambda: cc.queue.state_of("8001")["member"]["wrap_up_until"] is None)
        # a call of another queue (none here) does not start a wrap-up
        call_ended(fake, queue="other-queue")
        await asyncio.sleep(0.2)
        assert len(pauses(fake)) == 2
    finally:
        board.close()
        await cc.stop()


async def test_a_break_taken_before_or_during_wrap_up_is_the_operators_own(fake, sessions, domain):
    cc = make_cc(fake, sessions, domain)
    await cc.start()
    try:
        member_added(fake, paused="1", reason="meal")
        await until(lambda: cc.queue.member("8001") is not None)
        call_ended(fake)  # a call taken by a member who paused meanwhile (e.g. ringing when pausing)
        await asyncio.sleep(WRAP_S + 0.3)
        assert pauses(fake) == [] and cc.queue.member("8001").paused_reason == "meal"

        await cc.queue.unpause("8001")
        call_ended(fake)
        await until(lambda: pauses(fake)[-1] == ("true", "after_call_work"))
        await cc.queue.unpause("8001")  # ready early ("就绪")
        await cc.queue.pause("8001", "meal")  # and then off to lunch: the wrap-up's end must not unpause
        await asyncio.sleep(WRAP_S + 0.3)
        assert pauses(fake)[-1] == ("true", "meal") and cc.queue.member("8001").paused_reason == "meal"
    finally:
        await cc.stop()


async def test_a_wrap_up_found_at_start_is_released_after_the_time(fake, sessions, domain):
    """The process that would have ended a wrap-up died: the next one releases the operator."""
    fake.queue_items = [
        {"Event": "QueueParams", "Queue": QUEUE},
        {"Event": "QueueMember", "Queue": QUEUE, "Name": "王芳", "Location": "PJSIP/op8001",
         "StateInterface": "PJSIP/op8001", "Status": "1", "Paused": "1", "PausedReason": "after_call_work",
         "InCall": "0", "CallsTaken": "3"},
    ]
    cc = make_cc(fake, sessions, domain)
    await cc.start()
    try:
        await until(lambda: ("false", "") in pauses(fake), timeout=WRAP_S + 3)
        assert ("true", "after_call_work") not in pauses(fake)
    finally:
        await cc.stop()


async def test_no_wrap_up_when_its_time_is_zero(fake, sessions, domain):
    cc = make_cc(fake, sessions, domain, seconds=0)
    await cc.start()
    try:
        member_added(fake)
        await until(lambda: cc.queue.member("8001") is not None)
        call_ended(fake)
        await asyncio.sleep(0.3)
        assert pauses(fake) == []
    finally:
        await cc.stop()
