"""The desk page's phone card in headless Chromium without a PBX (issue 17 item 1): a softphone
operator sees which account to use and no browser-phone controls; an account without an extension
is told so; a browser-phone operator whose Asterisk is not reachable sees "connecting", never
"registered"; no script error or CSP refusal on the page. (Registration, calls and network loss
against the real Asterisk: tests/live/test_webphone_live.py.)"""
from __future__ import annotations

import json

import pytest

from callcenter.pbx.credentials import SIP_SECRETS
from ticketing.models import User
from ticketing.store import session_scope

from tests.test_staff_pages_browser import running

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_r5_1_phone_card_tells_each_operator_which_phone_they_use(seeded, domain, engine, tmp_path):
    (tmp_path / SIP_SECRETS).write_text(json.dumps({"op8005": "pw-8005-abcdefgh"}))
    with session_scope(seeded) as s:
        s.query(User).filter_by(username="op1").one().operator_extension = "8001"
        s.query(User).filter_by(username="op2").one().operator_extension = "8005"
    with running(domain, engine, tmp_path) as console:
        page = console.login("op1", expect="/app/desk")
        note = page.locator("#webphone-softphone")
        note.wait_for()
        assert "外接软电话" in note.inner_text() and "op8001" in note.inner_text()
        assert page.locator("#webphone-controls").is_hidden()
        assert page.locator("#webphone").get_attribute("data-mode") == "softphone"

        page = console.login("op2", expect="/app/desk")
        page.wait_for_selector("#webphone[data-mode='browser']", state="attached")
        # no Asterisk takes this account (none listening, or an untrusted certificate): never "registered"
        page.wait_for_timeout(1500)
        assert page.locator("#webphone-reg").get_attribute("data-state") in ("connecting", "unregistered", "failed")
        assert "未注册" in page.inner_text("#webphone-reg") or "正在连接" in page.inner_text("#webphone-reg")
        assert page.locator("#webphone-answer").is_hidden() and page.locator("#webphone-hangup").is_disabled()
        assert page.locator("#call-actions").is_hidden()  # no call: no call actions

        page = console.login("bo1", expect="/app/back")  # not an operator: no phone card at all
        assert page.locator("#webphone").count() == 0
