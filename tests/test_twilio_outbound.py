"""R7.4 回访 on Twilio (issue 15 §2): the callback runner (callback/runner.py) places survey calls through
Twilio's REST API by its originate port (callcenter/twilio/outbound.py), with the attempt's idempotency
key in the call's parameters; its own exactly-once machinery holds: a crash between the request and its
answer, then a restart, leaves one call (reconciled against the carrier's call list, by number and time,
less the calls bound to other attempts)."""
from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, update

from callback import attempts as A
from callback.runner import CallbackRunner, RunnerOptions
from callcenter.api.app import create_app
from callcenter.callbacks import callback_service
from callcenter.twilio.outbound import TwilioCallbackPbx
from callcenter.twilio.wiring import callback_port
from tests.live.callback_helpers import reported_case
from tests.twilio_carrier import FakeCarrier, TwilioCall, path_of, post_signed, query_of, twilio_settings
from ticketing.enums import CaseStatus, Satisfaction
from ticketing.models import Call, CallbackAttempt, Case
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
def carrier(app) -> FakeCarrier:
    return app.state.twilio_http_client


@pytest.fixture
def due(seeded, domain):
    return reported_case(seeded, domain, CITIZEN)


@pytest.fixture
async def runners(app, seeded, domain):
    """`start()` a runner over the Twilio port, as a new process would (nothing of an earlier one's
    memory: the same store and carrier); all are stopped at the end."""
    made: list[CallbackRunner] = []

    def start() -> CallbackRunner:
        port = callback_port(app.state.settings, seeded, app.state.twilio_http_client)
        port.poll_seconds = 0.01
        runner = CallbackRunner(domain, seeded, port, RunnerOptions(settle_seconds=0, plan_every=0, finish_grace=0,
                                                                    survey_timeout=10))
        made.append(runner)
        return runner
    yield start
    for runner in made:
        await runner.stop(wait=False)
        await runner.pbx.stop()


