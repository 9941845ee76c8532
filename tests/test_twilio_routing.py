"""Issue 15 §5: which driver answers a number is configuration -- Asterisk, Twilio, or Twilio as overflow
while the Asterisk is unhealthy -- and the call log says which one carried each call (A2)."""
from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from callcenter.api.app import create_app
from tests.twilio_carrier import TwilioCall, twilio_settings
from ticketing.models import Call, CallEvent
from ticketing.store import session_scope

PBX = "sip:12345@pbx.example.gov.cn;transport=tls"
NUMBERS = {"+862112345": "overflow", "+862112346": "asterisk", "+862112347": "twilio"}


@pytest.fixture
def app(seeded, domain, engine, tmp_path):
    application = create_app(twilio_settings(tmp_path, twilio_numbers=NUMBERS, twilio_pbx_sip_uri=PBX),
                             domain=domain, engine=engine)
    application.state.pbx_up = True
    application.state.twilio_asterisk_health = lambda: application.state.pbx_up
    with TestClient(application) as client:
        application.state.test_client = client
        yield application


def _carried(seeded, sid):
    with session_scope(seeded) as s:
        call_id = s.execute(select(Call.id).where(Call.uniqueid == sid)).scalar_one_or_none()
        if call_id is None:
            return None
        return s.execute(select(CallEvent.data).where(CallEvent.call_id == call_id,
                                                      CallEvent.kind == "carrier")).scalar_one()


@pytest.mark.parametrize("number, pbx_up, to_pbx, overflow", [
    ("+862112345", True, True, None),     # overflow number, PBX healthy: the PBX runs the menu
    ("+862112345", False, False, True),   # overflow number, PBX down: Twilio runs it, logged as overflow
    ("+862112346", False, True, None),    # asterisk: always the PBX
    ("+862112347", True, False, False),   # twilio: always Twilio
    ("+862199999", True, False, False),   # not listed: Twilio
])
def test_the_configured_driver_answers_and_the_call_log_says_which(app, seeded, number, pbx_up, to_pbx, overflow):
    app.state.pbx_up = pbx_up
    call = TwilioCall(app.state.test_client, to=number)
    call.start()
    if to_pbx:
        assert call.twiml.find("Dial/Sip").text == PBX and call.waiting_for() is None
        assert _carried(seeded, call.sid) is None  # the PBX logs its own call (agi/hotline.py)
    else:
        assert call.waiting_for() == "Gather"
        assert _carried(seeded, call.sid) == {"driver": "twilio", "overflow": overflow}
