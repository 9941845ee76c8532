"""Operators on Twilio (issue 15): a caller who chooses "operator" waits in <Enqueue> and is offered to
a free operator the way the Asterisk queue does it (R5.1) -- dequeued through the REST API into the
operator's room, the operator rung into it once -- with the call record's queue events (A2), the
screen-pop (R4.1) and call control through the same API; listen / whisper / barge through the same
supervise API and audit record (R5.2, R6.1, A1); and a restart in the middle of calls, rebuilt from
the store and the carrier's API (never ringing twice, no call record lost). All offline: signed
webhooks, and a recording fake carrier checked request by request."""
from __future__ import annotations

import itertools

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy import select, update

import callcenter.auth as auth_module
from callcenter.api.app import create_app
from tests.conftest import Api
from tests.test_twilio_callcontrol import moves, new_case, ok, rung, work_orders
from tests.twilio_carrier import (
    PUBLIC,
    FakeCarrier,
    TwilioCall,
    post_signed,
    query_of,
    twilio_settings,
)
from ticketing.carrier_model import CarrierAgent, CarrierCall
from ticketing.models import AuditEvent, Call, CallEvent, Case, User
from ticketing.store import session_scope

SUPERVISE = "/api/v1/operators/8001/supervise"
_deliveries = itertools.count()  # each carrier request differs (a Timestamp): the same one twice is a replay


@pytest.fixture(autouse=True)
def _cheap_password_hashing(monkeypatch):
    monkeypatch.setattr(auth_module, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))


@pytest.fixture
def store(seeded):
    with session_scope(seeded) as s:
        for username, ext in (("op1", "8001"), ("op2", "8002"), ("sup1", "8091"), ("bo1", "8092")):
            s.execute(select(User).where(User.username == username)).scalar_one().operator_extension = ext
    yield seeded
    with session_scope(seeded) as s:
        s.execute(update(Case).values(created_by_call_id=None))


@pytest.fixture
def start_app(store, domain, engine, tmp_path):
    """An app process on the shared store and carrier; call again for a restarted process."""
    opened = []
    carrier = FakeCarrier()

    def start():
        application = create_app(twilio_settings(tmp_path), domain=domain, engine=engine)
        application.state.twilio_http_client = carrier
        client = TestClient(application).__enter__()
        opened.append(client)
        from callcenter.twilio.wiring import transfers_for

        transfers_for(application).pbx.poll_seconds = 0  # the fake answers at once
        return application, Api(client)
    start.carrier = carrier
    yield start
    for client in opened:
        client.__exit__(None, None, None)


@pytest.fixture
def carrier(start_app) -> FakeCarrier:
    return start_app.carrier


def queued(client, carrier, clock, caller="13900000001") -> TwilioCall:
    """A caller through the menu to "operator" (R7.1: key 0), waiting in the carrier's queue."""
    call = TwilioCall(client, caller=caller)
    call.start()
    call.press("0")
    enqueue = call.twiml.find("Enqueue")
    assert enqueue is not None and enqueue.text == "hotline", call.answers[-1].text
    assert enqueue.get("waitUrl") == f"{PUBLIC}/twilio/voice/queue/wait"
    carrier.add_call(call.sid, "12345")
    carrier.queue_members.append(call.sid)
    clock.advance(seconds=5)
    return call


def waits(call: TwilioCall):
    """Twilio asks the Enqueue's wait URL (as it does while the caller waits)."""
    response = call.post("/twilio/voice/queue/wait", QueueSid=FakeCarrier.QUEUE_SID, QueuePosition="1",
                         QueueTime=str(next(_deliveries)), CurrentQueueSize="1")
    assert response.status_code == 200, response.text
    return response


def dequeued(call: TwilioCall):
    """Twilio fetches the URL the caller was dequeued to."""
    response = call.post("/twilio/voice/operator", QueueSid=FakeCarrier.QUEUE_SID, Timestamp=str(next(_deliveries)))
    assert response.status_code == 200, response.text
    return response


