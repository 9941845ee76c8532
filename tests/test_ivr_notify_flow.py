"""The voice notice to a unit's duty phone (ivr_flows/notify.yaml; issue 14 item 5, R7.7 urge): the
case number and deadline are read, key 1 acknowledges, key 2 hears it again, silence records nothing."""
from __future__ import annotations

import pytest

from ivr_flows import flow_path
from ivr_flows.engine import FlowRunner, load_flow
from ivr_flows.scripted import ScriptedDriver

CASE = "20260302-000123"


@pytest.fixture(scope="module")
def notify():
    return load_flow(flow_path("notify"))


async def run(flow, keys, due_date="2026-03-05"):
    driver, acks = ScriptedDriver(keys), []

    async def acknowledge_notice() -> dict:
        acks.append(1)
        return {"acknowledged": True}
    runner = FlowRunner(flow, driver, {"acknowledge_notice": acknowledge_notice},
                        {"caller": "", "case_number": CASE, "due_date": due_date, "due_hour": "17"})
    return await runner.run(), driver, acks


async def test_r7_7_the_urge_reads_case_and_deadline_and_key_1_acknowledges(notify):
    result, driver, acks = await run(notify, ["1"])
    assert result.outcome == "self_served" and acks == [1]
    assert driver.played()[0] == "notify_urge_greeting"
    assert ("say_digits", "20260302000123") in driver.events
    assert "notify_deadline_is" in driver.played() and "date_month" in driver.played()
    assert driver.played()[-1] == "notify_thanks"


async def test_r7_7_key_2_repeats_then_key_1_acknowledges(notify):
    _result, driver, acks = await run(notify, ["2", "1"])
    assert acks == [1]
    assert [e for e in driver.events if e[0] == "say_digits"] == [("say_digits", "20260302000123")] * 2


async def test_r7_7_silence_records_nothing(notify):
    _result, driver, acks = await run(notify, ["", "", ""])
    assert acks == [] and driver.played()[-1] == "notify_no_key_goodbye"


async def test_a_notice_without_a_deadline_skips_it(notify):
    _result, driver, acks = await run(notify, ["1"], due_date="")
    assert acks == [1] and "notify_deadline_is" not in driver.played()
