"""Call actions from the desk page with the browser phone (issue 17 item 2), on the real Asterisk: a
queued citizen is answered on the page (auto-answer); from the page's call actions the operator
transfers the call warm to the water company's duty phone A (baresip `unit-a`) and completes it, or
starts a three-way call with the emergency office, leaves it and rejoins (the browser phone is rung
back and answers by itself). Each step is in the call's log (A2). The fixture is the browser-phone
desk of test_webphone_live.py (operator 8005).
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.live.test_operators_live import seed_ivr_call
from tests.live.test_transfer_live import start_phones
from tests.live.test_webphone_live import EXT, desk, media, queue_citizen, registered  # noqa: F401 - desk is the fixture
from ticketing.models import Call, CallEvent
from ticketing.store import session_scope

pytestmark = pytest.mark.live


async def answered_call(st, tmp_path, caller: str) -> tuple[str, str]:
    """The page registered with auto-answer, in the queue; a citizen queued and answered; a case for
    them made on the API. Returns (the citizen channel's uniqueid, the case number)."""
    page = st.page
    st.cc.transfers.ring_seconds = 6
    await registered(page)
    await page.check("#webphone-auto")
    await st.cc.queue.login(EXT, "话务员8005")
    headers = await st.token(f"op{EXT}")
    r = await st.http.post("/api/v1/cases", headers=headers, json={
        "kind": "urgent_help", "channel": "mobile", "title": "自来水管爆裂", "description": "小区主水管爆裂",
        "citizen_phone": caller})
    assert r.status_code == 201, r.text
    base, uniqueid, _, _ = seed_ivr_call(st, caller=caller, with_case=False)
    await queue_citizen(st, caller, seconds=60, base=base)
    try:
        await page.wait_for_selector("#call-actions:not([hidden])", timeout=15000)
    except Exception:
        shown = [await page.text_content(sel) for sel in ("#webphone-reg", "#webphone-media", "#webphone-peer",
                                                          "#phone-status")]
        raise AssertionError(f"no call on the page: {shown}; queue {st.cc.link.queue_snapshot()}") from None
    await media(page, "flowing", timeout_s=30)
    await page.fill("#call-actions input[name=call-case]", r.json()["number"])
    return uniqueid, r.json()["number"]


def log_kinds(st, uniqueid: str) -> list[str]:
    with session_scope(st.sessions) as s:
        call = s.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one()
        return [e.kind for e in s.execute(select(CallEvent).where(CallEvent.call_id == call.id)
                                          .order_by(CallEvent.id)).scalars()]


async def test_r7_3_warm_transfer_from_the_page_unit_takes_the_citizen(desk, tmp_path):  # noqa: F811
    page = desk.page
    with start_phones(desk.settings, tmp_path / "phones", ["unit-a"]) as phones:
        uniqueid, _ = await answered_call(desk, tmp_path, "13912340061")
        await page.select_option("#call-actions select[name=call-unit]", "water_supply")
        await page.click("[data-call='transfer']")
        await page.wait_for_selector("#call-actions[data-state='consulting']", timeout=20000)
        phones["unit-a"].wait_event("CALL_ESTABLISHED", timeout=5)
        assert "A 岗" in await page.text_content("#call-actions .call-state")
        # only what the call's state allows is offered (the API refuses the rest with 409 anyway)
        assert await page.locator("[data-call='transfer/complete']").count() == 1
        assert await page.locator("[data-call='conference']").count() == 0
        await page.click("[data-call='transfer/complete']")
        await page.wait_for_selector("#call-actions[data-state='transferred']", timeout=10000)
        await media(page, "idle", timeout_s=10)  # the operator is free
    await desk.cc.link.flush_log()
    kinds = log_kinds(desk, uniqueid)
    assert [k for k in kinds if k in ("hold", "unit_dial", "unit_dial_result", "consult", "transfer_completed")] == \
        ["hold", "unit_dial", "unit_dial_result", "consult", "transfer_completed"], kinds
    assert desk.errors == []


async def test_r7_3g_three_way_from_the_page_operator_leaves_and_rejoins(desk, tmp_path):  # noqa: F811
    page = desk.page
    with start_phones(desk.settings, tmp_path / "phones", ["unit-a"]) as phones:
        uniqueid, _ = await answered_call(desk, tmp_path, "13912340062")
        await page.select_option("#call-actions select[name=call-unit]", "emergency_office")
        await page.click("[data-call='conference']")
        await page.wait_for_selector("#call-actions[data-state='conference']", timeout=20000)
        phones["unit-a"].wait_event("CALL_ESTABLISHED", timeout=5)
        await media(page, "flowing", timeout_s=10)
        await page.click("[data-call='conference/leave']")
        await page.wait_for_selector("#call-actions[data-state='left']", timeout=10000)
        await media(page, "idle", timeout_s=10)
        await page.click("[data-call='conference/rejoin']")  # the browser phone rings and answers itself
        await page.wait_for_selector("#call-actions[data-state='conference']", timeout=20000)
        await media(page, "flowing", timeout_s=10)
        legs = desk.cc.link.operator_channels(EXT)
        assert legs, "the operator's browser phone is in the room again"
    await desk.cc.link.flush_log()
    kinds = log_kinds(desk, uniqueid)
    # the application's steps in order; Asterisk's ConfBridgeJoin of the citizen may be logged
    # before the application's own conference_started entry (both come at the same moment)
    steps = [k for k in kinds if k in ("conference_started", "unit_dial", "unit_dial_result")]
    assert steps[:3] == ["conference_started", "unit_dial", "unit_dial_result"], kinds
    room = [k for k in kinds if k in ("conference_join", "conference_leave")]
    left = room.index("conference_leave")
    assert "conference_join" in room[:left] and "conference_join" in room[left:], kinds  # joined, left, back
    assert desk.errors == []
