"""Staff accounts (issue 11): password guessing is throttled per account and per address with a
lock an administrator can lift, passwords follow rules, a disable or a password change revokes
every token, and every login, failure, lock, logout and revocation is in the audit record (A1)."""
from __future__ import annotations

import json

from sqlalchemy import text

from .conftest import PASSWORD

WRONG = "not-the-password-0"


def _login(api, username: str, password: str = PASSWORD):
    return api.client.post("/api/v1/auth/token", json={"username": username, "password": password})


def _events(engine, *actions: str) -> list[tuple[str, dict]]:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT action, data FROM audit_events ORDER BY id")).all()
    out = []
    for action, data in rows:
        data = json.loads(data) if isinstance(data, str) else (data or {})
        if not actions or action in actions:
            out.append((action, data))
    return out


def _raw_audit(engine) -> str:
    with engine.connect() as conn:
        return "\n".join(str(tuple(r)) for r in conn.execute(text("SELECT * FROM audit_events")).all())


def _chain_ok(api) -> None:
    report = api.get("/api/v1/audit/verify", "sup1").json()
    assert report["ok"] is True, report["problems"]


def test_a1_thousand_wrong_passwords_lock_the_account_until_an_admin_unlocks(api, engine, domain):
    """1,000 wrong passwords against one account from one address: locked after the configured
    number (policy accounts.max_failures_per_account), the right password refused while locked,
    every attempt in the audit record (A1) and no password in it."""
    api.login("admin1")  # the admin's own session, from before the attack
    limit = domain.policy.accounts.max_failures_per_account
    statuses = [_login(api, "op1", f"{WRONG}{i}").status_code for i in range(1000)]
    assert statuses[:limit - 1] == [401] * (limit - 1)
    assert set(statuses[limit - 1:]) == {429}

    locked = _login(api, "op1")  # the right password
    assert locked.status_code == 429, locked.text
    body = locked.json()
    assert body["error"] == "login_locked" and "locked after 5 failed logins" in body["detail"]
    assert "administrator" in body["detail"] and int(locked.headers["Retry-After"]) > 0

    failed = _events(engine, "login_failed")
    assert len(failed) == limit and {d["username"] for _, d in failed} == {"op1"}
    assert {d["reason"] for _, d in failed} == {"wrong password"} and all(d["address"] for _, d in failed)
    assert len(_events(engine, "login_locked")) == 1
    assert len(_events(engine, "login_refused_locked")) == 1000 - limit + 1
    raw = _raw_audit(engine)
    assert WRONG not in raw and PASSWORD not in raw  # attempts recorded, passwords never

    # only an admin unlocks; then the right password works again and the count starts afresh
    assert api.post("/api/v1/users/op1/unlock", "sup1").status_code == 403
    assert api.post("/api/v1/users/op1/unlock", "admin1").status_code == 204
    assert _login(api, "op1").status_code == 200
    assert [a for a, _ in _events(engine)][-2:] == ["login_unlock", "login"]
    _chain_ok(api)


def test_lock_ends_by_itself_after_the_lockout(api, domain, clock):
    rules = domain.policy.accounts
    for i in range(rules.max_failures_per_account):
        _login(api, "op2", f"{WRONG}{i}")
    assert _login(api, "op2").status_code == 429
    clock.advance(minutes=rules.lockout_minutes, seconds=1)
    assert _login(api, "op2").status_code == 200


def test_failures_outside_the_window_are_forgotten_and_a_success_clears_the_count(api, domain, clock):
    rules = domain.policy.accounts
    for i in range(rules.max_failures_per_account - 1):
        _login(api, "op2", f"{WRONG}{i}")
    clock.advance(minutes=rules.failure_window_minutes, seconds=1)
    assert _login(api, "op2", WRONG).status_code == 401  # a fresh window: not locked
    assert _login(api, "op2").status_code == 200
    for i in range(rules.max_failures_per_account - 1):
        assert _login(api, "op2", f"{WRONG}{i}").status_code == 401


def test_one_address_guessing_many_accounts_is_locked_out(api, engine, domain):
    """Password spraying: a few guesses at many names (existing or not) from one address locks the
    address, whatever account it then tries; unknown and known names are answered alike."""
    rules = domain.policy.accounts
    names = [f"guess{i}" for i in range(rules.max_failures_per_address - 1)]
    assert {_login(api, n, WRONG).status_code for n in names} == {401}
    last = _login(api, "bo1", WRONG)
    assert last.status_code == 429 and "from this address" in last.json()["detail"]
    assert _login(api, "sup1").status_code == 429  # a good password from the locked address
    assert api.client.post("/api/v1/auth/token", json={"username": "nobody", "password": WRONG}).status_code == 429
    address = _events(engine, "login_locked")[-1][1]["address"]

    from callcenter import accounts
    from ticketing.audit import SYSTEM
    from ticketing.store import make_session_factory, session_scope

    with session_scope(make_session_factory(engine)) as s:
        accounts.unlock(s, SYSTEM, address=address, now=domain.clock())
    assert _login(api, "sup1").status_code == 200


