"""The missed-call callbacks' PBX port over AMI (issue 14 item 4): the operator's phone is what is
originated, into `[outbound-callback]` with the citizen's number as the extension (the dialplan
writes the ledger entry and dials the citizen once the operator answered); an operator is free when
logged in, not paused, not on a call, and nobody waits in the queue (live callers come first); a
call's end event gives the citizen's dial status. Against the fake AMI server."""
from __future__ import annotations

import asyncio

from callcenter.ami.client import AMIClient
from callcenter.ami.fake import _reply
from callcenter.callbacks import AmiMissedCallPbx
from tests.callback_fake_pbx import FakePBX


def _member(action, ext: str, *, status: int = 1, paused: str = "0", in_call: str = "0") -> dict:
    return {"Event": "QueueMember", "ActionID": action.action_id, "Queue": "hotline-12345", "Name": f"op{ext}",
            "Location": f"PJSIP/op{ext}", "StateInterface": f"PJSIP/op{ext}", "Status": str(status),
            "Paused": paused, "InCall": in_call}


async def test_issue14_free_operators_the_operator_first_originate_and_the_end_event():
    waiting: list[dict] = []

    def queue_status(session, action):
        items = [_member(action, "8001"), _member(action, "8002", paused="1"), _member(action, "8003", status=2),
                 _member(action, "8004", in_call="1"), _member(action, "8005", status=5),
                 *({**w, "ActionID": action.action_id} for w in waiting)]
        return [_reply(action, Response="Success", EventList="start", Message="Queue status will follow"), *items,
                {"Event": "QueueStatusComplete", "ActionID": action.action_id, "EventList": "Complete",
                 "ListItems": len(items)}]

    async with FakePBX() as pbx:
        pbx.server.handlers["queuestatus"] = queue_status
        ami = AMIClient(*pbx.client_args(), action_timeout=2)
        await ami.start()
        port = AmiMissedCallPbx(ami)
        try:
            assert await port.free_operators(timeout=2) == ["8001"]
            waiting.append({"Event": "QueueEntry", "Queue": "hotline-12345", "Position": "1",
                            "CallerIDNum": "13800000009"})
            assert await port.free_operators(timeout=2) == []  # a caller waits: no callback now

            await port.originate_via_operator(operator="8001", phone="13800000001", key="mc-1", channel_id="p-mc-1",
                                              context="outbound-callback", caller_id='"12345" <12345>',
                                              ring_timeout=20)
            (sent,) = pbx.server.actions_named("Originate")
            assert (sent.get_first("Channel"), sent.get_first("Context"), sent.get_first("Exten"),
                    sent.get_first("ChannelId")) == ("PJSIP/op8001", "outbound-callback", "13800000001", "p-mc-1")
            assert set(sent.get_all("Variable")) == {"__CALLBACK_KEY=mc-1", "__CALLBACK_LEDGER=p-mc-1"}

            ended: list[tuple[str, str]] = []
            port.on_callback_end(lambda chan, status: ended.append((chan, status)))
            pbx.server.broadcast({"Event": "UserEvent", "UserEvent": "CallcenterCallbackDial", "Ledger": "p-mc-1"},
                                 {"Event": "UserEvent", "UserEvent": "CallcenterCallbackEnd", "Ledger": "p-mc-1",
                                  "DialStatus": "ANSWER"})
            for _ in range(100):
                if ended:
                    break
                await asyncio.sleep(0.01)
            assert ended == [("p-mc-1", "ANSWER")]
        finally:
            await port.stop()