def agent(client, call: TwilioCall, leg: str, status: str, ext: str = "8001"):
    """The operator's leg reports (its participant's status callback)."""
    params = {"CallSid": leg, "AccountSid": "AC" + "0" * 32, "CallStatus": status, "To": f"client:op{ext}",
              "From": "+8610012345", "Direction": "outbound-api", "Timestamp": str(next(_deliveries))}
    response = post_signed(client, f"/twilio/voice/agent?call={call.sid}&ext={ext}", params)
    assert response.status_code == 204, response.text


def login(api, who="op1"):
    return ok(api.post("/api/v1/operators/me/queue/login", as_=who))


def events(store, sid) -> list[tuple[str, dict]]:
    with session_scope(store) as s:
        call_id = s.execute(select(Call.id).where(Call.uniqueid == sid)).scalar_one()
        return [(e.kind, e.data) for e in s.execute(select(CallEvent).where(CallEvent.call_id == call_id)
                                                    .order_by(CallEvent.id)).scalars()]


def kinds(store, sid) -> list[str]:
    return [k for k, _ in events(store, sid)]


def call_row(store, sid) -> Call:
    with session_scope(store) as s:
        call = s.execute(select(Call).where(Call.uniqueid == sid)).scalar_one()
        s.expunge(call)
        return call


def agent_row(store, ext) -> CarrierAgent:
    with session_scope(store) as s:
        row = s.get(CarrierAgent, ext)
        s.expunge(row)
        return row


def operator_leg(carrier, ext="8001") -> str:
    (leg,) = [c["sid"] for c in carrier.calls if c["to"] == f"client:op{ext}"]
    return leg


def answered_by_op1(start_app, carrier, clock):
    app, api = start_app()
    client = api.client
    login(api, "op1")
    call = queued(client, carrier, clock)
    waits(call)
    dequeued(call)
    clock.advance(seconds=3)
    agent(client, call, operator_leg(carrier), "in-progress")
    return app, api, call


def test_r5_1_a_waiting_caller_is_offered_to_a_free_operator_rung_once_into_their_room(start_app, carrier, store,
                                                                                     clock):
    clock.set("2026-03-02T10:00:00")
    app, api = start_app()
    client = api.client
    assert login(api, "op1")["twilio"]["logged_in"] is True
    call = queued(client, carrier, clock)
    assert carrier.dequeues() == []  # not before the carrier has it in the queue
    waits(call)
    # the oldest caller, dequeued through the REST API (Queue member update) to the operator's room
    assert carrier.dequeues() == [(call.sid, f"{PUBLIC}/twilio/voice/operator")]
    waits(call)  # asked again while the offer stands: no second dequeue
    assert len(carrier.dequeues()) == 1

    room_twiml = dequeued(call).text
    conference = call.twiml.find("Dial/Conference")
    room = conference.text
    assert conference.get("startConferenceOnEnter") == "false" and conference.get("endConferenceOnExit") == "true"
    assert conference.get("record") == "record-from-start"
    (ring,) = rung(carrier)
    assert ring["To"] == "client:op8001" and ring["Label"] == "operator" and str(ring["Timeout"]) == "20"
    assert ring["StatusCallbackEvent"] == ["answered", "completed"]
    assert query_of(ring["StatusCallback"]) == {"call": call.sid, "ext": "8001"}
    assert [r["uri"].split("/")[-2] for r in carrier.requests if r["uri"].endswith("/Participants.json")] == [room]
    # the Enqueue's action (QueueResult=redirected) answers the same room, and rings nobody again
    assert call.post("/twilio/voice/queue", QueueResult="redirected").text == room_twiml
    assert dequeued(call).text == room_twiml and len(rung(carrier)) == 1

    clock.advance(seconds=4)
    leg = operator_leg(carrier)
    agent(client, call, leg, "in-progress")
    agent(client, call, leg, "in-progress")  # delivered twice: logged once
    # A2: the same queue events as the Asterisk path (QueueCallerJoin, AgentConnect), the operator linked
    logged = events(store, call.sid)
    assert [k for k, _ in logged if k in ("queued", "operator_connected")] == ["queued", "operator_connected"]
    connected = dict(logged)["operator_connected"]
    assert connected["operator"] == "8001" and connected["operator_uniqueid"] == leg and connected["holdtime"] == 9.0
    row = call_row(store, call.sid)
    with session_scope(store) as s:
        op1 = s.execute(select(User.id).where(User.username == "op1")).scalar_one()
    assert row.outcome == "answered" and row.operator_id == op1 and row.carrier == "twilio"
    # the screen-pop, built as on Asterisk: what the caller did in the menu
    pop = app.state.twilio_screenpop.sent[-1]
    assert pop["operator"] == "8001" and pop["caller_uniqueid"] == call.sid and pop["operator_uniqueid"] == leg
    assert pop["flow_path"] == row.flow_path and pop["holdtime"] == 9.0
    assert agent_row(store, "8001").call_sid == call.sid  # busy: offered nothing else