def test_unknown_names_lock_like_real_ones(api):
    """A lock says nothing about which user names exist."""
    for name in ("op1", "no-such-user"):
        answers = [_login(api, name, f"{WRONG}{i}").status_code for i in range(6)]
        assert answers == [401, 401, 401, 401, 429, 429], name


def test_disable_revokes_every_token_and_refuses_login(api, engine):
    first = _login(api, "op1").json()["access_token"]
    second = _login(api, "op1").json()["access_token"]
    for token in (first, second):
        assert api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert api.post("/api/v1/users/op1/disable", "bo1").status_code == 403
    r = api.post("/api/v1/users/op1/disable", "admin1")
    assert r.status_code == 200 and r.json() == {"username": "op1", "tokens_revoked": 2}
    for token in (first, second):
        assert api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert _login(api, "op1").status_code == 401
    assert _events(engine, "login_failed")[-1][1]["reason"] == "disabled"
    assert api.post("/api/v1/users/op1/enable", "admin1").json()["active"] is True
    assert _login(api, "op1").status_code == 200
    actions = [a for a, _ in _events(engine)]
    for action in ("user_disable", "tokens_revoked", "user_enable"):
        assert action in actions
    assert api.post("/api/v1/users/admin1/disable", "admin1").status_code == 422  # not oneself
    _chain_ok(api)


def test_password_change_revokes_every_token_and_follows_the_rules(api, engine):
    tokens = [_login(api, "water1").json()["access_token"] for _ in range(3)]
    refused = {
        "short": "at least 8 characters",
        "water1water1": "user name",
        "12345678": "most common",
        "Password123": "most common",
        "aaaaaaaaaa": "most common",
    }
    for password, why in refused.items():
        r = api.post("/api/v1/users/water1/password", "admin1", json={"password": password})
        assert r.status_code == 422 and r.json()["error"] == "passwords" and why in r.json()["detail"], (password, r.text)
    r = api.post("/api/v1/users/water1/password", "admin1", json={"password": "river-gauge-4471"})
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 3
    for token in tokens:
        assert api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    assert _login(api, "water1").status_code == 401
    assert _login(api, "water1", "river-gauge-4471").status_code == 200
    assert "river-gauge-4471" not in _raw_audit(engine)
    _chain_ok(api)


def test_own_password_change_revokes_own_tokens(api):
    token = _login(api, "op2").json()["access_token"]
    other = _login(api, "op2").json()["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    r = api.client.post("/api/v1/auth/password", headers=auth,
                        json={"current_password": "wrong-one-here", "new_password": "lantern-moss-92"})
    assert r.status_code == 401
    r = api.client.post("/api/v1/auth/password", headers=auth,
                        json={"current_password": PASSWORD, "new_password": "lantern-moss-92"})
    assert r.status_code == 204, r.text
    for t in (token, other):
        assert api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {t}"}).status_code == 401
    assert _login(api, "op2", "lantern-moss-92").status_code == 200


def test_revoke_tokens_and_logout_are_audited(api, engine):
    token = _login(api, "hr1").json()["access_token"]
    r = api.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 204
    assert _events(engine, "logout")[-1][1]["username"] == "hr1"
    _login(api, "hr1")
    r = api.post("/api/v1/users/hr1/revoke-tokens", "admin1")
    assert r.json() == {"username": "hr1", "tokens_revoked": 1}
    assert _events(engine, "tokens_revoked")[-1][1] == {"username": "hr1", "tokens": 1,
                                                        "reason": "revoked by an administrator"}
    assert api.post("/api/v1/users/nobody/revoke-tokens", "admin1").status_code == 404
    _chain_ok(api)


def test_new_users_follow_the_password_rules(api):
    r = api.post("/api/v1/users", "admin1", json={"username": "clerk7", "password": "qwertyuiop", "role": "front_desk"})
    assert r.status_code == 422 and r.json()["error"] == "passwords"
    r = api.post("/api/v1/users", "admin1", json={"username": "clerk7", "password": "clerk7-2026", "role": "front_desk"})
    assert r.status_code == 422 and "user name" in r.json()["detail"]


def test_role_change_is_checked_audited_and_revokes_tokens(api, engine):
    token = _login(api, "op2").json()["access_token"]
    r = api.post("/api/v1/users/op2/role", "admin1", json={"role": "unit_staff"})
    assert r.status_code == 422 and "member unit" in r.json()["detail"]  # R5.3: a unit clerk has a unit
    r = api.post("/api/v1/users/op2/role", "admin1", json={"role": "unit_staff", "unit_code": "water_supply"})
    assert r.status_code == 200 and r.json()["tokens_revoked"] == 1, r.text
    assert api.client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    me = api.client.post("/api/v1/auth/token", json={"username": "op2", "password": PASSWORD}).json()
    assert (me["role"], me["unit_code"]) == ("unit_staff", "water_supply")
    assert _events(engine, "user_role_change")[-1][1] == {
        "username": "op2", "from": {"role": "front_desk", "unit": None},
        "to": {"role": "unit_staff", "unit": "water_supply"}}
    assert api.post("/api/v1/users/op2/role", "bo1", json={"role": "admin"}).status_code == 403
    assert api.post("/api/v1/users/admin1/role", "admin1", json={"role": "front_desk"}).status_code == 422
    _chain_ok(api)
