"""Notices to citizens delivered, not only recorded (issue 14; R8.2, R2.2): a unit that records its
R8.2 notification with the hotline's voice call (`auto_voice`) gets it delivered by the same runner
as R7.7 urges: the citizen's line rings (not a duty phone), the notice says the case number, the
unit and when it answers; heard to its end it is delivered, on the case's audit trail; unanswered it
is tried again after `retry_minutes`, then failed (on the case too) and retried by hand; never outside
calling hours; made once however often the planner runs. A portal request's phone gets its
confirmation the same way. Against an in-memory PBX (tests/test_notify_voice.py's); on the real
Asterisk: tests/live/test_citizen_notice_live.py. SQLite and PostgreSQL."""
from __future__ import annotations

import pytest
from sqlalchemy import select

from callback import notify as N
from callback.notices import citizen_facts, confirm_submission
from callback.notify_runner import NoticeRunner
from tests.live.callback_helpers import BACK_OFFICE
from tests.test_notify_voice import OPTS, FakeNoticePbx
from ticketing.audit import SYSTEM, Actor
from ticketing.enums import CaseKind, Channel
from ticketing.models import AuditEvent, Case, MemberUnit
from ticketing.notification_model import PORTAL_CONFIRMATION, UNIT_NOTICE, CitizenNotice, NotificationDelivery
from ticketing.store import session_scope

CITIZEN = "13800000001"


def _unit_actor(s, code="water_supply") -> Actor:
    unit_id = s.execute(select(MemberUnit.id).where(MemberUnit.code == code)).scalar_one()
    return Actor(user_id=None, name=f"{code}-staff", role="unit_staff", unit_id=unit_id)


def _notified(seeded, domain, clock, channel="auto_voice", phone=CITIZEN) -> str:
    """A case dispatched to the water company, which records its R8.2 notification by `channel`."""
    clock.set("2026-03-02T10:00:00")
    with session_scope(seeded) as s:
        wf = domain.workflow(s)
        case = wf.accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="水压低",
                         description="三楼以上没水", citizen_phone=phone)
        (wo,) = wf.dispatch(BACK_OFFICE, case, units=["water_supply"])
        wf.notify(_unit_actor(s), wo, channel=channel)
        return case.number


def _heard(seeded, domain):
    def press(key: str) -> None:  # the flow reached `heard` (ivr_flows/citizen_notice.yaml)
        with session_scope(seeded) as s:
            assert N.acknowledge(s, domain, key)
    return press


def _actions(seeded) -> list[str]:
    with session_scope(seeded) as s:
        return list(s.execute(select(AuditEvent.action).order_by(AuditEvent.id)).scalars())


async def _drain(seeded, domain, pbx, timeout=10) -> None:
    runner = NoticeRunner(domain, seeded, pbx, OPTS)
    try:
        await runner.drain(timeout=timeout, poll=0.01)
    finally:
        await runner.stop()


async def test_r8_2_a_notice_by_the_hotlines_voice_call_rings_the_citizen_and_is_recorded_heard(seeded, domain, clock):
    number = _notified(seeded, domain, clock)
    pbx = FakeNoticePbx(answering=(CITIZEN,), press=_heard(seeded, domain))
    await _drain(seeded, domain, pbx)
    assert [phone for phone, _c, _f in pbx.rings] == [CITIZEN]  # the citizen's line, not the duty phone
    facts = pbx.rings[0][2]
    assert facts["recipient"] == "citizen" and facts["case_number"] == number
    with session_scope(seeded) as s:
        d = s.execute(select(NotificationDelivery)).scalar_one()
        assert (d.state, d.target_role, d.phone, d.tries) == (N.ACKNOWLEDGED, N.CITIZEN, CITIZEN, 0)
        notice = s.get(CitizenNotice, d.citizen_notice_id)
        assert notice.kind == UNIT_NOTICE and d.notification_id is None
        # what the call says: the case, the unit (its rendered name), when it answers
        said = citizen_facts(s, domain, d.idempotency_key)
        assert said["notice_kind"] == UNIT_NOTICE and said["case_number"] == number.replace("-", "")
        assert said["unit_prompt"] == "unit_water_supply" and said["due_date"].startswith("2026-")
        event = s.execute(select(AuditEvent).where(AuditEvent.action == "unit_notice_delivered")).scalar_one()
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        assert event.case_id == case.id  # visible on the case's history
        assert N.plan(s, domain) == 0  # made once: the planner finds nothing more to do
    with session_scope(seeded) as s:
        assert len(s.execute(select(CitizenNotice.id)).all()) == 1
    assert not pbx.ledger


