"""`callcenter open311 add-client / list / revoke` (issue 14 item 2, A1): the api_key is printed
once and stored only as its SHA-256; a revoked key is refused at once; every change is audited."""
from __future__ import annotations

import hashlib
import re
from urllib.parse import urlencode

from click.testing import CliRunner
from sqlalchemy import select

from callcenter.cli import main
from ticketing.models import AuditEvent
from ticketing.open311_model import Open311Client
from ticketing.store import session_scope

from .conftest import CONFIG_DIR

FORM = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
REQUEST = {"service_code": "city_appearance", "attribute[kind]": "complaint", "address_string": "宜城街道人民广场",
           "description": "广场路灯不亮"}


def _cli(monkeypatch, db_url, *args):
    from callcenter.settings import get_settings

    monkeypatch.setenv("CALLCENTER_DATABASE_URL", db_url)
    monkeypatch.setenv("CALLCENTER_CONFIG_DIR", str(CONFIG_DIR))
    get_settings.cache_clear()
    return CliRunner().invoke(main, ["open311", *args], prog_name="callcenter")


def _post(api, key: str):
    return api.client.post("/open311/v2/requests.json", content=urlencode({**REQUEST, "api_key": key}).encode(),
                           headers=FORM)


def test_a1_add_client_prints_the_key_once_list_and_revoke(api, seeded, db_url, monkeypatch):
    added = _cli(monkeypatch, db_url, "add-client", "city-app", "--rate-limit", "5")
    assert added.exit_code == 0, added.output
    key = re.search(r"^api_key: (\S+)$", added.output, re.MULTILINE).group(1)
    assert len(key) >= 40
    with session_scope(seeded) as s:
        client = s.execute(select(Open311Client).where(Open311Client.name == "city-app")).scalar_one()
        assert client.key_digest == hashlib.sha256(key.encode()).hexdigest()  # the key itself is nowhere
        assert client.rate_limit_per_minute == 5
    assert _post(api, key).status_code == 200

    again = _cli(monkeypatch, db_url, "add-client", "city-app")
    assert again.exit_code == 1 and "already exists" in again.output
    assert "city-app" in (listed := _cli(monkeypatch, db_url, "list")).output and "1 requests" in listed.output
    assert key not in listed.output

    revoked = _cli(monkeypatch, db_url, "revoke", "city-app")
    assert revoked.exit_code == 0, revoked.output
    r = _post(api, key)
    assert r.status_code == 403 and r.json()[0]["code"] == 403
    assert _cli(monkeypatch, db_url, "revoke", "nobody").exit_code == 1
    with session_scope(seeded) as s:
        events = s.execute(select(AuditEvent.action, AuditEvent.actor_name, AuditEvent.data)).all()
    assert ("open311_client_add", "console") in [(a, n) for a, n, _d in events]
    assert ("open311_client_revoke", "console") in [(a, n) for a, n, _d in events]
    assert all(key not in str(d) for _a, _n, d in events)
