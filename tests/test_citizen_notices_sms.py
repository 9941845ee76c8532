"""Citizens' notices by SMS (issue 14; R8.2, R2.2): a unit that chooses the hotline's text
(`auto_sms`) gets it sent through the SMS port (callcenter/twilio/sms.py's `send` on Twilio) by the
same deliveries as the voice calls: the text names the case, the unit and the answer's deadline;
accepted by the carrier it is delivered (on the case), refused it is tried again later, then failed;
a send interrupted by a crash is never sent twice. The voice runner leaves SMS deliveries alone.
Where no SMS sender is configured the unit cannot choose it. SQLite and PostgreSQL."""
from __future__ import annotations

from sqlalchemy import select

from callback import notify as N
from callback.notices import confirm_submission
from callback.notify_runner import NoticeRunner
from callback.notify_sms import SmsNotices
from tests.helpers import ok, refused
from tests.test_citizen_notices import CITIZEN, _actions, _notified
from tests.test_notify_voice import OPTS, FakeNoticePbx
from ticketing.audit import SYSTEM
from ticketing.enums import CaseKind, Channel
from ticketing.notification_model import NotificationDelivery
from ticketing.store import session_scope


class FakeSms:
    def __init__(self, refuse: bool = False):
        self.sent: list[tuple[str, str]] = []
        self.refuse = refuse

    def send(self, to: str, text: str) -> str:
        if self.refuse:
            raise RuntimeError("carrier refused")
        self.sent.append((to, text))
        return f"SM{len(self.sent)}"


def _delivery(seeded) -> NotificationDelivery:
    with session_scope(seeded) as s:
        d = s.execute(select(NotificationDelivery)).scalar_one()
        s.expunge(d)
        return d


async def test_r8_2_a_notice_by_the_hotlines_text_is_sent_once_and_recorded_on_the_case(seeded, domain, clock):
    number = _notified(seeded, domain, clock, channel="auto_sms")
    pbx = FakeNoticePbx(answering=(CITIZEN,))
    runner = NoticeRunner(domain, seeded, pbx, OPTS)
    try:
        await runner.drain(timeout=5, poll=0.01)
    finally:
        await runner.stop()
    assert pbx.rings == []  # not a voice call
    sms = FakeSms()
    sender = SmsNotices(domain, seeded, sms)
    assert await sender.sweep() == 1
    assert await sender.sweep() == 0  # once
    ((to, text),) = sms.sent
    assert to == CITIZEN and number in text and "宜兴市自来水公司" in text and "月" in text and "日前办理并答复您" in text
    d = _delivery(seeded)
    assert (d.channel, d.state, d.detail) == (N.SMS, N.ACKNOWLEDGED, "accepted by the carrier")
    assert "unit_notice_delivered" in _actions(seeded)


async def test_r8_2_a_refused_text_is_tried_again_later_then_failed(seeded, domain, clock):
    _notified(seeded, domain, clock, channel="auto_sms")
    sender = SmsNotices(domain, seeded, FakeSms(refuse=True))
    for _ in range(domain.policy.notifications.max_tries):
        assert await sender.sweep() == 0
        clock.advance(minutes=domain.policy.notifications.retry_minutes)
    d = _delivery(seeded)
    assert (d.state, d.tries) == (N.FAILED, domain.policy.notifications.max_tries)
    assert "unit_notice_failed" in _actions(seeded)


async def test_a_text_interrupted_by_a_crash_is_not_sent_again(seeded, domain, clock):
    _notified(seeded, domain, clock, channel="auto_sms")
    with session_scope(seeded) as s:
        N.plan(s, domain)
        claimed = N.claim(s, domain, channel=N.SMS)  # the dead process committed `dialing`, then died
    sms = FakeSms()
    await SmsNotices(domain, seeded, sms).sweep()
    assert sms.sent == []  # not blindly again: a try, the next after retry_minutes
    d = _delivery(seeded)
    assert (d.state, d.tries, d.idempotency_key != claimed.key) == (N.SCHEDULED, 1, True)
    assert "interrupted while sending" in d.detail


async def test_r2_2_a_portal_confirmation_by_text_gives_the_case_number(seeded, domain, clock):
    clock.set("2026-03-02T10:00:00")
    with session_scope(seeded) as s:
        case = domain.workflow(s).accept(SYSTEM, kind=CaseKind.COMPLAINT, channel=Channel.WEB, title="漏水",
                                         description="人民路水管漏水", citizen_phone=CITIZEN)
        confirm_submission(s, case, clock(), N.SMS)
        number = case.number
    sms = FakeSms()
    assert await SmsNotices(domain, seeded, sms).sweep() == 1
    assert number in sms.sent[0][1] and "查询办理进度" in sms.sent[0][1]


def test_r8_2_the_hotlines_text_cannot_be_chosen_without_an_sms_sender(api, seeded, domain):
    case = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "consultation", "channel": "mobile", "title": "水压低", "description": "三楼以上没水",
        "category_code": "water_supply", "citizen_phone": CITIZEN}), 201)
    case = ok(api.post(f"/api/v1/cases/{case['number']}/dispatch", "op1", json={"expected_version": case["version"]}))
    (wo,) = case["work_orders"]
    refused(api.post(f"/api/v1/work-orders/{wo['id']}/notify", "water1", json={"channel": "auto_sms"}), 422, "R8.2")
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/notify", "water1", json={"channel": "auto_voice"}))


def test_the_composition_root_sends_citizens_texts_only_where_twilio_is_configured(tmp_path, domain, engine):
    from callcenter.callbacks import callback_service
    from callcenter.settings import Settings
    from callcenter.twilio.sms import TwilioSms
    from tests.conftest import CONFIG_DIR
    from tests.twilio_carrier import twilio_settings

    with_sms = callback_service(twilio_settings(tmp_path), domain=domain, engine=engine)
    assert isinstance(with_sms.sms.sender, TwilioSms) and with_sms.notices is not None  # and voice notices
    without = callback_service(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine)
    assert without.sms is None and without.notices is not None
