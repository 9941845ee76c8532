"""回访 callback survey calls (R7.4) placed through Twilio's REST API, each attempt dialled at most once.

The attempt's intent is durable before any request: `callback.attempts.claim` commits it as `dialing`.
The idempotency key rides in the call's parameters (the survey URL and the status callback's query), so
every webhook of the call names its attempt. If the process dies between the REST request and its
answer, nobody knows whether Twilio placed the call; `reconcile` (run at start and before each round)
asks the carrier's call list for calls to that number from the hotline's number since the attempt was
claimed: found, the attempt is settled by what the carrier says (or waits for the status callback of a
call still ringing); not found, it goes back to `scheduled` and is dialled in a later round. A request
the carrier refused (an HTTP error answer) was certainly not placed: the attempt counts as failed and is
tried again by the scheduler's backoff, as on Asterisk.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session
from twilio.base.exceptions import TwilioRestException

from callback import attempts as A
from ticketing import calls
from ticketing.carrier_model import CarrierCall
from ticketing.domain import Domain
from ticketing.models import Call, CallbackAttempt, Case
from ticketing.privacy import mask_phone
from ticketing.store import session_scope

from .voice import DRIVER, UNANSWERED

log = logging.getLogger("callcenter.twilio.outbound")
_STILL_RUNNING = {"queued", "initiated", "ringing", "in-progress"}
_CLOCK_SKEW = timedelta(minutes=2)  # the carrier's clock against ours, when asking for calls since a claim


class TwilioCallbacks:
    def __init__(self, domain: Domain, session_factory, client, *, public_url: str, from_number: str,
                 dial_timeout_s: int = 40):
        self.domain = domain
        self.session_factory = session_factory
        self.client = client
        self.public_url = public_url.rstrip("/")
        self.from_number = from_number
        self.dial_timeout_s = dial_timeout_s

    def _tx(self, fn: Callable[[Session], Any]) -> Any:
        with session_scope(self.session_factory) as session:
            return fn(session)

    def survey_url(self, key: str, case_number: str) -> str:
        return f"{self.public_url}/twilio/voice/survey?{urlencode({'key': key, 'case': case_number})}"

    def status_url(self, key: str) -> str:
        return f"{self.public_url}/twilio/voice/status?{urlencode({'key': key})}"

    # ---- placing ----------------------------------------------------------------------------------
    def place_due(self, limit: int = 10) -> list[str]:
        """Reconcile, then claim due attempts (committed as `dialing` first) and place each; the call sids."""
        self.reconcile()
        claimed = self._tx(lambda s: A.claim(s, self.domain, limit))
        return [sid for c in claimed if (sid := self.place(c)) is not None]

    def place(self, claimed: A.Claimed) -> str | None:
        try:
            call = self.client.calls.create(to=claimed.phone, from_=self.from_number,
                                            url=self.survey_url(claimed.key, claimed.case_number), method="POST",
                                            status_callback=self.status_url(claimed.key),
                                            status_callback_method="POST", status_callback_event=["completed"],
                                            timeout=self.dial_timeout_s)
        except TwilioRestException as exc:
            # The carrier answered no: nothing was dialled. A failed try, retried with backoff.
            detail = f"carrier refused the call ({exc.code or exc.status})"
            self._tx(lambda s: A.record_unsuccessful(s, self.domain, claimed.attempt_id, A.FAILED, detail=detail))
            return None
        except Exception:  # noqa: BLE001 - sent or not, unknown: only the carrier's list can tell
            log.warning("callback %s to %s: the carrier's answer was lost; reconcile settles it", claimed.key,
                        mask_phone(claimed.phone))
            return None
        log.info("callback %s placed to %s as %s", claimed.key, mask_phone(claimed.phone), call.sid)
        return call.sid

    # ---- after a crash ---------------------------------------------------------------------------
    def reconcile(self) -> dict[str, int]:
        """Attempts left `dialing` with no webhook seen: settle them from the carrier's call list."""
        def orphans(s: Session) -> list[tuple[int, str, str, Any]]:
            answered = select(CarrierCall.outbound_key).where(CarrierCall.outbound_key.is_not(None))
            q = (select(CallbackAttempt.id, CallbackAttempt.idempotency_key, Case.citizen_phone,
                        CallbackAttempt.started_at)
                 .join(Case, Case.id == CallbackAttempt.case_id)
                 .where(CallbackAttempt.state == A.DIALING, CallbackAttempt.idempotency_key.not_in(answered)))
            return [tuple(r) for r in s.execute(q).all()]
        done: dict[str, int] = {}
        for attempt_id, key, phone, started in self._tx(orphans):
            since = started - _CLOCK_SKEW if started is not None else None
            try:
                placed = self.client.calls.list(to=phone, from_=self.from_number, start_time_after=since, limit=20)
            except Exception as exc:  # noqa: BLE001 - the carrier cannot tell now: try at the next round
                log.warning("callback %s: the carrier's call list is unavailable (%s)", key, type(exc).__name__)
                continue
            verdict = self._settle(attempt_id, key, placed)
            done[verdict] = done.get(verdict, 0) + 1
        if done:
            log.info("twilio callback reconcile: %s", done)
        return done

    def _settle(self, attempt_id: int, key: str, placed: list) -> str:
        if not placed:
            self._tx(lambda s: A.unclaim(s, attempt_id))  # certainly never dialled: dial in a later round
            return "never_dialled"
        call = placed[0]
        status = call.status or ""
        if status in _STILL_RUNNING:
            return "running"  # its status callback (which names the key) settles it
        self.unanswered(key, call.sid, status, detail="interrupted: settled from the carrier's call list")
        return "dialled"

    def unanswered(self, key: str, sid: str, status: str, *, detail: str = "") -> None:
        settle_unanswered(self.domain, self.session_factory, key, sid, status, detail=detail)


def settle_unanswered(domain: Domain, session_factory, key: str, sid: str, status: str, *, detail: str = "") -> None:
    """A callback call that never reached the survey (busy, no answer, failed; or answered but no
    survey ran): the attempt settled as on Asterisk, the call logged by the one writer (A2, through
    callback.attempts) with the driver that carried it."""
    outcome = {"busy": A.BUSY, "no-answer": A.NO_ANSWER, "canceled": A.NO_ANSWER}.get(status, A.FAILED)
    now = domain.clock()
    with session_scope(session_factory) as s:
        attempt = A.attempt_by_key(s, key)
        if attempt is None:
            return
        A.record_unsuccessful(s, domain, attempt.id, outcome, detail=detail or UNANSWERED.get(status, status),
                              log_call=True, channel_id=sid)
        call_id = s.execute(select(Call.id).where(Call.uniqueid == sid)).scalar_one_or_none()
        if call_id is not None:
            calls.add_event(s, call_id, kind="carrier", at=now, dedup_key=f"carrier:{sid}", data={"driver": DRIVER})
