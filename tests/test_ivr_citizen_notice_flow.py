"""The voice notice to a citizen (ivr_flows/citizen_notice.yaml; issue 14, R8.2 and the portal's
confirmation): the case number, the unit that has it and when it answers are said; heard to its
end the notice is delivered (before the "press 1 to hear it again" menu); key 1 repeats it; a
hang-up before its end records nothing. And over FastAGI: `ivr/notify` picks this flow for a
citizen's notice by the call's key, with the facts from the store (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from agi.hotline import Hotline, router_for
from agi.server import FastAGIServer
from agi.testing import FakeAsterisk
from callback import notify as N
from callcenter.pbx.root import RECORDINGS_DIR
from ivr_flows import flow_path
from ivr_flows.engine import FlowRunner, load_flow
from ivr_flows.scripted import ScriptedDriver
from tests.test_citizen_notices import CITIZEN, _notified
from ticketing.models import Call, Case
from ticketing.notification_model import NotificationDelivery
from ticketing.store import session_scope

CASE = "20260302000123"


@pytest.fixture(scope="module")
def flow():
    return load_flow(flow_path("citizen_notice"))


async def run(flow, keys, **facts):
    driver, acks = ScriptedDriver(keys), []

    async def acknowledge_notice() -> dict:
        acks.append(1)
        return {"acknowledged": True}
    variables = {"caller": "", "notice_kind": "unit_notice", "case_number": CASE, "unit_prompt": "unit_water_supply",
                 "due_date": "2026-03-20", **facts}
    return await FlowRunner(flow, driver, {"acknowledge_notice": acknowledge_notice}, variables).run(), driver, acks


async def test_r8_2_the_notice_says_case_unit_and_deadline_and_is_heard_before_the_menu(flow):
    result, driver, acks = await run(flow, [""])
    assert result.outcome == "self_served" and acks == [1]
    played = driver.played()
    assert played[0] == "citizen_notice_greeting"
    assert ("say_digits", CASE) in driver.events
    assert played.index("citizen_notice_received_by") < played.index("unit_water_supply") < played.index("citizen_notice_accepted")
    assert "citizen_notice_due_is" in played and "date_month" in played and "citizen_notice_due_tail" in played
    assert played[-1] == "citizen_notice_goodbye"


async def test_r8_2_key_1_hears_it_again(flow):
    _result, driver, acks = await run(flow, ["1", ""])
    assert [e for e in driver.events if e[0] == "say_digits"] == [("say_digits", CASE)] * 2
    assert len(acks) == 2  # the second is idempotent in the store (callback.notify.acknowledge)


async def test_a_unit_without_a_rendered_name_and_no_deadline_still_makes_sense(flow):
    _result, driver, acks = await run(flow, [""], unit_prompt="", due_date="")
    assert "citizen_notice_accepted_by_unit" in driver.played() and "citizen_notice_due_is" not in driver.played()
    assert acks == [1]


async def test_r2_2_the_portal_confirmation_says_the_case_number_and_how_to_follow_it(flow):
    _result, driver, acks = await run(flow, [""], notice_kind="portal_confirmation", unit_prompt="", due_date="")
    played = driver.played()
    assert "citizen_notice_portal_received" in played and "citizen_notice_portal_next" in played
    assert ("say_digits", CASE) in driver.events and acks == [1]


@pytest.fixture
def store(seeded):
    yield seeded
    with session_scope(seeded) as s:  # see tests/test_agi_prompt_dir.py: the case <-> call cycle
        s.execute(update(Case).values(created_by_call_id=None))


async def test_r8_2_ivr_notify_runs_the_citizens_flow_by_the_key_and_records_it_heard(store, domain, clock):
    number = _notified(store, domain, clock)
    with session_scope(store) as s:
        N.plan(s, domain)
        claimed = N.claim(s, domain)
    assert claimed.recipient == N.CITIZEN and claimed.phone == CITIZEN
    hotline = Hotline.create(domain, store, RECORDINGS_DIR, notices=N)
    server = FastAGIServer(router_for(hotline), "127.0.0.1", 0)
    await server.start()
    try:
        fake = FakeAsterisk("127.0.0.1", server.port, "ivr/notify", uniqueid="1772430000.9", callerid="12345",
                            query={"key": claimed.key, "case": number, "due": "", "hour": ""})
        await fake.connect()
        commands = await fake.run(timeout=20)
    finally:
        await server.stop()
        await hotline.close()
    text = "\n".join(commands)
    assert "hotline/citizen_notice_greeting" in text and "hotline/unit_water_supply" in text
    assert "notify_urge_greeting" not in text  # not the duty phone's urge
    with session_scope(store) as s:
        d = s.execute(select(NotificationDelivery)).scalar_one()
        assert d.state == N.ACKNOWLEDGED
        call = s.execute(select(Call).where(Call.uniqueid == "1772430000.9")).scalar_one()
        assert call.purpose == "notice"