def test_r7_3e_an_operator_answering_from_the_queue_controls_the_call_through_the_same_api(start_app, carrier,
                                                                                        store, clock):
    """The operator is a participant of the caller's room, found by call control as on a <Dial> leg."""
    clock.set("2026-03-02T10:00:00")
    _app, api, call = answered_by_op1(start_app, carrier, clock)
    leg = operator_leg(carrier)
    number = new_case(api)
    body = ok(api.post(f"/api/v1/calls/{call.sid}/conference", as_="op1",
                       json={"case_number": number, "unit": "water_supply"}))
    assert body["state"] == "conference" and body["connected"]["unit"] == "water_supply"
    (op_sid, _op_twiml), (citizen_sid, citizen_twiml) = moves(carrier)
    assert (op_sid, citizen_sid) == (leg, call.sid) and f">{body['room']}</Conference>" in citizen_twiml
    assert work_orders(store, number) == [("water_supply", "three_way")]
    r = api.post(f"/api/v1/calls/{call.sid}/conference/leave", as_="op2")
    assert r.status_code == 403 and r.json()["error"] == "call_owner"
    # the operator leaves the three-way call: their leg ends, the citizen stays with the unit
    ok(api.post(f"/api/v1/calls/{call.sid}/conference/leave", as_="op1"))
    clock.advance(seconds=60)
    agent(api.client, call, leg, "completed")
    assert kinds(store, call.sid)[-1] == "operator_completed"
    assert moves(carrier)[-1] == (leg, "completed")  # the citizen was not hung up
    assert agent_row(store, "8001").call_sid is None


def test_r5_1_an_unanswered_offer_goes_to_the_next_operator_and_an_operator_hanging_up_ends_the_call(
        start_app, carrier, store, clock):
    clock.set("2026-03-02T10:00:00")
    _app, api = start_app()
    client = api.client
    login(api, "op1")
    clock.advance(seconds=1)
    login(api, "op2")
    call = queued(client, carrier, clock)
    waits(call)
    dequeued(call)
    assert rung(carrier)[-1]["To"] == "client:op8001"  # idle longest
    agent(client, call, operator_leg(carrier), "no-answer")
    # back in the queue, in front (its first join counts); op1 goes behind op2
    (sid, twiml), = moves(carrier)
    assert sid == call.sid and "<Enqueue" in twiml and "queue/wait" in twiml
    carrier.queue_members.append(call.sid)
    waits(call)
    dequeued(call)
    assert rung(carrier)[-1]["To"] == "client:op8002"
    leg = operator_leg(carrier, "8002")
    agent(client, call, leg, "in-progress", ext="8002")
    assert "queue_abandoned" not in kinds(store, call.sid) and kinds(store, call.sid).count("queued") == 1
    clock.advance(seconds=40)
    agent(client, call, leg, "completed", ext="8002")  # op2 puts the phone down
    assert moves(carrier)[-1] == (call.sid, "completed")  # the caller is not left alone on hold
    completed = dict(events(store, call.sid))["operator_completed"]
    assert completed["operator"] == "8002" and completed["talktime"] == 40.0


