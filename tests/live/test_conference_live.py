"""Three-way call on the real Asterisk (issue 4 §5; R7.3e, R7.3g, R7.4): citizen, operator (baresip
op8003) and the unit's duty phone (baresip unit-a) in one ConfBridge, checked with ConfbridgeList and
BridgeInfo; the operator leaves (citizen and unit stay) and rejoins, then rates the call live. Then the
same across a restart of the application (Asterisk keeps running): the call is given back to its
operator from the call log (callcenter.callcontrol.recovery)."""
from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from sqlalchemy import select

from tests.live.test_transfer_live import (  # noqa: F401  (the fixture)
    OPERATOR_EXT,
    PASSWORD,
    call_events,
    channels,
    citizen_calls_operator,
    hang_up,
    is_operator,
    is_unit_leg,
    new_case,
    post,
    stack,
    start_phones,
    wait_members,
)

EMERGENCY_A = "13900003602"


def bridge_channels(verify, bridge_id: str) -> list[str]:
    """Channel names in a bridge (AMI BridgeInfo)."""
    action_id = verify.send({"Action": "BridgeInfo", "BridgeUniqueid": bridge_id})
    names = []
    while True:
        msg = verify.wait_for(lambda m: m.get("ActionID") == action_id, timeout=5)
        if msg.get("Event") == "BridgeInfoChannel":
            names.append(msg["Channel"])
        elif msg.get("Event") == "BridgeInfoComplete":
            return sorted(names)


async def operator_leaves(st, phones, uid: str, room: str, citizen: str) -> None:
    """The operator steps out: their phone is hung up, citizen and unit stay in the room."""
    op_since = len(phones[f"op{OPERATOR_EXT}"].events)
    left = await post(st, f"/api/v1/calls/{uid}/conference/leave")
    assert left["operator_in_call"] is False
    phones[f"op{OPERATOR_EXT}"].wait_event("CALL_CLOSED", timeout=5, since=op_since)
    remaining = wait_members(st.verify, room, lambda m: len(m) == 2)
    assert citizen in remaining and any(is_unit_leg(m, EMERGENCY_A) for m in remaining)


async def operator_rejoins(st, phones, uid: str, room: str) -> list[str]:
    """The operator's phone is called back into the room; returns the three members."""
    op_since = len(phones[f"op{OPERATOR_EXT}"].events)
    back = await post(st, f"/api/v1/calls/{uid}/conference/rejoin")
    assert back["operator_in_call"] is True
    phones[f"op{OPERATOR_EXT}"].wait_event("CALL_ESTABLISHED", timeout=10, since=op_since)
    members = wait_members(st.verify, room, lambda m: len(m) == 3)
    assert any(is_operator(m) for m in members)
    return members


async def test_r7_3g_three_way_call_operator_leaves_and_rejoins_then_rates_it(stack, tmp_path):
    st = stack
    with start_phones(st.settings, tmp_path, [f"op{OPERATOR_EXT}", "unit-a"]) as phones:
        number = await new_case(st)
        uid, citizen = citizen_calls_operator(st.verify, phones)
        body = await post(st, f"/api/v1/calls/{uid}/conference", {"case_number": number, "unit": "emergency_office"})
        assert body["state"] == "conference" and body["connected"] == {"unit": "emergency_office", "duty": "A"}
        phones["unit-a"].wait_event("CALL_ESTABLISHED", timeout=5)
        room = body["room"]
        members = wait_members(st.verify, room, lambda m: len(m) == 3)
        assert citizen in members
        assert any(is_operator(m) for m in members) and any(is_unit_leg(m, EMERGENCY_A) for m in members)
        # the same three in one Asterisk bridge
        bridge = channels(st.verify)[uid]["bridge"]
        assert bridge_channels(st.verify, bridge) == members
        api_members = (await st.client.get(f"/api/v1/calls/{uid}/conference", headers=st.tokens["op"])).json()
        assert sorted(api_members["members"]) == members

        # the operator drops out: citizen and unit go on
        await operator_leaves(st, phones, uid, room, citizen)
        # and comes back: the operator's phone is called into the room
        members = await operator_rejoins(st, phones, uid, room)

        hang_up(st.verify, *members)
        out = await post(st, f"/api/v1/calls/{uid}/outcome",
                         {"case_number": number, "answer": "应急办已派人处置", "satisfaction": "satisfied"})
        assert out["status"] == "awaiting_close"
        kinds = [k for k, _ in call_events(st, uid)]
        assert kinds == ["conference_started", "unit_dial", "unit_dial_result", "conference_join",
                         "conference_leave", "conference_join", "live_outcome"]
        from ticketing.models import Case, WorkOrder
        from ticketing.store import session_scope

        with session_scope(st.sessions) as s:
            case = s.execute(select(Case).where(Case.number == number)).scalar_one()
            assert case.callback_required is False and case.satisfaction_source == "live_call"
            wos = s.execute(select(WorkOrder).where(WorkOrder.case_id == case.id)).scalars().all()
            assert [(w.unit.code, w.mode.value) for w in wos] == [("emergency_office", "three_way")]


# --------------------------------------------------------------------------------------------
# a restart of the application (not of Asterisk) while the three-way call goes on


