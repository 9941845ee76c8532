"""回访 callback survey calls (R7.4) placed through Twilio's REST API: the callback runner's originate port
(callback/pbx.py) for Twilio, so the runner's own exactly-once machinery (callback/runner.py, lines.py:
`dialing` committed before any request, never a blind second dial, reconcile after a crash) places
the calls; nothing here claims or schedules. The composition root picks this port instead of the AMI
one (callcenter/callbacks.py, CALLCENTER_CALLBACK_DRIVER=twilio).

- originate -> Calls create, sent at once; the attempt's idempotency key rides in the call's
  parameters (the survey URL and the status callback's query), so every webhook names its attempt.
  The carrier refusing the request (an HTTP error answer) is REFUSED: nothing was dialled. Any other
  failure (the answer lost) is `OutcomeUnknown`: it may have been placed, reconcile decides.
- its result: the call polled (Calls fetch) until it is answered (in-progress: the survey runs over
  the voice webhooks, callcenter/twilio/voice.py) or ends unanswered (busy, no-answer, failed); an
  answered call's end is the port's hang-up event.
- the ledger reconcile asks (`ledger_has`, `channels_up`): the call placed for a key, known from the
  create's answer, from the store (the survey's webhook or the call log names the sid), or else
  looked up in the carrier's call list -- calls to the citizen's number from the hotline's since the
  attempt was claimed, less the calls already bound to another attempt. Found: it was dialled (or is
  still up: adopted); not found: certainly never placed, dialled again in a later round, same key.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session
from twilio.base.exceptions import TwilioRestException

from callback import attempts as A
from callback.pbx import ANSWERED, NOT_ANSWERED, REFUSED, DialResult, OutcomeUnknown, PbxError
from ticketing import calls
from ticketing.carrier_model import CarrierCall
from ticketing.domain import Domain
from ticketing.models import Call, CallbackAttempt, Case
from ticketing.privacy import mask_phone
from ticketing.store import session_scope

from .voice import DRIVER, UNANSWERED

log = logging.getLogger("callcenter.twilio.outbound")
_RINGING = {"queued", "initiated", "ringing"}
_UP = _RINGING | {"in-progress"}
# Twilio's end of an unanswered call -> the Originate reason it stands for (ticketing.dialing)
_REASON = {"busy": 5, "no-answer": 3, "canceled": 3, "failed": 8}
_FOLLOW_MARGIN_S = 120.0  # past the ring time, how long an unanswered status may take to be read
_CLOCK_SKEW = timedelta(minutes=2)  # the carrier's clock against ours, when asking for calls since a claim


class _Dialling:
    """A Calls create already on its way; awaited once for the call's result."""

    def __init__(self, port: TwilioCallbackPbx, chan: str, sent: asyncio.Future, dial_timeout: float):
        self.port, self.chan, self.sent, self.dial_timeout = port, chan, sent, dial_timeout

    def __await__(self):
        return self._wait().__await__()

    async def _wait(self) -> DialResult:
        try:
            call = await self.sent
        except TwilioRestException as exc:  # the carrier answered no: nothing was dialled
            return DialResult(REFUSED, message=f"carrier refused the call ({exc.code or exc.status})")
        except Exception as exc:  # noqa: BLE001 - sent or not, unknown: only the carrier's list can tell
            raise OutcomeUnknown(f"the carrier's answer was lost ({type(exc).__name__})") from exc
        self.port.sids[self.chan] = call.sid
        try:
            return await asyncio.wait_for(self.port.follow(self.chan, call.sid), self.dial_timeout + _FOLLOW_MARGIN_S)
        except TimeoutError as exc:  # the carrier could not be asked for so long: reconcile settles it
            raise OutcomeUnknown("the call's progress could not be read from the carrier") from exc

    def close(self) -> None:
        self.sent.cancel()  # (a request already running completes; its answer is dropped)


