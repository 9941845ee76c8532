"""One masking rule for personal data, used by logs, AMI traces, call events, the voice menu and
the public page (R7.6: personal data is never published; A2: the call log names the parties, with
their numbers masked).

The rule (ticketing/privacy.py): a number of 11 or more digits keeps its first 3 and last 4
(138****5678), one of 7 to 10 digits its first 2 and last 2 (87****21), one star per hidden digit;
fewer than 7 digits is nobody's personal line (110, 12345, 12388, an extension) and stays in clear,
so a number reads the same whether it stands in a field or inside a log line.
"""
from __future__ import annotations

import ast
import logging
from pathlib import Path

import pytest
from sqlalchemy import select

from callcenter.pbx.root import RECORDINGS_DIR
from agi.hotline import CallContext, Hotline, router_for
from agi.server import FastAGIServer
from agi.testing import FakeAsterisk, pressing
from callcenter.ami.protocol import Message, redacted
from ticketing.models import Call
from ticketing.privacy import mask_id_number, mask_name, mask_phone, mask_text, scrub
from ticketing.store import session_scope

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "number, masked",
    [
        ("13812345678", "138****5678"),  # mobile: staff recognise it by its head and tail
        ("+8613812345678", "+861******5678"),
        ("051087654321", "051*****4321"),  # landline with area code
        ("0510-87654321", "051*****4321"),  # as typed: separators dropped
        ("138 1234 5678", "138****5678"),
        ("87654321", "87****21"),  # local landline: shorter, so less of it shows
        ("1234567", "12***67"),
        ("12345", "12345"),  # the hotline itself: no one's personal line
        ("110", "110"),
        ("8001", "8001"),  # an operator's extension
        ("<unknown>", ""),
        ("", ""),
        (None, ""),
    ],
)
def test_r7_6_mask_phone_one_rule_for_every_number(number, masked):
    assert mask_phone(number) == masked


@pytest.mark.parametrize("number", ["13812345678", "+8613812345678", "051087654321", "87654321", "1234567",
                                    "12345", "110", "320282199001011234"])
def test_a_number_reads_the_same_in_a_field_and_inside_log_text(number):
    assert mask_text(f"call from {number} queued") == f"call from {mask_phone(number)} queued"


def test_log_text_keeps_uniqueids_and_short_numbers_in_clear():
    text = "caller 13812345678 on uid 1732512345.42 (linkedid 1732512345.40) called 12345 or 110"
    assert mask_text(text) == "caller 138****5678 on uid 1732512345.42 (linkedid 1732512345.40) called 12345 or 110"
    assert mask_text("PJSIP/13812345678@trunk") == "PJSIP/138****5678@trunk"
    assert mask_text("Local/13812345678@citizen-phones-0001;1") == "Local/138****5678@citizen-phones-0001;1"


def test_id_numbers_and_names_are_masked_as_fields_and_in_log_text():
    assert mask_id_number("320282199001011234") == "320***********1234"
    assert mask_id_number("32028219900101123X") == "320***********123X"
    assert mask_id_number("") == "" and mask_id_number(None) == ""
    assert mask_text("身份证号32028219900101123X") == "身份证号320***********123X"
    assert mask_name("张三丰") == "张**" and mask_name("") == ""


def test_ami_traces_mask_with_the_same_rule():
    shown = redacted({"Action": "Originate", "Channel": "PJSIP/13812345678@trunk", "Exten": "12345",
                      "Variable": {"CALLER": "+8613812345678"}})
    assert shown["Channel"] == "PJSIP/138****5678@trunk" and shown["Exten"] == "12345"
    assert shown["Variable"] == {"CALLER": mask_phone("+8613812345678")}
    assert "051*****4321" in repr(Message.from_mapping({"Event": "Newchannel", "CallerIDNum": "051087654321"}))


def test_r7_6_public_text_hides_phones_id_numbers_and_the_citizens_name():
    text = "张三丰反映：电话138-1234-5678，座机0510-87654321，身份证号32028219900101123X，12345已受理"
    published = scrub(text, names=["张三丰"])
    assert published == ("[姓名已隐藏]反映：电话[电话已隐藏]，座机[电话已隐藏]，身份证号[身份证号已隐藏]，"
                         "12345已受理")


def test_masking_rules_live_only_in_ticketing_privacy():
    """One home for each fact: no other module of ours writes its own masking function."""
    homes = []
    for package in ("agi", "callback", "callcenter", "ivr_flows", "ticketing"):
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.lstrip("_").startswith(
                        ("mask", "redact", "scrub")):
                    homes.append(f"{path.relative_to(ROOT)}:{node.name}")
    homes = [h for h in homes if not h.startswith("ticketing/privacy.py:")]
    # protocol.redacted hides AMI secrets and masks each value with ticketing.privacy.mask_text
    assert homes == ["callcenter/ami/protocol.py:redacted"]


# --- the voice menu: the engine gets the hotline's rule from its host (agi/hotline.py) ---------

CALLER = "13900000002"


async def test_ivr_error_is_logged_with_the_hotlines_masking(seeded, domain, monkeypatch, caplog):
    async def broken_lookup(self, caller: str) -> dict:
        raise RuntimeError(f"no open cases for {caller}")

    monkeypatch.setattr(CallContext, "caller_open_cases", broken_lookup)
    caplog.set_level(logging.INFO)
    hotline = Hotline.create(domain, seeded, RECORDINGS_DIR)
    server = FastAGIServer(router_for(hotline), "127.0.0.1", 0)
    await server.start()
    try:
        fake = FakeAsterisk("127.0.0.1", server.port, "ivr/main", callerid=CALLER, uniqueid="1732512345.61")
        await fake.connect()
        await fake.run(pressing("1", "1732512345.60"), timeout=20)
    finally:
        await server.stop()
        await hotline.close()
    failed = [r.getMessage() for r in caplog.records if r.name == "ivr_flows.engine" and r.levelno == logging.ERROR]
    assert len(failed) == 1 and f"no open cases for {mask_phone(CALLER)}" in failed[0]
    assert CALLER not in caplog.text
    with session_scope(seeded) as s:  # the menu broke before any case was made
        call = s.execute(select(Call).where(Call.uniqueid == "1732512345.61")).scalar_one()
        assert (call.outcome, call.outcome_reason) == ("queued", "error")