def test_a2_a_caller_hanging_up_before_an_operator_answers_abandoned_the_queue(start_app, carrier, store, clock):
    clock.set("2026-03-02T10:00:00")
    _app, api = start_app()
    client = api.client
    in_queue = queued(client, carrier, clock)  # nobody logged in: it waits
    waits(in_queue)
    assert carrier.dequeues() == []
    in_queue.post("/twilio/voice/queue", QueueResult="hangup")
    in_queue.hang_up()
    assert call_row(store, in_queue.sid).outcome == "abandoned"
    assert kinds(store, in_queue.sid).count("queue_abandoned") == 1

    login(api, "op1")
    ringing = queued(client, carrier, clock, caller="13900000002")
    waits(ringing)
    dequeued(ringing)
    leg = operator_leg(carrier)
    ringing.hang_up()  # while op1's phone rings
    assert moves(carrier)[-1] == (leg, "completed")  # the ring stops
    assert call_row(store, ringing.sid).outcome == "abandoned"
    assert agent_row(store, "8001").call_sid is None


def audit(store) -> list[tuple[str, str, dict, int | None]]:
    with session_scope(store) as s:
        return [(e.action, e.actor_name, e.data, e.call_id) for e in s.execute(
            select(AuditEvent).where(AuditEvent.action.like("supervise%")).order_by(AuditEvent.id)).scalars()]


def participant_updates(carrier) -> list[dict]:
    return [r["data"] for r in carrier.requests if r["method"] == "POST" and "/Participants/" in r["uri"]]


def test_r5_2_listen_whisper_barge_on_a_twilio_call_are_participants_and_audited(start_app, carrier, store,
                                                                                clock):
    """R6.1/R5.2, A1: the supervisor's phone joins the operator's room muted (listen); a switch updates
    the participant in place: coaching the operator's leg (whisper), then unmuted (barge); leaving
    hangs the leg up; who, whom, how and how long are audited, tied to the call."""
    clock.set("2026-03-02T10:00:00")
    _app, api, call = answered_by_op1(start_app, carrier, clock)
    leg = operator_leg(carrier)
    room = call.twiml.find("Dial/Conference").text
    r = api.post(SUPERVISE, as_="op2", json={"mode": "listen"})
    assert r.status_code == 403  # R5.2: the front desk does not supervise
    body = ok(api.post(SUPERVISE, as_="sup1", json={"mode": "listen"}))
    assert body["mode"] == "listen" and body["operator"] == "8001"
    spy_ring = rung(carrier)[-1]
    assert spy_ring["To"] == "client:op8091" and spy_ring["Muted"] == "true" and spy_ring.get("Coaching") == "false"
    assert [r["uri"].split("/")[-2] for r in carrier.requests if r["uri"].endswith("/Participants.json")] == [room] * 2
    spy = body["channel"]
    assert ok(api.get("/api/v1/supervise", as_="bo1")) == [body]

    clock.advance(seconds=20)
    assert ok(api.post(SUPERVISE, as_="sup1", json={"mode": "whisper"}))["mode"] == "whisper"
    assert participant_updates(carrier)[-1] == {"Muted": "false", "Coaching": "true", "CallSidToCoach": leg}
    assert ok(api.post(SUPERVISE, as_="sup1", json={"mode": "barge"}))["mode"] == "barge"
    assert participant_updates(carrier)[-1] == {"Muted": "false", "Coaching": "false"}
    assert len(rung(carrier)) == 2  # the operator's ring and the supervisor's only: switches ring nobody
    clock.advance(seconds=10)
    left = ok(api.client.delete(SUPERVISE, headers={"Authorization": f"Bearer {api.login('sup1')}"}))
    assert left["seconds"] == 30 and moves(carrier)[-1] == (spy, "completed")
    call_id = call_row(store, call.sid).id
    assert [(a, who, d.get("mode"), cid) for a, who, d, cid in audit(store)] == [
        ("supervise_start", "sup1", "listen", call_id), ("supervise_mode", "sup1", "whisper", call_id),
        ("supervise_mode", "sup1", "barge", call_id), ("supervise_end", "sup1", "barge", call_id)]
    assert audit(store)[-1][2]["seconds"] == 30 and audit(store)[-1][2]["operator"] == "8001"

    # the supervisor's phone put down: the room's participant-leave ends the session, audited once
    body = ok(api.post(SUPERVISE, as_="sup1", json={"mode": "whisper"}))
    assert rung(carrier)[-1]["Coaching"] == "true" and rung(carrier)[-1]["CallSidToCoach"] == leg
    clock.advance(seconds=5)
    params = {"CallSid": body["channel"], "AccountSid": "AC" + "0" * 32, "StatusCallbackEvent": "participant-leave",
              "ConferenceSid": "CF1", "FriendlyName": room, "SequenceNumber": "9", "To": "client:op8091"}
    for delivery in range(2):  # delivered twice: audited once
        response = post_signed(api.client, f"/twilio/voice/conference?call={call.sid}&room={room}",
                               {**params, "Timestamp": str(delivery)})
        assert response.status_code == 204
    ends = [d for a, _w, d, _c in audit(store) if a == "supervise_end"]
    assert len(ends) == 2 and ends[-1]["reason"] == "hangup" and ends[-1]["seconds"] == 5
    assert ok(api.get("/api/v1/supervise", as_="bo1")) == []


