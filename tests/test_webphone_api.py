"""The operator's phone account for the desk page's browser phone (issue 17 item 1): only the logged-in
operator gets their own SIP password, never cached, with the wss address the page connects to; a
softphone operator gets no password; other roles and accounts without an extension get none. The desk
page's Content-Security-Policy lets the page reach exactly that wss address. (The phone against the real
Asterisk: tests/live/test_webphone_live.py.)"""
from __future__ import annotations

import json

import pytest

from callcenter.pbx.credentials import SIP_SECRETS
from callcenter.pbx.tls import ensure_certificate, fingerprint
from ticketing.models import User
from ticketing.store import session_scope

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the answers are the app's, not the store's
pytestmark = SQLITE


def _install_accounts(api, seeded) -> str:
    """What `callcenter asterisk install` leaves in the state directory: SIP passwords and the certificate."""
    settings = api.client.app.state.settings
    (settings.state_dir / SIP_SECRETS).write_text(json.dumps({"op8001": "pw-8001-abcdefgh", "op8005": "pw-8005-abcdefgh"}))
    ensure_certificate(settings, [])
    with session_scope(seeded) as s:
        for username, ext in (("op1", "8005"), ("op2", "8001")):
            s.query(User).filter_by(username=username).one().operator_extension = ext
    return fingerprint(settings)


def test_r5_1_browser_phone_operator_gets_own_credentials_not_cached(api, seeded):
    sha = _install_accounts(api, seeded)
    r = api.get("/api/v1/operators/me/phone", "op1")
    assert r.status_code == 200, r.text
    assert "no-store" in r.headers["cache-control"]
    body = r.json()
    assert body == {"extension": "8005", "endpoint": "op8005", "phone": "browser", "password": "pw-8005-abcdefgh",
                    "ws_url": "wss://testserver:8089/ws", "certificate_sha256": sha}
    assert len(sha.split(":")) == 32


def test_softphone_operator_gets_no_password(api, seeded):
    _install_accounts(api, seeded)
    body = api.get("/api/v1/operators/me/phone", "op2").json()
    assert body["phone"] == "softphone" and body["endpoint"] == "op8001"
    assert body["password"] is None and body["ws_url"] is None


def test_r5_1_only_operators_with_an_extension_get_an_account(api, seeded):
    _install_accounts(api, seeded)
    assert api.client.get("/api/v1/operators/me/phone").status_code == 401
    for user in ("bo1", "sup1", "admin1", "water1"):
        r = api.get("/api/v1/operators/me/phone", user)
        assert r.status_code == 403 and "password" not in r.text, user
    with session_scope(seeded) as s:
        s.query(User).filter_by(username="op1").one().operator_extension = None
    assert api.get("/api/v1/operators/me/phone", "op1").status_code == 403


def test_extension_missing_from_config_or_not_installed_says_what_to_do(api, seeded):
    with session_scope(seeded) as s:
        s.query(User).filter_by(username="op1").one().operator_extension = "8005"
        s.query(User).filter_by(username="op2").one().operator_extension = "8099"
    r = api.get("/api/v1/operators/me/phone", "op1")  # no sip-secrets.json yet
    assert r.status_code == 503 and "callcenter asterisk install" in r.json()["detail"]
    r = api.get("/api/v1/operators/me/phone", "op2")
    assert r.status_code == 404 and "operators.yaml" in r.json()["detail"]


def test_desk_page_may_connect_to_the_phones_wss_address_only(api):
    csp = api.client.get("/app/desk").headers["content-security-policy"]
    assert "connect-src 'self' wss://testserver:8089;" in csp
    assert "wss:" not in api.client.get("/app/back").headers["content-security-policy"]
    api.client.app.state.settings.wss_url = "wss://phone.example.gov.cn/ws"
    csp = api.client.get("/app/desk").headers["content-security-policy"]
    assert "connect-src 'self' wss://phone.example.gov.cn;" in csp
    assert api.get("/app/static/phone.js").status_code == 200


def test_jssip_and_the_licences_of_all_it_bundles_are_served_from_this_server(api):
    from callcenter.web import vendor

    r = api.client.get("/app/static/vendor/jssip.min.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.content == (vendor.MODULES / "jssip" / "dist" / "jssip.min.js").read_bytes()
    assert "License: MIT" in r.text[:600]
    lock = json.loads((vendor.HERE / "package-lock.json").read_text(encoding="utf-8"))
    assert vendor.installed_version("jssip") == lock["packages"]["node_modules/jssip"]["version"]
    index = api.client.get("/app/static/vendor/licences").text
    bundled = ("jssip", "debug", "ms", "events", "sdp-transform")  # dist/jssip.min.js carries all five
    for package in bundled:
        assert f"{package} {vendor.installed_version(package)}" in index
        for name in vendor.LICENCES[package]:
            text = api.client.get(f"/app/static/vendor/licences/{package}/{name}").text
            assert "MIT" in text or "Permission is hereby granted" in text, package
    desk = api.client.get("/app/desk").text
    assert desk.index("/app/static/vendor/jssip.min.js") < desk.index("/app/static/phone.js")