class TwilioCallbackPbx:
    """`callback.pbx.CallbackPbx` over a twilio.rest.Client. Channel ids are the attempts' keys."""

    carrier = DRIVER

    def __init__(self, client: Any, session_factory, *, public_url: str, from_number: str,
                 poll_seconds: float = 2.0):
        self.client = client
        self.session_factory = session_factory
        self.public_url = public_url.rstrip("/")
        self.from_number = from_number
        self.poll_seconds = poll_seconds
        self.sids: dict[str, str] = {}  # channel id (key) -> call sid, for the calls this process placed
        self._hangup_subscribers: list[Callable[[str], None]] = []
        self._watchers: set[asyncio.Task] = set()

    @property
    def connected(self) -> bool:
        return True  # a REST API: each request says for itself whether the carrier was reached

    def survey_url(self, key: str, case_number: str) -> str:
        return f"{self.public_url}/twilio/voice/survey?{urlencode({'key': key, 'case': case_number})}"

    def status_url(self, key: str) -> str:
        return f"{self.public_url}/twilio/voice/status?{urlencode({'key': key})}"

    async def _rest(self, fn: Callable[[], Any]) -> Any:
        try:
            return await asyncio.to_thread(fn)
        except TwilioRestException:
            raise
        except Exception as exc:  # noqa: BLE001 - not reached: the port's error
            raise PbxError(f"the carrier is not reachable ({type(exc).__name__})") from exc

    # ---- placing -----------------------------------------------------------------------------
    def originate(self, *, phone: str, key: str, case_number: str, channel_id: str, context: str,
                  caller_id: str, dial_timeout: float) -> _Dialling:
        def create():
            return self.client.calls.create(to=phone, from_=self.from_number, url=self.survey_url(key, case_number),
                                            method="POST", status_callback=self.status_url(key),
                                            status_callback_method="POST", status_callback_event=["completed"],
                                            timeout=int(dial_timeout))
        sent = asyncio.ensure_future(asyncio.to_thread(create))  # on its way now, awaited by the runner
        log.debug("callback %s to %s sent", key, mask_phone(phone))
        return _Dialling(self, channel_id, sent, dial_timeout)

    async def follow(self, chan: str, sid: str) -> DialResult:
        """Poll the placed call until it is answered or has ended unanswered."""
        while True:
            try:
                status = (await self._rest(lambda: self.client.calls(sid).fetch())).status
            except (PbxError, TwilioRestException):
                status = "unknown"  # asked again at the next poll
            if status == "in-progress" or status == "completed":
                self._watch(chan, sid, ended=status == "completed")
                return DialResult(ANSWERED, uniqueid=sid)
            if status in _REASON:
                return DialResult(NOT_ANSWERED, reason=_REASON[status], uniqueid=sid)
            await asyncio.sleep(self.poll_seconds)

    def _watch(self, chan: str, sid: str, *, ended: bool = False) -> None:
        """An answered call's end is the hang-up the runner waits for."""
        async def watch() -> None:
            if not ended:
                while True:
                    await asyncio.sleep(self.poll_seconds)
                    with contextlib.suppress(PbxError, TwilioRestException):
                        if (await self._rest(lambda: self.client.calls(sid).fetch())).status not in _UP:
                            break
            for subscriber in list(self._hangup_subscribers):
                subscriber(chan)
        task = asyncio.ensure_future(watch())
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def on_hangup(self, callback: Callable[[str], None]):
        self._hangup_subscribers.append(callback)
        port = self

        class _Subscription:
            def close(self) -> None:
                with contextlib.suppress(ValueError):
                    port._hangup_subscribers.remove(callback)
        return _Subscription()

    async def hangup(self, channel_id: str) -> None:
        sid = self.sids.get(channel_id) or await self._find(channel_id)
        if sid is not None:
            with contextlib.suppress(TwilioRestException):
                await self._rest(lambda: self.client.calls(sid).update(status="completed"))

    # ---- what the carrier placed: reconcile's ledger ----------------------------------------------
    def _known(self, key: str) -> tuple[str | None, str, Any, set[str]]:
        with session_scope(self.session_factory) as s:
            return self._known_in(s, key)

    @staticmethod
    def _known_in(session: Session, key: str) -> tuple[str | None, str, Any, set[str]]:
        """(the sid the store binds to `key`, the number, when the attempt was claimed, the sids bound
        to other attempts)."""
        row = session.execute(select(CallbackAttempt.id, CallbackAttempt.started_at, CallbackAttempt.call_id,
                                     Case.citizen_phone).join(Case, Case.id == CallbackAttempt.case_id)
                              .where(CallbackAttempt.idempotency_key == key)).first()
        if row is None:
            return None, "", None, set()
        attempt_id, started, call_id, phone = row
        bound = session.execute(select(CarrierCall.call_sid).where(CarrierCall.outbound_key == key)).scalar()
        if bound is None and call_id is not None:
            bound = session.execute(select(Call.uniqueid).where(Call.id == call_id)).scalar()
        others = set(session.execute(select(CarrierCall.call_sid).where(CarrierCall.outbound_key.is_not(None),
                                                                        CarrierCall.outbound_key != key)).scalars())
        others |= set(session.execute(select(Call.uniqueid).join(CallbackAttempt, CallbackAttempt.call_id == Call.id)
                                      .where(CallbackAttempt.id != attempt_id, Call.carrier == DRIVER)).scalars())
        return bound, phone or "", started, others

    async def _find(self, chan: str) -> str | None:
        """The sid of the call placed for this key, or None when the carrier placed none."""
        if chan in self.sids:
            return self.sids[chan]
        bound, phone, started, others = await asyncio.to_thread(self._known, chan)
        if bound is not None:
            return bound
        if not phone:
            return None
        since = started - _CLOCK_SKEW if started is not None else None
        placed = await self._rest(lambda: self.client.calls.list(to=phone, from_=self.from_number,
                                                                  start_time_after=since, limit=20))
        mine = [c for c in placed if c.sid not in others]
        return mine[0].sid if mine else None

    async def ledger_has(self, channel_id: str, timeout: float) -> bool:
        return await self._find(channel_id) is not None

    async def ledger_forget(self, channel_id: str, timeout: float) -> None:
        self.sids.pop(channel_id, None)  # the carrier keeps its list; nothing of ours to delete

    async def ledger_ids(self, timeout: float) -> set[str]:
        return set()  # no ledger entries to sweep on a carrier

    async def _up(self) -> set[str]:
        """The channel ids of in-flight attempts whose call the carrier still carries."""
        def in_flight() -> list[str]:
            with session_scope(self.session_factory) as s:
                return list(s.execute(select(CallbackAttempt.idempotency_key)
                                      .where(CallbackAttempt.state.in_(A.IN_FLIGHT_STATES))).scalars())
        keys = await asyncio.to_thread(in_flight)
        up = set()
        for key in keys:
            sid = await self._find(key)
            if sid is not None and (await self._rest(lambda sid=sid: self.client.calls(sid).fetch())).status in _UP:
                up.add(key)
                if key not in self.sids:  # placed by a dead process: its end is our hang-up event too
                    self.sids[key] = sid
                    self._watch(key, sid)
        return up

    async def channels_up(self, timeout: float) -> set[str]:
        return await self._up()

    async def callback_calls(self, context: str, timeout: float) -> set[str]:
        return await self._up()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        for task in list(self._watchers):
            task.cancel()


def settle_unanswered(domain: Domain, session_factory, key: str, sid: str, status: str, *, detail: str = "") -> None:
    """The status callback of a callback call that never reached the survey (busy, no answer, failed;
    or answered but no survey ran): the attempt settled as the runner settles it (whichever comes first;
    the other finds it settled), the call logged by the one writer with the driver that carried it."""
    outcome = {"busy": A.BUSY, "no-answer": A.NO_ANSWER, "canceled": A.NO_ANSWER}.get(status, A.FAILED)
    now = domain.clock()
    with session_scope(session_factory) as s:
        attempt = A.attempt_by_key(s, key)
        if attempt is None:
            return
        A.record_unsuccessful(s, domain, attempt.id, outcome, detail=detail or UNANSWERED.get(status, status),
                              log_call=True, channel_id=sid, carrier=DRIVER)
        call_id = s.execute(select(Call.id).where(Call.uniqueid == sid)).scalar_one_or_none()
        if call_id is not None:
            calls.add_event(s, call_id, kind="carrier", at=now, dedup_key=f"carrier:{sid}", data={"driver": DRIVER})
