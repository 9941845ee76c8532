"""Voice on Twilio (issue 15): the main menu and the after-hours message through signed webhooks,
the flow's state kept in the store between them (any process answers the next), and the call record
(A2) written by ticketing/calls.py with the driver that carried it."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from callcenter.api.app import create_app
from tests.helpers import with_office_hours
from tests.twilio_carrier import TwilioCall, twilio_settings
from ticketing.carrier_model import CarrierCall
from ticketing.models import Call, CallEvent, Case
from ticketing.store import session_scope


@pytest.fixture
def domain(domain):
    """A city with office hours: the after-hours branches run at 21:00 (tests/helpers.py)."""
    return with_office_hours(domain)

@pytest.fixture
def store(seeded):
    yield seeded
    with session_scope(seeded) as s:
        s.execute(update(Case).values(created_by_call_id=None))


@pytest.fixture
def make_client(store, domain, engine, tmp_path):
    """A TestClient per app process: several of them share one store."""
    opened = []

    def make():
        client = TestClient(create_app(twilio_settings(tmp_path), domain=domain, engine=engine))
        opened.append(client.__enter__())
        return opened[-1]
    yield make
    for client in opened:
        client.__exit__(None, None, None)


def _call(store, sid):
    with session_scope(store) as s:
        call = s.execute(select(Call).where(Call.uniqueid == sid)).scalar_one()
        events = {e.kind: e.data for e in s.execute(select(CallEvent).where(CallEvent.call_id == call.id)).scalars()}
        s.expunge(call)
        return call, events


def test_a2_key_1_opens_a_consultation_and_queues_with_the_driver_recorded(make_client, store):
    client = make_client()
    call = TwilioCall(client)
    call.start()
    gather = call.twiml.find("Gather")
    assert gather.get("input") == "dtmf" and gather.get("numDigits") == "1" and gather.get("timeout") == "5"
    says = [s.text for s in gather.findall("Say")]
    assert says[0].startswith("您好") and says[-1] == "人工服务，请按0。"
    assert all(s.get("language") == "zh-CN" for s in gather.findall("Say"))
    call.press("1")
    assert call.twiml.find("Enqueue").text == "hotline"
    row, events = _call(store, call.sid)
    with session_scope(store) as s:
        case = s.get(Case, row.case_id)
        assert (case.kind.value, case.channel.value, case.citizen_phone) == ("consultation", "mobile", "13900000001")
        spoken = [x.text for x in call.twiml.findall("Say")]
        assert spoken[0] == "您的诉求编号是" and spoken[1].replace(" ", "") == (
            case.number.replace("-", "").translate(str.maketrans("0123456789", "零幺二三四五六七八九")))
    assert (row.outcome, row.outcome_reason, row.flow_path[-1]) == ("queued", "consultation", "consultation_queue")
    assert row.digits == [{"node": "main_menu", "digits": "1"}]
    assert events["carrier"] == {"driver": "twilio", "overflow": False}
    call.leave_queue("bridged")
    call.hang_up()
    row, events = _call(store, call.sid)
    assert row.outcome == "answered" and row.ended_at is not None and "leg_end" in events


def test_each_webhook_may_reach_another_process(make_client, store):
    """The state is the store's: three app processes answer the three webhooks of one call."""
    first, second, third = make_client(), make_client(), make_client()
    call = TwilioCall(first)
    call.start()
    call.client = second
    call.press("9")  # invalid: asked again
    assert call.twiml.find("Gather/Say").text == "您的输入有误，请重新选择。"
    call.client = third
    call.press("0")
    row, _ = _call(store, call.sid)
    assert (row.outcome, row.outcome_reason) == ("queued", "operator")
    assert row.digits == [{"node": "main_menu", "digits": "9"}, {"node": "main_menu", "digits": "0"}]


def test_a_case_is_created_once_however_often_the_flow_is_replayed(make_client, store):
    client = make_client()
    call = TwilioCall(client)
    call.start()
    call.press("5")  # progress enquiry: asks for the number
    call.press("20260302999999")
    call.press("20260302999998")
    row, _ = _call(store, call.sid)
    assert (row.outcome, row.outcome_reason) == ("queued", "not_found")
    with session_scope(store) as s:
        state = s.execute(select(CarrierCall).where(CarrierCall.call_sid == call.sid)).scalar_one()
        assert [e["kind"] for e in state.journal].count("action") == 4  # open cases, hours, 2 lookups
        assert s.execute(select(Case)).first() is None


def test_after_hours_message_is_recorded_and_becomes_a_case(make_client, store, clock):
    clock.set("2026-03-02T21:00:00")
    client = make_client()
    call = TwilioCall(client)
    call.start()
    # the notice must be heard: said before the <Gather>, not inside it where a key would cut it
    assert [x.text for x in call.twiml.findall("Say")][-1] == "现在是非工作时间，人工服务暂停。"
    assert [x.text for x in call.twiml.findall("Gather/Say")] == ["如需留言，请按1；查询办理进度，请按5；结束通话，请按2。"]
    call.press("1")
    record = call.twiml.find("Record")
    assert record.get("maxLength") == "120" and record.get("finishOnKey") == "#"
    call.record("https://api.twilio.com/2010-04-01/Accounts/AC1/Recordings/RE42", hung_up=True)
    row, _ = _call(store, call.sid)
    assert (row.outcome, row.outcome_reason) == ("message_left", "hangup")
    assert row.recording_path.endswith("/RE42")
    with session_scope(store) as s:
        case = s.get(Case, row.case_id)
        assert case.title == "非服务时间留言" and "RE42" in case.description


def test_a_caller_hanging_up_at_the_menu_is_abandoned_where_they_were(make_client, store):
    client = make_client()
    call = TwilioCall(client)
    call.start()
    call.hang_up()
    row, _ = _call(store, call.sid)
    assert (row.outcome, row.outcome_reason) == ("abandoned", "hangup")
    assert row.flow_path == ["greeting", "open_cases", "hours_check", "front", "main_menu"]


def test_an_empty_recording_ends_as_no_message(make_client, store, clock):
    clock.set("2026-03-02T21:00:00")
    call = TwilioCall(make_client())
    call.start()
    call.press("1")
    call.record(None)
    assert call.twiml.find("Hangup") is not None
    row, _ = _call(store, call.sid)
    assert (row.outcome, row.flow_path[-1]) == ("abandoned", "no_message")


def test_with_a_prompt_url_the_rendered_prompts_are_played():
    from callcenter.twilio.replay import Verb
    from callcenter.twilio.twiml import Speaker, waiting

    speaker = Speaker({"welcome": "您好"}, prompt_url="https://hotline.example.gov.cn/prompts/")
    xml = waiting(speaker, [Verb("play", ["welcome"], True),
                            Verb("gather", ["menu_operator"], True, {"max_digits": 14, "timeout_s": 10,
                                                                     "terminator": "#"})], "https://x/g?step=3")
    assert '<Play>https://hotline.example.gov.cn/prompts/welcome.wav</Play>' in xml
    assert '<Play>https://hotline.example.gov.cn/prompts/menu_operator.wav</Play>' in xml
    assert 'finishOnKey="#"' in xml and 'numDigits="14"' in xml and 'timeout="10"' in xml