async def test_r8_2_a_notice_the_unit_gave_itself_is_not_called(seeded, domain, clock):
    _notified(seeded, domain, clock, channel="phone")
    pbx = FakeNoticePbx(answering=(CITIZEN,))
    await _drain(seeded, domain, pbx)
    assert pbx.rings == []
    with session_scope(seeded) as s:
        assert s.execute(select(CitizenNotice.id)).all() == []


async def test_r8_2_an_unanswered_notice_is_tried_again_later_then_failed_on_the_case_and_retried_by_hand(
        seeded, domain, clock):
    number = _notified(seeded, domain, clock)
    pbx = FakeNoticePbx(answering=())
    rules = domain.policy.notifications
    for i in range(rules.max_tries):
        await _drain(seeded, domain, pbx)
        assert len(pbx.rings) == i + 1  # one try per round: the citizen has one line
        clock.advance(minutes=rules.retry_minutes)
    await _drain(seeded, domain, pbx)
    assert len(pbx.rings) == rules.max_tries
    assert len({chan for _p, chan, _f in pbx.rings}) == rules.max_tries  # a new key per try
    with session_scope(seeded) as s:
        d = s.execute(select(NotificationDelivery)).scalar_one()
        assert (d.state, d.tries) == (N.FAILED, rules.max_tries)
        assert "citizen's line" in d.detail and CITIZEN not in d.detail
    assert _actions(seeded).count("unit_notice_failed") == 1
    with session_scope(seeded) as s:
        assert N.retry(s, domain, BACK_OFFICE, d.id)
        assert not N.retry(s, domain, BACK_OFFICE, d.id)  # already scheduled again
    pbx.answering = {CITIZEN}
    pbx.press = _heard(seeded, domain)
    await _drain(seeded, domain, pbx)
    with session_scope(seeded) as s:
        d = s.execute(select(NotificationDelivery)).scalar_one()
        assert (d.state, d.tries) == (N.ACKNOWLEDGED, 0)
    assert "notice_delivery_retried" in _actions(seeded) and number


async def test_r8_2_no_call_to_a_citizen_outside_calling_hours(seeded, domain, clock):
    _notified(seeded, domain, clock)
    clock.set("2026-03-02T23:30:00")
    pbx = FakeNoticePbx(answering=(CITIZEN,))
    runner = NoticeRunner(domain, seeded, pbx, OPTS)
    try:
        assert await runner.sweep() == 0
    finally:
        await runner.stop()
    with session_scope(seeded) as s:
        assert s.execute(select(NotificationDelivery.state)).scalar_one() == N.SCHEDULED


async def test_r8_2_a_case_without_a_phone_fails_at_once_and_says_why(seeded, domain, clock):
    with session_scope(seeded) as s:
        wf = domain.workflow(s)
        case = wf.accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="水压低",
                         description="三楼以上没水", citizen_phone="13800000001")
        (wo,) = wf.dispatch(BACK_OFFICE, case, units=["water_supply"])
        wf.notify(_unit_actor(s), wo, channel="auto_voice")
        s.flush()
        case.citizen_phone = ""  # e.g. struck out on the citizen's request after the notice was asked
    pbx = FakeNoticePbx()
    await _drain(seeded, domain, pbx)
    assert pbx.rings == []  # nobody to call
    with session_scope(seeded) as s:
        d = s.execute(select(NotificationDelivery)).scalar_one()
        assert (d.state, d.detail) == (N.FAILED, "the case has no phone number")
    assert _actions(seeded).count("unit_notice_failed") == 1  # the unit sees it did not reach the citizen


