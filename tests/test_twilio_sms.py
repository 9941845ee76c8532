"""SMS on Twilio (R2.2 SMS channel, R8.2 notifications; issue 15 §3): inbound messages become cases or
replies on one, STOP/退订 stops further messages, long Chinese messages are counted in UCS-2 segments,
outbound sends go through the REST API (checked request by request) with delivery statuses recorded."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from callcenter.api.app import create_app
from callcenter.twilio.sms import OptedOut, segments
from callcenter.twilio.wiring import sms_for
from tests.twilio_carrier import FakeCarrier, post_signed, twilio_settings
from ticketing.audit import Actor
from ticketing.carrier_model import SmsMessage
from ticketing.enums import CaseKind, Channel, Role
from ticketing.models import Case
from ticketing.store import session_scope

CITIZEN = "+8613900000088"
_sids = iter(range(1, 10_000))


@pytest.fixture
def app(seeded, domain, engine, tmp_path):
    application = create_app(twilio_settings(tmp_path), domain=domain, engine=engine)
    application.state.twilio_http_client = FakeCarrier()
    with TestClient(application) as client:
        application.state.test_client = client
        yield application


def _inbound(app, body: str, phone: str = CITIZEN):
    params = {"MessageSid": f"SM{next(_sids):032d}", "From": phone, "To": "+8610012345", "Body": body,
              "NumSegments": "1"}
    return post_signed(app.state.test_client, "/twilio/sms/incoming", params)


def _messages(seeded, phone=CITIZEN):
    with session_scope(seeded) as s:
        rows = s.execute(select(SmsMessage).where(SmsMessage.phone == phone).order_by(SmsMessage.id)).scalars().all()
        s.expunge_all()
        return rows


def _case(seeded, domain, phone=CITIZEN):
    with session_scope(seeded) as s:
        case = domain.workflow(s).accept(Actor(user_id=None, name="test", role=Role.SYSTEM.value),
                                         kind=CaseKind.COMPLAINT, channel=Channel.MOBILE, title="噪音",
                                         description="夜间施工", citizen_phone=phone)
        return case.id, case.number


def test_a_300_character_chinese_notification_is_5_ucs2_segments_of_at_most_67():
    text = "您反映的问题已由承办单位办理完毕。" * 17 + "请留意回访。"  # 17*17+6 = 295
    text = (text + "谢谢您的支持")[:300]
    assert len(text) == 300
    parts = segments(text)
    assert len(parts) == 5 and all(len(p) <= 67 for p in parts) and "".join(parts) == text


@pytest.mark.parametrize("text, count", [("您" * 70, 1), ("您" * 71, 2), ("您" * 134, 2), ("您" * 135, 3),
                                         ("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3),
                                         ("a" * 69 + "您", 1), ("€" * 80, 1), ("€" * 81, 2)])
def test_segment_counts_at_the_gsm_and_ucs2_limits(text, count):
    assert len(segments(text)) == count


def test_an_emoji_is_never_cut_in_half():
    parts = segments("您" * 66 + "😀" + "您" * 10)
    assert parts[0] == "您" * 66 and parts[1].startswith("😀")


def test_r2_2_an_inbound_message_opens_an_sms_case(app, seeded):
    response = _inbound(app, "小区门口路灯坏了一个月了")
    assert response.status_code == 200 and "您的诉求已受理" in response.text
    (message,) = _messages(seeded)
    with session_scope(seeded) as s:
        case = s.get(Case, message.case_id)
        assert (case.channel, case.citizen_phone, case.description) == (Channel.SMS, CITIZEN, "小区门口路灯坏了一个月了")
        assert case.number in response.text


def test_an_inbound_message_with_a_case_number_attaches_to_that_case(app, seeded, domain):
    case_id, number = _case(seeded, domain, phone="13900000001")  # another phone's case, named by number
    _case(seeded, domain)  # the sender's own open case: the number named wins
    response = _inbound(app, f"补充：{number.replace('-', '')}号诉求的施工今晚还在继续")
    assert response.status_code == 200 and "<Message>" not in response.text
    assert _messages(seeded)[-1].case_id == case_id
    with session_scope(seeded) as s:
        assert s.execute(select(Case).where(Case.channel == Channel.SMS)).first() is None


def test_an_inbound_message_without_a_number_attaches_to_the_senders_open_case(app, seeded, domain):
    case_id, _ = _case(seeded, domain)
    _inbound(app, "还没有人来处理")
    assert _messages(seeded)[-1].case_id == case_id


def test_stop_or_tuiding_stops_further_messages_and_start_resumes(app, seeded):
    sms = sms_for(app)
    carrier = app.state.twilio_http_client
    sms.send(CITIZEN, "您的诉求已办结。")
    assert "退订" in _inbound(app, "退订").text
    with pytest.raises(OptedOut):
        sms.send(CITIZEN, "请对办理结果进行评价。")
    other = "+8613900000099"
    assert "退订" in _inbound(app, "STOP", phone=other).text
    with pytest.raises(OptedOut):
        sms.send(other, "x")
    assert len(carrier.posted("Messages")) == 1  # nothing more reached the carrier
    _inbound(app, "订阅")
    sms.send(CITIZEN, "您好")
    assert len(carrier.posted("Messages")) == 2


def test_r8_2_a_notification_is_sent_through_the_rest_api_and_its_delivery_recorded(app, seeded):
    sms = sms_for(app)
    text = "您反映的问题已办结，" * 12
    sid = sms.send(CITIZEN, text)
    (request,) = app.state.twilio_http_client.posted("Messages")
    assert request["data"]["To"] == CITIZEN and request["data"]["Body"] == text
    assert request["data"]["From"] == "+8610012345"
    assert request["data"]["StatusCallback"] == "https://hotline.example.gov.cn/twilio/sms/status"
    client = app.state.test_client
    for status in ("sent", "delivered", "queued"):  # a late "queued" does not undo "delivered"
        answer = post_signed(client, "/twilio/sms/status", {"MessageSid": sid, "MessageStatus": status})
        assert answer.status_code == 204
    (row,) = _messages(seeded)
    assert (row.sid, row.status, row.segments, row.direction) == (sid, "delivered", len(segments(text)), "outbound")


def test_the_same_inbound_message_twice_is_one_message(app, seeded):
    params = {"MessageSid": "SM" + "5" * 32, "From": CITIZEN, "Body": "路灯坏了"}
    assert post_signed(app.state.test_client, "/twilio/sms/incoming", params).status_code == 200
    assert post_signed(app.state.test_client, "/twilio/sms/incoming", params).status_code == 403  # replay
    assert len(_messages(seeded)) == 1