def test_a_restart_mid_calls_rebuilds_the_queue_from_the_store_and_the_carrier_without_ringing_twice(
        start_app, carrier, store, clock):
    clock.set("2026-03-02T10:00:00")
    _app, api, talking = answered_by_op1(start_app, carrier, clock)
    client = api.client
    login(api, "op2")
    # op2's phone rings for a second caller; the carrier's answer to that request is lost (a crash)
    carrier.answers["client:op8002"] = "ringing"
    ringing = queued(client, carrier, clock, caller="13900000002")
    waits(ringing)
    carrier.fail_next = ConnectionError("the answer was lost")
    assert ringing.post("/twilio/voice/operator").status_code == 503
    # a third caller waits; a fourth waits too, and hangs up while the app is down
    waiting = queued(client, carrier, clock, caller="13900000003")
    gone = queued(client, carrier, clock, caller="13900000004")
    carrier.call(gone.sid)["status"] = "completed"
    carrier.queue_members.remove(gone.sid)
    listening = ok(api.post(SUPERVISE, as_="sup1", json={"mode": "listen"}))  # sup1 listens to op1
    before = len(rung(carrier))

    clock.advance(seconds=30)
    _app2, api2 = start_app()  # the restarted process
    assert len(rung(carrier)) == before  # op2's ringing phone is not rung again, nor sup1's
    with session_scope(store) as s:
        states = dict(s.execute(select(CarrierCall.call_sid, CarrierCall.queue_state)).all())
    assert states[talking.sid] == "connected" and states[ringing.sid] == "ringing"
    assert states[waiting.sid] == "queued" and states[gone.sid] == "done"
    assert call_row(store, gone.sid).outcome == "abandoned" and "leg_end" in kinds(store, gone.sid)
    assert agent_row(store, "8002").leg_sid == operator_leg(carrier, "8002")  # found at the carrier

    # the restarted process follows what was going on: op2 answers, op1 is supervised
    agent(api2.client, ringing, operator_leg(carrier, "8002"), "in-progress", ext="8002")
    assert call_row(store, ringing.sid).outcome == "answered"
    # sup1's session is back: listed, switched in place, and its end audited with the whole duration (A1)
    assert ok(api2.get("/api/v1/supervise", as_="bo1")) == [listening]
    ok(api2.post(SUPERVISE, as_="sup1", json={"mode": "whisper"}))
    assert participant_updates(carrier)[-1] == {"Muted": "false", "Coaching": "true",
                                                "CallSidToCoach": operator_leg(carrier)}
    left = ok(api2.client.delete(SUPERVISE, headers={"Authorization": f"Bearer {api2.login('sup1')}"}))
    assert left["seconds"] == 30 and len(rung(carrier)) == before
    assert [a for a, *_ in audit(store)] == ["supervise_start", "supervise_mode", "supervise_end"]
    # op1 hangs up: the next waiting caller is offered to op1, once
    agent(api2.client, talking, operator_leg(carrier), "completed")
    assert carrier.dequeues()[-1] == (waiting.sid, f"{PUBLIC}/twilio/voice/operator")
    with session_scope(store) as s:
        assert s.execute(select(CarrierCall.operator).where(CarrierCall.call_sid == waiting.sid)).scalar() == "8001"