async def test_r2_2_a_portal_request_gets_its_case_number_by_a_voice_call(seeded, domain, clock):
    clock.set("2026-03-02T10:00:00")
    with session_scope(seeded) as s:
        case = domain.workflow(s).accept(SYSTEM, kind=CaseKind.COMPLAINT, channel=Channel.WEB, title="漏水",
                                         description="人民路水管漏水", citizen_phone=CITIZEN)
        assert confirm_submission(s, case, clock()) is not None
        assert confirm_submission(s, case, clock()) is None  # once per case
        number = case.number
    pbx = FakeNoticePbx(answering=(CITIZEN,), press=_heard(seeded, domain))
    await _drain(seeded, domain, pbx)
    assert [p for p, _c, _f in pbx.rings] == [CITIZEN]
    with session_scope(seeded) as s:
        d = s.execute(select(NotificationDelivery)).scalar_one()
        said = citizen_facts(s, domain, d.idempotency_key)
        assert said == {"notice_kind": PORTAL_CONFIRMATION, "case_number": number.replace("-", ""),
                        "unit_prompt": "", "due_date": ""}
    assert "portal_confirmation_delivered" in _actions(seeded)


@pytest.mark.parametrize("who, sees", [("bo1", True), ("water1", True), ("urban1", False)])
def test_r5_3_deliveries_are_listed_masked_to_the_center_and_the_units_own(api, seeded, domain, clock, who, sees):
    number = _notified(seeded, domain, clock)
    with session_scope(seeded) as s:
        N.plan(s, domain)
    r = api.get("/api/v1/notifications", who)
    assert r.status_code == 200, r.text
    rows = r.json()
    if not sees:
        assert rows == []
        return
    (row,) = rows
    assert (row["kind"], row["to"], row["case_number"], row["state"], row["unit_code"]) == (
        UNIT_NOTICE, "citizen", number, N.SCHEDULED, "water_supply")
    assert CITIZEN not in r.text  # masked even once a try has a number


def test_a_failed_delivery_is_retried_from_the_api_and_only_a_failed_one(api, seeded, domain, clock):
    _notified(seeded, domain, clock)
    with session_scope(seeded) as s:
        N.plan(s, domain)
        d = s.execute(select(NotificationDelivery)).scalar_one()
        d.state, d.tries, d.phone = N.FAILED, 4, CITIZEN
    assert api.post(f"/api/v1/notifications/{d.id}/retry", "urban1").status_code == 404  # not its unit's
    r = api.post(f"/api/v1/notifications/{d.id}/retry", "water1")
    assert r.status_code == 200, r.text
    assert (r.json()["state"], r.json()["tries"]) == (N.SCHEDULED, 0)
    assert CITIZEN not in r.text and r.json()["phone"].startswith("138")
    assert api.post(f"/api/v1/notifications/{d.id}/retry", "water1").status_code == 409
    assert api.get("/api/v1/notifications?state=failed", "bo1").json() == []


def test_r7_3c_a_notice_to_a_discipline_reporter_is_listed_to_the_commission_alone(api, seeded, domain, clock):
    from tests.helpers import ok

    case = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "landline", "title": "举报", "description": "某科长收受礼金",
        "category_code": "discipline_economic", "citizen_phone": CITIZEN}), 201)
    case = ok(api.post(f"/api/v1/cases/{case['number']}/dispatch", "op1", json={"expected_version": case["version"]}))
    (wo,) = case["work_orders"]
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/notify", "disc1", json={"channel": "auto_voice"}))
    with session_scope(seeded) as s:
        assert N.plan(s, domain) == 1
    assert api.get("/api/v1/notifications", "bo1").json() == []  # not even that the reporter is called
    assert [r["case_number"] for r in api.get("/api/v1/notifications", "disc1").json()] == [case["number"]]


def test_r2_2_a_request_sent_on_the_portal_is_confirmed_to_the_phone_it_gave(api, seeded, domain, clock):
    from tests.helpers import ok
    from tests.test_portal import FORM, PHONE

    clock.set("2026-03-02T10:00:00")
    number = ok(api.post("/api/v1/portal/requests", json=FORM), 201)["number"]
    with session_scope(seeded) as s:
        notice = s.execute(select(CitizenNotice)).scalar_one()
        assert (notice.kind, notice.channel, notice.work_order_id) == (PORTAL_CONFIRMATION, "voice", None)
        assert N.plan(s, domain) == 1
        claimed = N.claim(s, domain)
    assert (claimed.phone, claimed.case_number, claimed.recipient) == (PHONE, number, N.CITIZEN)
