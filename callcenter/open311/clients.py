"""Registered Open311 clients: an api_key each, its rate limit, its revocation; every change an
audit event (A1).

The key is 32 random bytes (URL-safe text) shown once when the client is added; the store keeps its
SHA-256 only, as it does for bearer tokens (callcenter/auth.py): a random key of that length needs
no slow hash, and a lookup by digest costs one indexed read per POST. The rate limit is a window of
one minute per client, counted on the client's row under a row lock (every POST the key opens,
refused ones included), so several API processes on one PostgreSQL share it.
"""
from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from ticketing import audit
from ticketing.audit import Actor
from ticketing.errors import DomainError, InvalidInput, NotFound
from ticketing.open311_model import Open311Client, Open311Request

DEFAULT_RATE_LIMIT = 60  # requests per minute and client
WINDOW = timedelta(minutes=1)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
KEY_MAX = 200  # longer is no key of ours: not hashed


def digest(api_key: str) -> str:
    return hashlib.sha256(api_key.encode()).hexdigest()


def add_client(session: Session, actor: Actor, name: str, *, now: datetime,
               rate_limit: int = DEFAULT_RATE_LIMIT) -> tuple[Open311Client, str]:
    """A new client and its api_key (returned here only; the store keeps the digest)."""
    if not NAME.match(name):
        raise InvalidInput("open311", "a client name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if not 1 <= rate_limit <= 10_000:
        raise InvalidInput("open311", "the rate limit is 1-10000 requests per minute")
    if session.execute(select(Open311Client.id).where(Open311Client.name == name)).first():
        raise DomainError("open311", f"an Open311 client named '{name}' already exists")
    key = secrets.token_urlsafe(32)
    client = Open311Client(name=name, key_digest=digest(key), rate_limit_per_minute=rate_limit, created_at=now,
                           window_count=0)
    session.add(client)
    session.flush()
    audit.record(session, actor, "open311_client_add", at=now, data={"client": name, "rate_limit": rate_limit})
    return client, key


def revoke_client(session: Session, actor: Actor, name: str, *, now: datetime) -> Open311Client:
    """The client's key stops working at once; its requests and their cases stay."""
    client = session.execute(select(Open311Client).where(Open311Client.name == name)).scalar_one_or_none()
    if client is None:
        raise NotFound("Open311 client", name)
    if client.revoked_at is None:
        client.revoked_at = now
        audit.record(session, actor, "open311_client_revoke", at=now, data={"client": name})
    return client


def list_clients(session: Session) -> list[tuple[Open311Client, int]]:
    """Every client with the number of requests it created, oldest first."""
    counts = (select(Open311Request.client_id, func.count().label("n")).group_by(Open311Request.client_id)
              .subquery())
    rows = session.execute(select(Open311Client, func.coalesce(counts.c.n, 0))
                           .outerjoin(counts, counts.c.client_id == Open311Client.id).order_by(Open311Client.id))
    return [(client, int(n)) for client, n in rows]


def client_for_key(session: Session, api_key: str | None) -> Open311Client | None:
    """The live client of `api_key`, its row locked for this transaction; None for no key, an
    unknown one or a revoked client's."""
    if not api_key or len(api_key) > KEY_MAX:
        return None
    return session.execute(select(Open311Client).where(Open311Client.key_digest == digest(api_key),
                                                       Open311Client.revoked_at.is_(None))
                           .with_for_update()).scalar_one_or_none()


def take_slot(client: Open311Client, now: datetime) -> int | None:
    """Count one request in the client's minute; the seconds until the next window when the
    limit is used up (the request is then refused), else None."""
    if client.window_start is None or now - client.window_start >= WINDOW:
        client.window_start, client.window_count = now, 0
    if client.window_count >= client.rate_limit_per_minute:
        return max(1, int((client.window_start + WINDOW - now).total_seconds() + 0.999))
    client.window_count += 1
    return None


__all__ = ["DEFAULT_RATE_LIMIT", "add_client", "client_for_key", "digest", "list_clients", "revoke_client",
           "take_slot"]
