"""Every Twilio webhook is signed: X-Twilio-Signature is an HMAC-SHA1, keyed with the account's auth
token, of the URL Twilio requested plus the sorted POST parameters (twilio's RequestValidator). The
URL is the one configured as the install's public address (CALLCENTER_TWILIO_PUBLIC_URL) plus the path
and query asked: a request signed for another address, with a parameter changed, or with no signature
is refused (403). A signed request already answered is a replay and refused too: its digest is kept in
`carrier_requests` for the replay window (Twilio's requests carry no timestamp, so "seen before" is the
test), and a voice webhook also names the flow step it answers (callcenter/twilio/voice.py), so an old
step is refused after the window as well. Refusals are logged with the path and reason only: the
parameters hold the caller's number.
"""
from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session
from twilio.request_validator import RequestValidator

from callcenter.errors import FORBIDDEN, AppError
from ticketing.carrier_model import CarrierRequest

log = logging.getLogger("callcenter.twilio")
SIGNATURE_HEADER = "X-Twilio-Signature"
_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


class WebhookRefused(AppError):
    kind = FORBIDDEN

    def __init__(self, reason: str):
        super().__init__("twilio_signature", f"webhook refused: {reason}")
        self.reason = reason


def public_url(base: str, path: str, query: str = "") -> str:
    """The URL as Twilio requested it: the configured public address, the path, the query."""
    return base.rstrip("/") + path + (f"?{query}" if query else "")


def check_signature(auth_token: str, url: str, params: dict[str, str], signature: str | None) -> None:
    """Raise WebhookRefused unless `signature` is Twilio's for this URL and these parameters."""
    if not auth_token:
        raise WebhookRefused("Twilio is not configured (no auth token)")
    if not signature:
        raise WebhookRefused(f"no {SIGNATURE_HEADER} header")
    if not RequestValidator(auth_token).validate(url, params, signature):
        raise WebhookRefused("the signature does not match the URL and parameters")


def request_digest(url: str, signature: str) -> str:
    """Same URL and signature = same request (the signature covers every parameter)."""
    return hashlib.sha256(f"{url}\n{signature}".encode()).hexdigest()


def remember(session: Session, digest: str, now: datetime, window_s: int) -> None:
    """Record the request as answered, in the caller's transaction; WebhookRefused if it was before.
    Requests older than the window are forgotten here (the step and message-id checks stay)."""
    session.execute(delete(CarrierRequest).where(CarrierRequest.seen_at < now - timedelta(seconds=window_s)))
    insert = _INSERTS[session.get_bind().dialect.name]
    inserted = session.execute(insert(CarrierRequest).values(digest=digest, seen_at=now)
                               .on_conflict_do_nothing(index_elements=["digest"])
                               .returning(CarrierRequest.digest)).first()
    if inserted is None:
        raise WebhookRefused("replay of a request already answered")


def log_refusal(path: str, exc: WebhookRefused) -> None:
    log.warning("twilio webhook %s refused: %s", path, exc.reason, extra={"path": path, "reason": exc.reason})


def forget(session: Session, digest: str) -> None:
    """A request not done (the webhook answered 5xx): the carrier's retry of it is no replay."""
    session.execute(delete(CarrierRequest).where(CarrierRequest.digest == digest))
