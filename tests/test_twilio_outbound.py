"""R7.4 回访 on Twilio (issue 15 §2): survey calls placed through the REST API with the attempt's
idempotency key in the call's parameters, each attempt dialled at most once -- a crash between the
request and its answer, then a restart, leaves one call (reconciled against the carrier's call list)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from callback import attempts as A
from callcenter.api.app import create_app
from callcenter.twilio.outbound import TwilioCallbacks
from callcenter.twilio.wiring import callbacks_for
from tests.live.callback_helpers import reported_case
from tests.twilio_carrier import (
    FakeCarrier,
    TwilioCall,
    path_of,
    post_signed,
    query_of,
    twilio_settings,
)
from ticketing.carrier_model import CarrierCall
from ticketing.enums import CaseStatus, Satisfaction
from ticketing.models import Call, CallbackAttempt, CallEvent, Case
from ticketing.store import session_scope

CITIZEN = "13800000001"


@pytest.fixture
def app(seeded, domain, engine, tmp_path):
    application = create_app(twilio_settings(tmp_path), domain=domain, engine=engine)
    application.state.twilio_http_client = FakeCarrier()
    with TestClient(application) as client:
        application.state.test_client = client
        yield application
    with session_scope(seeded) as s:
        s.execute(update(Case).values(created_by_call_id=None))


@pytest.fixture
def due(seeded, domain):
    number = reported_case(seeded, domain, CITIZEN)
    with session_scope(seeded) as s:
        A.plan_due(s, domain)
    return number


def _attempt(seeded):
    """The first attempt (an unsuccessful one schedules the next)."""
    with session_scope(seeded) as s:
        attempt = s.execute(select(CallbackAttempt).order_by(CallbackAttempt.id)).scalars().first()
        s.expunge(attempt)
        return attempt


def _restarted(app) -> TwilioCallbacks:
    """A new process: nothing of the old one's memory, the same store and carrier."""
    old = callbacks_for(app)
    return TwilioCallbacks(old.domain, old.session_factory, old.client, public_url=old.public_url,
                           from_number=old.from_number)


def test_r7_4_a_survey_call_is_placed_with_its_key_and_answered_through_the_webhooks(app, seeded, due):
    carrier = app.state.twilio_http_client
    (sid,) = callbacks_for(app).place_due()
    (request,) = carrier.posted("Calls")
    data = request["data"]
    attempt = _attempt(seeded)
    assert (data["To"], data["From"]) == (CITIZEN, "+8610012345")
    assert query_of(data["Url"]) == {"key": attempt.idempotency_key, "case": due}
    assert query_of(data["StatusCallback"]) == {"key": attempt.idempotency_key}
    call = TwilioCall(app.state.test_client, caller="+8610012345", to=CITIZEN, sid=sid)
    call.start(path_of(data["Url"]))
    call.press("1")
    with session_scope(seeded) as s:
        case = s.execute(select(Case).where(Case.number == due)).scalar_one()
        assert (case.status, case.satisfaction) == (CaseStatus.CLOSED, Satisfaction.SATISFIED)
        record = s.execute(select(Call).where(Call.uniqueid == sid)).scalar_one()
        assert (record.purpose, record.direction, record.outcome) == ("callback", "outbound", "self_served")
    assert _attempt(seeded).state == A.DONE


def test_a_crash_between_request_and_answer_then_a_restart_leaves_one_call(app, seeded, due):
    carrier = app.state.twilio_http_client
    carrier.fail_next = ConnectionError("connection reset while reading the answer")
    assert callbacks_for(app).place_due() == []
    assert _attempt(seeded).state == A.DIALING and len(carrier.calls) == 1
    restarted = _restarted(app)
    assert restarted.place_due() == []  # the carrier has it ringing: not dialled again
    assert len(carrier.posted("Calls")) == 1 and _attempt(seeded).state == A.DIALING
    carrier.calls[0]["status"] = "no-answer"  # what the carrier's list says once it ended
    assert restarted.reconcile() == {"dialled": 1}
    attempt = _attempt(seeded)
    assert attempt.state == A.NO_ANSWER and len(carrier.posted("Calls")) == 1
    with session_scope(seeded) as s:
        record = s.execute(select(Call).where(Call.uniqueid == carrier.calls[0]["sid"])).scalar_one()
        assert (record.outcome, attempt.call_id) == ("no_answer", record.id)
        event = s.execute(select(CallEvent).where(CallEvent.call_id == record.id, CallEvent.kind == "carrier")).scalar_one()
        assert event.data == {"driver": "twilio"}


def test_a_request_that_never_reached_the_carrier_is_dialled_once_after_the_restart(app, seeded, due, clock):
    carrier = app.state.twilio_http_client
    carrier.fail_before = ConnectionError("connection refused")
    assert callbacks_for(app).place_due() == []
    restarted = _restarted(app)
    assert restarted.reconcile() == {"never_dialled": 1}
    assert _attempt(seeded).state == A.SCHEDULED
    (sid,) = restarted.place_due()
    assert [c["sid"] for c in carrier.calls] == [sid]


def test_an_unanswered_call_reported_by_the_status_callback_settles_the_attempt(app, seeded, due):
    carrier = app.state.twilio_http_client
    (sid,) = callbacks_for(app).place_due()
    status_path = path_of(carrier.posted("Calls")[0]["data"]["StatusCallback"])
    answer = post_signed(app.state.test_client, status_path, {"CallSid": sid, "CallStatus": "busy", "To": CITIZEN})
    assert answer.status_code == 204
    assert _attempt(seeded).state == A.BUSY
    with session_scope(seeded) as s:
        assert s.execute(select(Call.outcome).where(Call.uniqueid == sid)).scalar_one() == "busy"
        assert s.execute(select(CarrierCall)).first() is None  # no flow ran


def test_a_call_the_carrier_refuses_is_a_failed_try_not_a_lost_one(app, seeded, due):
    carrier = app.state.twilio_http_client
    carrier.refuse_next = True
    assert callbacks_for(app).place_due() == []
    assert _attempt(seeded).state == A.FAILED and carrier.calls == []
