"""Counters of attempts per (scope, key) in a time window: the one home of rate limits on the
store, so several API processes on one PostgreSQL share them (a row lock per counter).

Used by staff logins (callcenter/accounts.py: failures per account name and per address, with a
lockout) and by the citizen web portal (callcenter/portal/: requests per address and per phone,
wrong progress checks per address and per case number). Open311 clients count on their own row
(callcenter/open311/clients.py: one counter per client, kept with the client).

A key that is personal data (a phone number) is stored as its SHA-256 (`digest_key`): the counter
needs to tell keys apart, never to read them.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ticketing.models import LoginThrottle

KEY_MAX = 200


def digest_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def counter(session: Session, scope: str, key: str, now: datetime) -> LoginThrottle:
    """The counter of (scope, key), locked for this transaction (PostgreSQL); created if new."""
    key = key[:KEY_MAX]
    stmt = select(LoginThrottle).where(LoginThrottle.scope == scope, LoginThrottle.key == key).with_for_update()
    row = session.execute(stmt).scalar_one_or_none()
    if row is not None:
        return row
    try:
        with session.begin_nested():
            row = LoginThrottle(scope=scope, key=key, failures=0, window_start=now, locked_until=None)
            session.add(row)
    except IntegrityError:  # a concurrent first attempt created it
        row = session.execute(stmt).scalar_one()
    return row


def find(session: Session, scope: str, key: str) -> LoginThrottle | None:
    """The counter of (scope, key) if there is one, locked for this transaction."""
    return session.execute(select(LoginThrottle).where(LoginThrottle.scope == scope, LoginThrottle.key == key[:KEY_MAX])
                           .with_for_update()).scalar_one_or_none()


def retry_after(session: Session, scope: str, key: str, *, limit: int, window: timedelta, now: datetime) -> int | None:
    """Seconds until (scope, key) may try again when its `limit` attempts in the window are used
    up; None while attempts are left. Counts nothing (`count` does)."""
    row = find(session, scope, key)
    if row is None or row.window_start <= now - window or row.failures < limit:
        return None
    return max(1, int((row.window_start + window - now).total_seconds() + 0.999))


def count(session: Session, scope: str, key: str, *, window: timedelta, now: datetime) -> int:
    """One more attempt of (scope, key) in its window (a new window once the last one is over);
    the attempts in the window now."""
    row = counter(session, scope, key, now)
    if row.window_start <= now - window:
        row.failures, row.window_start = 0, now
    row.failures += 1
    session.flush()
    return row.failures


def forget_stale(session: Session, scopes: tuple[str, ...], *, window: timedelta, now: datetime) -> None:
    """Drop counters of `scopes` whose window is over and that lock nothing (keeps the table small)."""
    session.execute(delete(LoginThrottle).where(
        LoginThrottle.scope.in_(scopes), LoginThrottle.window_start < now - window,
        (LoginThrottle.locked_until.is_(None)) | (LoginThrottle.locked_until < now)))


__all__ = ["KEY_MAX", "count", "counter", "digest_key", "find", "forget_stale", "retry_after"]
