"""Issue 16 item 5: an operator's phone can be switched to SIP over TLS with SRTP (`phone: secure`,
op8006 in config/operators.yaml). A baresip registering over TLS takes a call whose signalling and
media Asterisk itself reports as encrypted; a phone that offers plain RTP is not answered in clear."""
from __future__ import annotations

import shutil
import time
import uuid

import pytest

from callcenter.pbx import credentials, process
from tests.live.helpers import AmiSession
from tests.live.phones import Phone, tone_wav

pytestmark = [pytest.mark.live,
              pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip not installed")]

ENDPOINT = "op8006"


def _registered(settings, timeout: float = 15.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        endpoint = process.status(settings)["endpoints"][ENDPOINT]
        if endpoint["registered"] or time.monotonic() > deadline:
            return endpoint
        time.sleep(0.2)


def _call_the_phone(settings) -> dict[str, str]:
    """Originate a call to op8006 and read, once it is up, what Asterisk says of its security."""
    channel_id = f"secure-{uuid.uuid4().hex[:10]}"
    with AmiSession(settings) as ami:
        reply = ami.action({"Action": "Originate", "Channel": f"PJSIP/{ENDPOINT}", "ChannelId": channel_id,
                            "Application": "Wait", "Data": "20", "Async": "true", "Timeout": "10000"})
        assert reply.get("Response") == "Success", reply
        try:
            up = ami.wait_for(lambda m: m.get("Event") in ("Newstate", "OriginateResponse")
                              and m.get("Uniqueid") == channel_id, timeout=15)
            if up.get("Event") == "OriginateResponse":  # failed before answering
                return {"answered": "0", "reason": up.get("Reason", "")}
            if up.get("ChannelStateDesc") != "Up":
                up = ami.wait_for(lambda m: m.get("Event") in ("Newstate", "OriginateResponse")
                                  and m.get("Uniqueid") == channel_id
                                  and (m.get("ChannelStateDesc") == "Up" or m.get("Event") == "OriginateResponse"),
                                  timeout=15)
                if up.get("Event") == "OriginateResponse" and up.get("Response") != "Success":
                    return {"answered": "0", "reason": up.get("Reason", "")}
            name = up["Channel"]
            values = {"answered": "1"}
            for what in ("pjsip,secure", "rtp,secure"):
                var = ami.action({"Action": "Getvar", "Channel": name, "Variable": f"CHANNEL({what})"})
                values[what] = var.get("Value", "")
            return values
        finally:
            ami.action({"Action": "Hangup", "Channel": f"/^PJSIP/{ENDPOINT}-.*$/"})


def _phone(settings, tmp_path, name: str, mediaenc: str | None) -> Phone:
    password = credentials.sip_passwords(settings)[ENDPOINT]
    phone = Phone(settings, ENDPOINT, password, tmp_path / name, answermode="auto",
                  audio_wav=tone_wav(tmp_path / "tone.wav"), tls=True, mediaenc=mediaenc)
    try:
        phone._connect(timeout=5.0)
        # this phone's own registration, over TLS (an earlier phone's contact may still be listed);
        # baresip logs it as "op8006@...: {0/TLS/v4} 200 OK" before its control socket reports events
        deadline = time.monotonic() + 15
        while "/TLS/" not in phone.log_tail(40) or " 200 OK" not in phone.log_tail(40):
            assert time.monotonic() < deadline, phone.log_tail(20)
            time.sleep(0.2)
        assert _registered(settings)["registered"]
    except BaseException:
        phone.stop()
        raise
    return phone


def test_issue16_secure_phone_registers_over_tls_and_its_call_is_srtp(asterisk, tmp_path):
    phone = _phone(asterisk, tmp_path, "srtp", "srtp-mand")
    try:
        call = _call_the_phone(asterisk)
        assert call == {"answered": "1", "pjsip,secure": "1", "rtp,secure": "1"}, (call, phone.log_tail(20))
    finally:
        phone.stop()


def test_issue16_secure_operator_is_not_answered_with_plain_rtp(asterisk, tmp_path):
    """The same account over TLS but with a phone that has no SRTP: Asterisk offers only SRTP, the
    phone cannot take it, and the call never comes up -- no fallback to media in clear."""
    phone = _phone(asterisk, tmp_path, "plain", None)
    try:
        call = _call_the_phone(asterisk)
        assert call["answered"] == "0", (call, phone.log_tail(20))
        assert "rejected" in phone.log_tail(30), phone.log_tail(30)  # the phone saw the SRTP-only offer
    finally:
        phone.stop()