def test_a_restart_after_a_ring_that_never_reached_the_carrier_offers_the_caller_again(start_app, carrier, store,
                                                                                     clock):
    clock.set("2026-03-02T10:00:00")
    _app, api = start_app()
    login(api, "op1")
    call = queued(api.client, carrier, clock)
    waits(call)
    carrier.fail_before = ConnectionError("the carrier is unreachable")
    assert call.post("/twilio/voice/operator").status_code == 503  # `ringing` committed, nothing rung
    assert rung(carrier) == []
    clock.advance(seconds=30)
    start_app()
    # found nowhere at the carrier: the caller goes back to the queue (not rung blind), op1 free
    (sid, twiml), = moves(carrier)
    assert sid == call.sid and "<Enqueue" in twiml
    with session_scope(store) as s:
        assert s.execute(select(CarrierCall.queue_state).where(CarrierCall.call_sid == call.sid)).scalar() == "queued"
    assert agent_row(store, "8001").call_sid is None
    assert kinds(store, call.sid).count("queued") == 1 and "queue_abandoned" not in kinds(store, call.sid)


def test_r5_1_a_paused_operator_is_offered_nothing_until_the_pause_ends(start_app, carrier, store, clock):
    clock.set("2026-03-02T10:00:00")
    _app, api = start_app()
    login(api, "op1")
    paused = ok(api.post("/api/v1/operators/me/queue/pause", as_="op1", json={"reason": "meal"}))["twilio"]
    assert paused["member"] == {"paused": True, "paused_reason": "meal", "in_call": False}
    call = queued(api.client, carrier, clock)
    waits(call)
    assert carrier.dequeues() == []
    ok(api.post("/api/v1/operators/me/queue/unpause", as_="op1"))  # offered at once, not at the next wait
    assert carrier.dequeues() == [(call.sid, f"{PUBLIC}/twilio/voice/operator")]
    assert ok(api.post("/api/v1/operators/me/queue/logout", as_="op1"))["twilio"]["logged_in"] is False


def test_a1_a_supervisor_whose_leg_ended_while_the_app_was_down_gets_the_end_audited(start_app, carrier, store,
                                                                                   clock):
    clock.set("2026-03-02T10:00:00")
    _app, api, _call = answered_by_op1(start_app, carrier, clock)
    spy = ok(api.post(SUPERVISE, as_="sup1", json={"mode": "barge"}))["channel"]
    for room in carrier.conferences.values():
        room["participants"].pop(spy, None)  # the supervisor put the phone down meanwhile
    clock.advance(seconds=12)
    _app2, api2 = start_app()
    assert ok(api2.get("/api/v1/supervise", as_="bo1")) == []
    (end,) = [d for a, _w, d, _c in audit(store) if a == "supervise_end"]
    assert end["reason"] == "ended_during_restart" and end["seconds"] == 12 and end["mode"] == "barge"


def test_a2_a_caller_gone_without_a_status_callback_does_not_block_the_queue(start_app, carrier, store, clock):
    clock.set("2026-03-02T10:00:00")
    _app, api = start_app()
    first = queued(api.client, carrier, clock)
    second = queued(api.client, carrier, clock, caller="13900000002")
    carrier.call(first.sid)["status"] = "completed"  # hung up; its callbacks are late
    carrier.queue_members.remove(first.sid)
    login(api, "op1")
    # the first is asked for (the carrier has it no more), found ended and settled; the second offered
    url = f"{PUBLIC}/twilio/voice/operator"
    assert carrier.dequeues() == [(first.sid, url), (second.sid, url)]
    assert call_row(store, first.sid).outcome == "abandoned"
    assert kinds(store, first.sid).count("queue_abandoned") == 1
