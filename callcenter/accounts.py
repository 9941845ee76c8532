"""Staff accounts beyond creation: login with throttling and lockout, logout, disable, password
change, token revocation, unlock. Every step is in the audit record (A1).

Failed logins are counted per account name (existing or not, so a lock says nothing about which
names exist) and per client address. Past the policy's limit within its window the name or the
address is locked for `lockout_minutes`; while locked not even the right password is tried. A
success clears its account's count, never its address's: one good account must not reset the
count of a guesser spraying others from the same address.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from callcenter import auth, throttle
from callcenter.errors import THROTTLED, UNAUTHENTICATED, AppError
from callcenter.passwords import check_password
from ticketing import audit
from ticketing.audit import Actor
from ticketing.enums import Role
from ticketing.errors import NotFound
from ticketing.models import ApiToken, LoginThrottle, User
from ticketing.policy import Policy

ACCOUNT = "account"
ADDRESS = "address"
KEY_MAX = throttle.KEY_MAX


class LoginFailed(AppError):
    kind = UNAUTHENTICATED

    def __init__(self, message: str = "wrong username or password"):
        super().__init__("unauthorized", message)


class LoginLocked(AppError):
    """429: too many failed logins; `retry_after` seconds until the lock ends."""

    kind = THROTTLED

    def __init__(self, message: str, retry_after: int):
        super().__init__("login_locked", message)
        self.retry_after = max(1, retry_after)
        self.headers = {"Retry-After": str(self.retry_after)}


@dataclass
class LoginOutcome:
    user: User | None
    refusal: AppError | None


def _key(text: str) -> str:
    return text[:KEY_MAX]


def _locked(row: LoginThrottle | None, now: datetime) -> bool:
    return row is not None and row.locked_until is not None and row.locked_until > now


def _locked_message(row: LoginThrottle, policy: Policy, limit: int) -> str:
    until = row.locked_until.astimezone(policy.tzinfo).strftime("%Y-%m-%d %H:%M")
    if row.scope == ACCOUNT:
        return (f"this account is locked after {limit} failed logins until {until} ({policy.timezone}); "
                "an administrator can unlock it sooner")
    return (f"too many failed logins from this address: logins from it are refused until {until} "
            f"({policy.timezone}); an administrator can unlock it sooner")


def login(session: Session, policy: Policy, *, username: str, password: str, address: str,
          now: datetime) -> LoginOutcome:
    """Check a login. The audit events and counters are in the session either way: the caller
    commits, then raises `refusal` if there is one."""
    rules = policy.accounts
    name, addr = _key(username), _key(address or "unknown")
    who = {"username": name, "address": addr}
    for row, limit in ((throttle.find(session, ACCOUNT, name), rules.max_failures_per_account),
                       (throttle.find(session, ADDRESS, addr), rules.max_failures_per_address)):
        if _locked(row, now):
            audit.record(session, audit.SYSTEM, "login_refused_locked", at=now, data={**who, "lock": row.scope})
            retry = int((row.locked_until - now).total_seconds()) + 1
            return LoginOutcome(None, LoginLocked(_locked_message(row, policy, limit), retry))

    user, reason = auth.check_credentials(session, username, password)
    if user is not None:
        session.execute(delete(LoginThrottle).where(LoginThrottle.scope == ACCOUNT, LoginThrottle.key == name))
        # forget counters that can no longer lock anything (keeps the table small)
        throttle.forget_stale(session, (ACCOUNT, ADDRESS), window=timedelta(minutes=rules.failure_window_minutes),
                              now=now)
        audit.record(session, auth.actor_of(user), "login", at=now, data=who)
        return LoginOutcome(user, None)

    audit.record(session, audit.SYSTEM, "login_failed", at=now, data={**who, "reason": reason})
    refusal: AppError = LoginFailed()
    for scope, key, limit in ((ACCOUNT, name, rules.max_failures_per_account),
                              (ADDRESS, addr, rules.max_failures_per_address)):
        row = throttle.counter(session, scope, key, now)
        if row.window_start <= now - timedelta(minutes=rules.failure_window_minutes):
            row.failures, row.window_start = 0, now
        row.failures += 1
        if row.failures >= limit:
            row.failures, row.window_start = 0, now
            row.locked_until = now + timedelta(minutes=rules.lockout_minutes)
            audit.record(session, audit.SYSTEM, "login_locked", at=now,
                         data={**who, "lock": scope, "failures": limit, "until": row.locked_until.isoformat()})
            if not isinstance(refusal, LoginLocked):
                refusal = LoginLocked(_locked_message(row, policy, limit), rules.lockout_minutes * 60)
    session.flush()
    return LoginOutcome(None, refusal)


def unlock(session: Session, actor: Actor, *, username: str | None = None, address: str | None = None,
           now: datetime) -> int:
    """Lift the lock (and forget the failures) of an account name and/or an address."""
    cleared = 0
    for scope, key in ((ACCOUNT, username), (ADDRESS, address)):
        if key is None:
            continue
        cleared += session.execute(delete(LoginThrottle).where(
            LoginThrottle.scope == scope, LoginThrottle.key == _key(key))).rowcount or 0
    audit.record(session, actor, "login_unlock", at=now, data={"username": username, "address": address,
                                                               "cleared": cleared})
    return cleared


def user_named(session: Session, username: str) -> User:
    user = session.execute(select(User).where(User.username == username)).scalar_one_or_none()
    if user is None:
        raise NotFound("user", username)
    return user


def revoke_all_tokens(session: Session, actor: Actor, user: User, *, now: datetime, reason: str) -> int:
    """Revoke every live token of `user`; returns how many."""
    count = session.execute(update(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked.is_(False))
                            .values(revoked=True).execution_options(synchronize_session=False)).rowcount or 0
    audit.record(session, actor, "tokens_revoked", at=now,
                 data={"username": user.username, "tokens": count, "reason": reason})
    return count


def set_active(session: Session, actor: Actor, user: User, *, active: bool, now: datetime) -> int:
    """Disable (every token revoked with it) or enable a user; returns the tokens revoked."""
    user.active = active
    audit.record(session, actor, "user_disable" if not active else "user_enable", at=now,
                 data={"username": user.username})
    return 0 if active else revoke_all_tokens(session, actor, user, now=now, reason="disabled")


def set_password(session: Session, actor: Actor, user: User, password: str, *, policy: Policy,
                 now: datetime) -> int:
    """A new password under the rules; every token of the user is revoked. Returns how many."""
    check_password(password, username=user.username, min_length=policy.accounts.password_min_length)
    user.password_hash = auth.hash_password(password)
    audit.record(session, actor, "password_change", at=now,
                 data={"username": user.username, "by_self": actor.user_id == user.id})
    return revoke_all_tokens(session, actor, user, now=now, reason="password changed")


def set_role(session: Session, actor: Actor, user: User, role: Role | str, *, unit_code: str | None,
             now: datetime, unit_leader: bool = False) -> int:
    """Move a user to another role (and unit, and whether they lead it); every token is revoked so
    no page keeps the old rights. Returns the tokens revoked."""
    role = Role(role)
    unit_id = auth.unit_for_role(session, role, unit_code)
    auth.check_unit_leader(role, unit_leader)
    old = {"role": str(getattr(user.role, "value", user.role)), "unit": user.unit.code if user.unit else None}
    new = {"role": role.value, "unit": unit_code}
    if unit_leader or user.is_unit_leader:  # the leader flag is said when it is or was set
        old["unit_leader"], new["unit_leader"] = bool(user.is_unit_leader), unit_leader
    user.role, user.unit_id, user.is_unit_leader = role, unit_id, unit_leader
    session.flush()
    session.refresh(user, ["unit"])
    audit.record(session, actor, "user_role_change", at=now,
                 data={"username": user.username, "from": old, "to": new})
    return revoke_all_tokens(session, actor, user, now=now, reason="role changed")


def logout(session: Session, actor: Actor, token: str, *, now: datetime) -> None:
    auth.revoke_token(session, token)
    audit.record(session, actor, "logout", at=now, data={"username": actor.name})


__all__ = ["ACCOUNT", "ADDRESS", "LoginFailed", "LoginLocked", "LoginOutcome", "login", "logout",
           "revoke_all_tokens", "set_active", "set_password", "set_role", "unlock", "user_named"]