class AppStack:
    """The API with its call-control link service (CallControl.from_settings: AMI link, transfers
    restored from the call log on the first resync) over one store; ``restart()`` throws the
    process's state away and builds it again, as a restarted server would."""

    def __init__(self, base, asterisk):
        self.base, self.settings = base, asterisk
        self.sessions, self.tokens, self.verify = base.sessions, base.tokens, base.verify
        self.cc = self.client = None

    async def start(self):
        from callcenter.api.app import create_app
        from callcenter.callcontrol import CallControl

        app = create_app(self.settings, domain=self.base.domain, engine=self.base.engine)
        self.cc = CallControl.from_settings(self.settings, self.sessions, self.base.domain)
        self.cc.transfers.ring_seconds = 6
        app.state.callcontrol = self.cc
        await self.cc.start()
        assert await self.cc.link.wait_resynced(15), "the link did not resync"
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test", timeout=60)

    async def stop(self):
        await self.client.aclose()
        await self.cc.stop()

    async def restart(self):
        await self.stop()
        await self.start()


@pytest.fixture
async def app_stack(stack):
    from callcenter.auth import create_user
    from ticketing.store import session_scope

    with session_scope(stack.sessions) as s:
        create_user(s, username="op2", password=PASSWORD, role="front_desk", operator_extension="8009",
                    now=stack.domain.clock())
    r = await stack.client.post("/api/v1/auth/token", json={"username": "op2", "password": PASSWORD})
    stack.tokens["op2"] = {"Authorization": f"Bearer {r.json()['access_token']}"}
    st = AppStack(stack, stack.settings)
    await st.start()
    try:
        yield st
    finally:
        await st.stop()


async def three_way(st, phones) -> tuple[str, str, str, list[str]]:
    number = await new_case(st)
    uid, citizen = citizen_calls_operator(st.verify, phones)
    body = await post(st, f"/api/v1/calls/{uid}/conference", {"case_number": number, "unit": "emergency_office"})
    assert body["state"] == "conference", body
    phones["unit-a"].wait_event("CALL_ESTABLISHED", timeout=5)
    members = wait_members(st.verify, body["room"], lambda m: len(m) == 3)
    return uid, citizen, body["room"], members


async def test_r7_3g_three_way_call_survives_an_application_restart_same_operator_leaves_and_rejoins(
        app_stack, tmp_path):
    st = app_stack
    with start_phones(st.settings, tmp_path, [f"op{OPERATOR_EXT}", "unit-a"]) as phones:
        uid, citizen, room, members = await three_way(st, phones)
        await st.restart()  # Asterisk and the room go on; the process's registry is gone
        assert (st.cc.recovery.restored_calls, st.cc.recovery.dropped_calls) == (1, 0)
        assert wait_members(st.verify, room, lambda m: len(m) == 3) == members

        r = await st.client.post(f"/api/v1/calls/{uid}/conference/leave", headers=st.tokens["op2"])
        assert r.status_code == 403 and r.json()["error"] == "call_owner", r.text
        listed = (await st.client.get(f"/api/v1/calls/{uid}/conference", headers=st.tokens["op"])).json()
        assert listed["state"] == "conference" and listed["room"] == room and sorted(listed["members"]) == members

        await operator_leaves(st, phones, uid, room, citizen)

        await st.restart()  # again, with the operator out of the room
        r = await st.client.post(f"/api/v1/calls/{uid}/conference/rejoin", headers=st.tokens["op2"])
        assert r.status_code == 403 and r.json()["error"] == "call_owner", r.text
        members = await operator_rejoins(st, phones, uid, room)
        hang_up(st.verify, *members)
        kinds = [k for k, d in call_events(st, uid) if "control" in d]
        assert kinds == ["conference_join", "conference_leave", "conference_join"]


async def test_a2_room_that_ended_while_the_application_was_down_is_dropped_410(app_stack, tmp_path):
    st = app_stack
    with start_phones(st.settings, tmp_path, [f"op{OPERATOR_EXT}", "unit-a"]) as phones:
        uid, citizen, room, members = await three_way(st, phones)
        await st.stop()
        hang_up(st.verify, *members)  # everyone hangs up during the downtime: the room ends
        deadline = time.monotonic() + 10
        while any(c["name"] in members for c in channels(st.verify).values()):
            assert time.monotonic() < deadline, "the room's members did not hang up"
            await asyncio.sleep(0.2)
        await st.start()
        assert (st.cc.recovery.restored_calls, st.cc.recovery.dropped_calls) == (0, 1)
        for path in ("conference/leave", "conference/rejoin"):
            r = await st.client.post(f"/api/v1/calls/{uid}/{path}", headers=st.tokens["op"])
            assert r.status_code == 410 and r.json()["error"] == "call_ended", r.text
        r = await st.client.get(f"/api/v1/calls/{uid}/conference", headers=st.tokens["op"])
        assert r.status_code == 410, r.text
        r = await st.client.post("/api/v1/calls/no-such-call.1/conference/leave", headers=st.tokens["op"])
        assert r.status_code == 404 and r.json()["error"] == "call_unknown", r.text
