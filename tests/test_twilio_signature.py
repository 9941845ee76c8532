"""Issue 15 §4: every Twilio webhook checks the request's signature against the configured public URL
(RequestValidator); unsigned, tampered, wrongly addressed and replayed requests are refused with 403
and logged without the caller's number."""
from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from callcenter.api.app import create_app
from tests.twilio_carrier import (
    PUBLIC,
    SIGNATURE,
    TOKEN,
    TwilioCall,
    post_signed,
    sign,
    twilio_settings,
)
from ticketing.models import Call
from ticketing.store import session_scope

CALLER = "13900000077"
WEBHOOKS = ["/twilio/voice/incoming", "/twilio/voice/status", "/twilio/voice/gather?step=0",
            "/twilio/voice/record?step=0", "/twilio/voice/queue", "/twilio/voice/survey?key=k&case=20260302000001",
            "/twilio/sms/incoming", "/twilio/sms/status"]


@pytest.fixture
def client(seeded, domain, engine, tmp_path):
    with TestClient(create_app(twilio_settings(tmp_path), domain=domain, engine=engine)) as c:
        yield c


def _params(sid="CA" + "7" * 32):
    return {"CallSid": sid, "From": CALLER, "To": "12345", "CallStatus": "ringing"}


def _calls(seeded) -> int:
    with session_scope(seeded) as s:
        return s.execute(select(func.count()).select_from(Call)).scalar_one()


@pytest.mark.parametrize("path", WEBHOOKS)
def test_missing_signature_is_refused_on_every_webhook(client, path, caplog):
    with caplog.at_level(logging.WARNING, logger="callcenter.twilio"):
        response = client.post(path, data=_params())
    assert response.status_code == 403
    assert response.json()["error"] == "twilio_signature"
    assert CALLER not in caplog.text and "refused" in caplog.text


def test_a_signed_request_is_answered(client, seeded):
    assert post_signed(client, "/twilio/voice/incoming", _params()).status_code == 200
    assert _calls(seeded) == 1


def test_a_tampered_parameter_is_refused(client, seeded, caplog):
    params = _params()
    signature = sign(PUBLIC + "/twilio/voice/incoming", params)
    with caplog.at_level(logging.WARNING, logger="callcenter.twilio"):
        response = client.post("/twilio/voice/incoming", data={**params, "From": "13900000078"},
                               headers={SIGNATURE: signature})
    assert response.status_code == 403 and _calls(seeded) == 0
    assert "13900000078" not in caplog.text and CALLER not in caplog.text


def test_a_request_signed_for_another_url_is_refused(client, seeded):
    response = post_signed(client, "/twilio/voice/incoming", _params(),
                           signed_url="https://attacker.example.com/twilio/voice/incoming")
    assert response.status_code == 403 and _calls(seeded) == 0


def test_a_request_signed_with_another_token_is_refused(client, seeded):
    response = post_signed(client, "/twilio/voice/incoming", _params(), token=TOKEN[::-1])
    assert response.status_code == 403 and _calls(seeded) == 0


def test_a_replayed_request_is_refused(client, seeded):
    params = _params()
    headers = {SIGNATURE: sign(PUBLIC + "/twilio/voice/incoming", params)}
    assert client.post("/twilio/voice/incoming", data=params, headers=headers).status_code == 200
    again = client.post("/twilio/voice/incoming", data=params, headers=headers)
    assert again.status_code == 403 and "replay" in again.json()["detail"]
    assert _calls(seeded) == 1


def test_an_answer_for_a_step_already_taken_is_refused(client, seeded):
    """A new signed request (another digit) for the same CallSid and step: the step is consumed."""
    call = TwilioCall(client)
    call.start()
    call.press("9")  # step 0 -> asked again at step 1
    stale = post_signed(client, "/twilio/voice/gather?step=0", call.params(Digits="1"))
    assert stale.status_code == 403 and "step" in stale.json()["detail"]
    call.press("0")
    with session_scope(seeded) as s:
        row = s.execute(select(Call).where(Call.uniqueid == call.sid)).scalar_one()
        assert row.digits == [{"node": "main_menu", "digits": "9"}, {"node": "main_menu", "digits": "0"}]


def test_without_an_auth_token_every_webhook_is_refused(seeded, domain, engine, tmp_path):
    with TestClient(create_app(twilio_settings(tmp_path, twilio_auth_token=""), domain=domain, engine=engine)) as c:
        assert post_signed(c, "/twilio/voice/incoming", _params()).status_code == 403
