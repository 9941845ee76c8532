"""Three-way call on the real Asterisk (issue 4 §5; R7.3e, R7.3g, R7.4): citizen, operator (baresip
op8003) and the unit's duty phone (baresip unit-a) in one ConfBridge, checked with ConfbridgeList and
BridgeInfo; the operator leaves (citizen and unit stay) and rejoins, then rates the call live."""
from __future__ import annotations

from sqlalchemy import select

from tests.live.test_transfer_live import (  # noqa: F401  (the fixture)
    OPERATOR_EXT,
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
        op_since = len(phones[f"op{OPERATOR_EXT}"].events)
        left = await post(st, f"/api/v1/calls/{uid}/conference/leave")
        assert left["operator_in_call"] is False
        phones[f"op{OPERATOR_EXT}"].wait_event("CALL_CLOSED", timeout=5, since=op_since)
        members = wait_members(st.verify, room, lambda m: len(m) == 2)
        assert citizen in members and any(is_unit_leg(m, EMERGENCY_A) for m in members)

        # and comes back: the operator's phone is called into the room
        op_since = len(phones[f"op{OPERATOR_EXT}"].events)
        back = await post(st, f"/api/v1/calls/{uid}/conference/rejoin")
        assert back["operator_in_call"] is True
        phones[f"op{OPERATOR_EXT}"].wait_event("CALL_ESTABLISHED", timeout=10, since=op_since)
        members = wait_members(st.verify, room, lambda m: len(m) == 3)
        assert any(is_operator(m) for m in members)

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
