"""Operators and units on Twilio (issue 15 §2): warm transfer and three-way calls of a call Twilio carries
are Twilio conferences driven through the same call-control API operations (and rules) as on Asterisk
-- the driver is chosen by the call log's carrier -- checked request by request against a recording
fake carrier; the rooms' legs land in the call log as on Asterisk; recordings are fetched into the
same recording store under the same access rule (A2)."""
from __future__ import annotations

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select, update

import callcenter.auth as auth_module
from callcenter.api.app import create_app
from callcenter.callcontrol.recording import recording_path
from callcenter.pbx.root import host_path
from tests.conftest import Api
from tests.helpers import with_office_hours
from tests.twilio_carrier import ACCOUNT, FakeCarrier, TwilioCall, path_of, post_signed, twilio_settings
from ticketing import calls
from ticketing.carrier_model import CarrierCall
from ticketing.models import Call, CallEvent, Case, User, WorkOrder
from ticketing.store import session_scope

OP_LEG = "CA7" + "0" * 31
WATER_A, WATER_B = "13900002902", "13900002903"
MEDIA = b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(range(256))


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    monkeypatch.setattr(auth_module, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def domain(domain):
    """A city with office hours: the after-hours message at 21:00 (tests/helpers.py)."""
    return with_office_hours(domain)


@pytest.fixture
def app(seeded, domain, engine, tmp_path):
    with session_scope(seeded) as s:
        for username, ext in (("op1", "8001"), ("op2", "8002")):
            s.execute(select(User).where(User.username == username)).scalar_one().operator_extension = ext
    application = create_app(twilio_settings(tmp_path, twilio_operator_number="+8651087900001"), domain=domain,
                             engine=engine)
    application.state.twilio_http_client = FakeCarrier()
    with TestClient(application) as client:
        application.state.test_client = client
        yield application
    with session_scope(seeded) as s:
        s.execute(update(Case).values(created_by_call_id=None))


@pytest.fixture
def api(app) -> Api:
    return Api(app.state.test_client)


@pytest.fixture
def carrier(app) -> FakeCarrier:
    carrier = app.state.twilio_http_client
    from callcenter.twilio.wiring import transfers_for

    transfers_for(app).pbx.poll_seconds = 0  # the fake answers at once
    return carrier


@pytest.fixture
def on_operator(app, carrier, clock) -> TwilioCall:
    """A citizen's call on Twilio, through the menu to the operator op8001 (its <Dial> leg)."""
    clock.set("2026-03-02T10:00:00")
    call = TwilioCall(app.state.test_client)
    call.start()
    call.press("0")  # R7.1: straight to an operator
    assert call.twiml.find("Dial") is not None, call.answers[-1].text
    carrier.add_call(call.sid, "12345")
    carrier.add_call(OP_LEG, "client:op8001", parent=call.sid)
    return call


def ok(r, status=200):
    assert r.status_code == status, r.text
    return r.json()


def new_case(api, as_="op1") -> str:
    return ok(api.post("/api/v1/cases", as_=as_, json={
        "kind": "urgent_help", "channel": "mobile", "title": "自来水管爆裂", "description": "小区主水管爆裂，急需抢修",
        "citizen_phone": "13812345678"}), 201)["number"]


def events(seeded, uniqueid) -> list[tuple[str, dict]]:
    with session_scope(seeded) as s:
        call = s.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one()
        return [(e.kind, e.data) for e in s.execute(
            select(CallEvent).where(CallEvent.call_id == call.id).order_by(CallEvent.id)).scalars()]


def work_orders(seeded, number) -> list[tuple[str, str]]:
    with session_scope(seeded) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        return [(wo.unit.code, wo.mode.value) for wo in s.execute(select(WorkOrder).where(WorkOrder.case_id == case.id))
                .scalars()]


def moves(carrier) -> list[tuple[str, str]]:
    """Every call update in order: (call sid, its new TwiML or status)."""
    out = []
    for r in carrier.requests:
        parts = r["uri"].split("/")
        if r["method"] == "POST" and parts[-2] == "Calls" and parts[-1] != "Calls.json":
            out.append((parts[-1].removesuffix(".json"), r["data"].get("Twiml") or r["data"].get("Status")))
    return out


def rung(carrier) -> list[dict]:
    return [r["data"] for r in carrier.requests if r["method"] == "POST" and r["uri"].endswith("/Participants.json")]


def test_r7_3e_a_three_way_call_on_twilio_is_a_conference_through_the_same_api(api, app, carrier, on_operator,
                                                                               seeded):
    number = new_case(api)
    carrier.answers[WATER_A] = "no-answer"  # A does not answer: B is rung, as on Asterisk (R5.3)
    body = ok(api.post(f"/api/v1/calls/{on_operator.sid}/conference", as_="op1",
                       json={"case_number": number, "unit": "water_supply"}))
    assert body["state"] == "conference" and body["connected"] == {"unit": "water_supply", "duty": "B"}
    room = body["room"]
    # the operator's <Dial> leg moves first (moving the parent would hang it up), then the citizen
    (op_sid, op_twiml), (citizen_sid, citizen_twiml) = moves(carrier)
    assert (op_sid, citizen_sid) == (OP_LEG, on_operator.sid)
    assert f">{room}</Conference>" in op_twiml and f">{room}</Conference>" in citizen_twiml
    assert 'endConferenceOnExit="true"' in citizen_twiml and 'record="record-from-start"' in citizen_twiml
    assert [(d["To"], str(d["Timeout"])) for d in rung(carrier)] == [(WATER_A, "20"), (WATER_B, "20")]
    assert all(r["uri"].split("/")[-2] == room for r in carrier.requests if r["uri"].endswith("/Participants.json"))
    assert work_orders(seeded, number) == [("water_supply", "three_way")]
    kinds = [k for k, _ in events(seeded, on_operator.sid)]
    assert kinds[-6:] == ["conference_started", "unit_dial", "unit_dial_result", "unit_dial", "unit_dial_result",
                          "conference_join"]
    assert all(WATER_A not in str(d) and WATER_B not in str(d) for _, d in events(seeded, on_operator.sid))

    # the <Dial> ends as the operator's leg moves: its action answers the citizen's room, not a hang-up
    with session_scope(seeded) as s:
        assert s.execute(select(CarrierCall.room_twiml).where(CarrierCall.call_sid == on_operator.sid)).scalar_one() \
            == citizen_twiml
    dial_action = path_of(on_operator.twiml.find("Dial").get("action"))
    assert on_operator.post(dial_action, DialCallStatus="completed").text == citizen_twiml

    # the operator drops out: the leg is ended; citizen and unit stay
    left = ok(api.post(f"/api/v1/calls/{on_operator.sid}/conference/leave", as_="op1"))
    assert left["operator_in_call"] is False and moves(carrier)[-1] == (OP_LEG, "completed")
    # another operator may not act on it (R4.1: the same rule as on Asterisk)
    r = api.post(f"/api/v1/calls/{on_operator.sid}/conference/rejoin", as_="op2")
    assert r.status_code == 403 and r.json()["error"] == "call_owner"


def test_a_warm_transfer_on_twilio_consults_in_a_private_room_then_hands_the_citizen_over(api, carrier, on_operator,
                                                                                         seeded):
    number = new_case(api)
    body = ok(api.post(f"/api/v1/calls/{on_operator.sid}/transfer", as_="op1",
                       json={"case_number": number, "unit": "water_supply"}))
    assert body["state"] == "consulting" and body["connected"] == {"unit": "water_supply", "duty": "A"}
    room = body["room"]
    (op_sid, op_twiml), (_citizen, citizen_twiml) = moves(carrier)
    consult = op_twiml.split("</Conference>")[0].rsplit(">", 1)[1]
    assert op_sid == OP_LEG and consult != room and f">{room}</Conference>" in citizen_twiml
    assert 'startConferenceOnEnter="false"' in citizen_twiml  # alone in its room: on hold
    (unit_call,) = rung(carrier)
    assert unit_call["To"] == WATER_A
    unit_leg = carrier.calls[-1]["sid"]
    assert work_orders(seeded, number) == []  # nothing dispatched before the unit takes the call

    done = ok(api.post(f"/api/v1/calls/{on_operator.sid}/transfer/complete", as_="op1"))
    assert done["state"] == "transferred"
    # the operator hung up, the unit's leg moved into the citizen's room
    assert moves(carrier)[-2][0] == OP_LEG and "<Hangup" in moves(carrier)[-2][1]
    assert moves(carrier)[-1][0] == unit_leg and f">{room}</Conference>" in moves(carrier)[-1][1]
    assert work_orders(seeded, number) == [("water_supply", "transfer")]
    assert [k for k, _ in events(seeded, on_operator.sid)][-1] == "transfer_completed"


def test_the_room_legs_are_logged_on_the_citizens_call_once(app, carrier, on_operator, seeded):
    """A2: who joined and left the room, as the ConfBridge events are logged on Asterisk."""
    client = app.state.test_client
    path = f"/twilio/voice/conference?call={on_operator.sid}&room=123456789"
    base = {"AccountSid": ACCOUNT, "ConferenceSid": "CF1", "FriendlyName": "123456789"}
    for seq, (leg, event, to) in enumerate([(OP_LEG, "participant-join", "client:op8001"),
                                            ("CA8" + "1" * 31, "participant-join", WATER_A),
                                            (OP_LEG, "participant-leave", "client:op8001")]):
        params = {**base, "CallSid": leg, "StatusCallbackEvent": event, "To": to, "SequenceNumber": str(seq)}
        assert post_signed(client, path, params).status_code == 204
    again = {**base, "CallSid": OP_LEG, "StatusCallbackEvent": "participant-join", "To": "client:op8001",
             "SequenceNumber": "0", "Timestamp": "later"}  # the same event delivered twice
    assert post_signed(client, path, again).status_code == 204
    legs = [(k, d.get("party"), d["conference"]) for k, d in events(seeded, on_operator.sid)
            if k.startswith("conference_")]
    assert legs == [("conference_join", "operator", "123456789"), ("conference_join", None, "123456789"),
                    ("conference_leave", "operator", "123456789")]
    assert all(WATER_A not in str(d) for _, d in events(seeded, on_operator.sid))


def test_an_asterisk_call_is_still_controlled_through_asterisk(api, app, carrier, seeded, clock):
    """The driver is the call's: a call the call log says Asterisk carries never reaches Twilio."""
    number = new_case(api)
    with session_scope(seeded) as s:
        calls.open_call(s, uniqueid="1795600000.100", started_at=clock())
        assert s.execute(select(Call.carrier).where(Call.uniqueid == "1795600000.100")).scalar_one() == "asterisk"
    r = api.post("/api/v1/calls/1795600000.100/transfer", as_="op1", json={"case_number": number,
                                                                           "unit": "water_supply"})
    assert r.status_code == 503 and r.json()["error"] == "pbx_unavailable"  # no AMI link in this test app
    assert carrier.requests == []


# --------------------------------------------------------------------------------------------
# recordings (A2): fetched from the carrier into the same store, under the same rule


def _recording_ready(client, call_sid: str, recording_sid: str = "RE" + "1" * 32, **more):
    url = f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{recording_sid}"
    params = {"AccountSid": ACCOUNT, "CallSid": call_sid, "RecordingSid": recording_sid, "RecordingUrl": url,
              "RecordingStatus": "completed", "RecordingDuration": "31", **more}
    return post_signed(client, f"/twilio/voice/recording?call={call_sid}", params), url


def test_a2_a_recording_is_fetched_into_the_recording_store_and_heard_under_the_same_rule(api, app, carrier,
                                                                                         on_operator, seeded):
    client = app.state.test_client
    carrier.media[f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/RE{'1' * 32}.wav"] = MEDIA
    answer, _url = _recording_ready(client, on_operator.sid)
    assert answer.status_code == 204
    path = recording_path(on_operator.sid)  # where Asterisk's recording of this call would be
    assert host_path(app.state.settings, path).read_bytes() == MEDIA
    with session_scope(seeded) as s:
        call = s.execute(select(Call).where(Call.uniqueid == on_operator.sid)).scalar_one()
        call.operator_id = s.execute(select(User.id).where(User.username == "op1")).scalar_one()
        assert call.recording_path == path
    assert carrier.deleted == ["RE" + "1" * 32]  # the carrier's copy goes once ours is kept
    # the same callback again (a retry): nothing fetched twice
    again, _ = _recording_ready(client, on_operator.sid, Timestamp="retry")
    assert again.status_code == 204
    assert len([r for r in carrier.requests if r["uri"].endswith(".wav")]) == 1
    # the same access rule and route as for Asterisk recordings
    heard = api.get(f"/api/v1/calls/{on_operator.sid}/recording", as_="op1")
    assert heard.status_code == 200 and heard.content == MEDIA
    assert api.get(f"/api/v1/calls/{on_operator.sid}/recording", as_="op2").status_code == 403


def test_an_after_hours_message_is_fetched_and_replaces_the_carriers_address(app, carrier, seeded, clock):
    clock.set("2026-03-02T21:00:00")
    client = app.state.test_client
    call = TwilioCall(client)
    call.start()
    call.press("1")
    record = call.twiml.find("Record")
    assert record is not None, call.answers[-1].text
    assert record.get("recordingStatusCallback").endswith(f"/twilio/voice/recording?call={call.sid}")
    recording_sid = "RE" + "4" * 32
    carrier.media[f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{recording_sid}.wav"] = MEDIA
    call.record(f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Recordings/{recording_sid}", hung_up=True)
    assert _recording_ready(client, call.sid, recording_sid)[0].status_code == 204
    with session_scope(seeded) as s:
        row = s.execute(select(Call).where(Call.uniqueid == call.sid)).scalar_one()
        assert (row.outcome, row.recording_path, row.carrier) == ("message_left", recording_path(call.sid), "twilio")
    assert host_path(app.state.settings, recording_path(call.sid)).read_bytes() == MEDIA


def test_a_recording_the_carrier_cannot_hand_over_is_taken_when_the_callback_comes_again(app, carrier, on_operator,
                                                                                      seeded):
    answer, url = _recording_ready(app.state.test_client, on_operator.sid, "RE" + "9" * 32)  # no media there yet
    assert answer.status_code == 503
    with session_scope(seeded) as s:
        assert s.execute(select(Call.recording_path).where(Call.uniqueid == on_operator.sid)).scalar_one() is None
    assert carrier.deleted == []
    carrier.media[f"{url}.wav"] = MEDIA
    again, _ = _recording_ready(app.state.test_client, on_operator.sid, "RE" + "9" * 32)  # the same request
    assert again.status_code == 204 and carrier.deleted == ["RE" + "9" * 32]


async def test_whisper_is_a_coaching_participant_heard_by_the_operator_alone():
    """The Twilio form of the supervisor's whisper (the supervise API on Twilio: tests/test_twilio_operators.py)."""
    from twilio.rest import Client

    from callcenter.twilio.conference import TwilioPbx, endpoint_of_leg
    from callcenter.twilio.supervise import participant_options
    from tests.twilio_carrier import PUBLIC, TOKEN

    carrier = FakeCarrier()
    pbx = TwilioPbx(Client(ACCOUNT, TOKEN, http_client=carrier), public_url=PUBLIC, from_number="+8610012345",
                    poll_seconds=0)
    assert (await pbx._ring("client:op8009", "123456789", 20, **participant_options("whisper", OP_LEG))).answered
    (data,) = rung(carrier)
    assert (data["To"], str(data["Coaching"]).lower(), data["CallSidToCoach"]) == ("client:op8009", "true", OP_LEG)
    assert [endpoint_of_leg(x) for x in ("client:op8001", "sip:op8002@pbx.example", "+8613900000001")] == \
        ["op8001", "op8002", None]