async def until(check, timeout: float = 10.0):
    for _ in range(int(timeout / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("not reached in time")


def _attempts(seeded) -> list[CallbackAttempt]:
    with session_scope(seeded) as s:
        rows = s.execute(select(CallbackAttempt).order_by(CallbackAttempt.id)).scalars().all()
        s.expunge_all()
        return list(rows)


def _first(seeded) -> CallbackAttempt:
    return _attempts(seeded)[0]


def _dialled(carrier, key: str) -> list[dict]:
    """The Calls create requests the carrier took for this idempotency key."""
    return [r for r in carrier.posted("Calls") if query_of(r["data"]["Url"])["key"] == key]


async def test_r7_4_a_survey_call_is_placed_by_the_runner_with_its_key_and_answered_through_the_webhooks(
        app, carrier, seeded, due, runners):
    runner = runners()
    await runner.sweep()
    await until(lambda: carrier.calls)
    (request,) = carrier.posted("Calls")
    data, attempt = request["data"], _first(seeded)
    assert (data["To"], data["From"]) == (CITIZEN, "+8610012345")
    assert query_of(data["Url"]) == {"key": attempt.idempotency_key, "case": due}
    assert query_of(data["StatusCallback"]) == {"key": attempt.idempotency_key}
    sid = carrier.calls[0]["sid"]
    carrier.calls[0]["status"] = "in-progress"  # the citizen answers
    await until(lambda: _first(seeded).state == A.ANSWERED)
    call = TwilioCall(app.state.test_client, caller="+8610012345", to=CITIZEN, sid=sid)
    call.start(path_of(data["Url"]))
    call.press("1")
    carrier.calls[0]["status"] = "completed"  # the end of the call frees the runner's line
    await until(lambda: not runner.in_flight)
    with session_scope(seeded) as s:
        case = s.execute(select(Case).where(Case.number == due)).scalar_one()
        assert (case.status, case.satisfaction) == (CaseStatus.CLOSED, Satisfaction.SATISFIED)
        record = s.execute(select(Call).where(Call.uniqueid == sid)).scalar_one()
        assert (record.purpose, record.direction, record.outcome, record.carrier) == ("callback", "outbound",
                                                                                      "self_served", "twilio")
    assert _first(seeded).state == A.DONE and len(carrier.posted("Calls")) == 1


async def test_a_crash_between_request_and_answer_then_a_restart_leaves_one_call(app, carrier, seeded, due, runners):
    carrier.fail_next = ConnectionError("connection reset while reading the answer")
    first = runners()
    await first.sweep()
    await until(lambda: first.stats.outcomes.get("unknown"))
    key = _first(seeded).idempotency_key
    assert _first(seeded).state == A.DIALING and len(_dialled(carrier, key)) == 1
    await first.stop(wait=False)  # the process dies with the call ringing at the carrier

    restarted = runners()
    await restarted.sweep()  # reconcile: the carrier's list has it ringing -> adopted, not dialled again
    assert restarted.stats.reconciled == {"adopted": 1}
    assert len(_dialled(carrier, key)) == 1 and _first(seeded).state == A.DIALING
    sid = carrier.calls[0]["sid"]
    carrier.calls[0]["status"] = "no-answer"
    status = post_signed(app.state.test_client, path_of(_dialled(carrier, key)[0]["data"]["StatusCallback"]),
                         {"CallSid": sid, "CallStatus": "no-answer", "To": CITIZEN})
    assert status.status_code == 204
    await until(lambda: not restarted.in_flight)
    await restarted.sweep()
    assert _first(seeded).state == A.NO_ANSWER and len(_dialled(carrier, key)) == 1
    with session_scope(seeded) as s:
        (record,) = s.execute(select(Call).where(Call.purpose == "callback")).scalars().all()
        assert (record.uniqueid, record.outcome, record.carrier) == (sid, "no_answer", "twilio")


async def test_a_request_that_never_reached_the_carrier_is_dialled_once_after_the_restart(carrier, seeded, due,
                                                                                        runners):
    carrier.fail_before = ConnectionError("connection refused")
    first = runners()
    await first.sweep()
    await until(lambda: first.stats.outcomes.get("unknown"))
    await first.stop(wait=False)
    key = _first(seeded).idempotency_key
    restarted = runners()
    await restarted.sweep()  # not in the carrier's list: certainly never placed -> the same key again
    assert restarted.stats.reconciled == {"never_dialled": 1}
    await until(lambda: carrier.calls)
    assert len(_dialled(carrier, key)) == 1 and _first(seeded).attempt_no == 1


async def test_a_call_to_the_same_number_for_another_attempt_is_not_taken_for_this_one(app, carrier, seeded, domain,
                                                                                      due, runners):
    """Two cases of one citizen: the first attempt's call (bound to its key by its webhook) is in the
    carrier's list under the same number; the second attempt, lost before the carrier, is still dialled."""
    first = runners()
    await first.sweep()
    await until(lambda: carrier.calls)
    other = carrier.calls[0]
    call = TwilioCall(app.state.test_client, caller="+8610012345", to=CITIZEN, sid=other["sid"])
    call.start(path_of(other["url"]))  # answered: its survey binds the sid to its key
    call.press("1")
    other["status"] = "completed"
    await until(lambda: not first.in_flight)
    await first.stop(wait=False)
    reported_case(seeded, domain, CITIZEN)
    carrier.fail_before = ConnectionError("connection refused")
    second = runners()
    await second.sweep()
    await until(lambda: second.stats.outcomes.get("unknown"))
    await second.stop(wait=False)
    lost = next(a for a in _attempts(seeded) if a.state == A.DIALING and a.idempotency_key != query_of(other["url"])["key"])
    third = runners()
    await third.sweep()
    assert third.stats.reconciled.get("never_dialled") == 1
    await until(lambda: _dialled(carrier, lost.idempotency_key))
    assert len(_dialled(carrier, lost.idempotency_key)) == 1


async def test_an_unanswered_call_is_logged_once_whoever_settles_it_first(app, carrier, seeded, due, runners):
    runner = runners()
    await runner.sweep()
    await until(lambda: carrier.calls)
    sid = carrier.calls[0]["sid"]
    status_path = path_of(carrier.posted("Calls")[0]["data"]["StatusCallback"])
    carrier.calls[0]["status"] = "busy"
    await until(lambda: _first(seeded).state == A.BUSY)  # the runner read it from the carrier
    answer = post_signed(app.state.test_client, status_path, {"CallSid": sid, "CallStatus": "busy", "To": CITIZEN})
    assert answer.status_code == 204  # ... and the status callback finds it settled
    with session_scope(seeded) as s:
        (record,) = s.execute(select(Call).where(Call.purpose == "callback")).scalars().all()
        assert (record.uniqueid, record.outcome, record.carrier) == (sid, "busy", "twilio")


async def test_a_call_the_carrier_refuses_is_a_failed_try_not_a_lost_one(carrier, seeded, due, runners):
    carrier.refuse_next = True
    runner = runners()
    await runner.sweep()
    await until(lambda: _first(seeded).state == A.FAILED)
    assert carrier.calls == []


def test_the_composition_root_gives_the_runner_the_twilio_port_when_configured(tmp_path, domain, engine):
    service = callback_service(twilio_settings(tmp_path, callback_driver="twilio"), domain=domain, engine=engine)
    assert isinstance(service.pbx, TwilioCallbackPbx) and service.runner.pbx is service.pbx
    asterisk = callback_service(twilio_settings(tmp_path), domain=domain, engine=engine)
    assert asterisk.pbx.carrier == "asterisk"
