"""Voice on Twilio: the same flows (ivr_flows/main.yaml, survey.yaml), the same engine and the same
actions (agi.hotline.CallContext) as on Asterisk, run webhook by webhook.

A call's state is a `carrier_calls` row (ticketing/carrier_model.py): the flow, its variables and the
journal of answers. Each webhook appends the answer it brings and replays the flow (replay.py), so any
app process can answer any webhook. The call record (A2) is written by ticketing/calls.py as on the
Asterisk path: opened by the call's first transaction (with the open-cases lookup), finished when the
flow ends (or when the carrier says the caller hung up), its queue result and end logged as events.
The driver that carried the call is a `carrier` event on it ({"driver": "twilio"}).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import select
from sqlalchemy.orm import Session

from agi.hotline import CallContext, Hotline, main_flow_variables
from callcenter.pbx.root import RECORDINGS_DIR
from ivr_flows.engine import FlowResult, FlowRunner
from ticketing import calls
from ticketing.carrier_model import CarrierCall
from ticketing.models import Call
from ticketing.privacy import mask_phone, mask_text
from ticketing.store import session_scope

from . import twiml
from .replay import ReplayDriver, Suspended
from .signature import WebhookRefused

log = logging.getLogger("callcenter.twilio.voice")
DRIVER = "twilio"
# Enqueue's QueueResult / Dial's DialCallStatus -> the call event ticketing.calls.apply_event knows.
_OPERATOR_REACHED = {"bridged", "completed", "answered"}
# Twilio's final CallStatus values for a call that never reached the flow.
UNANSWERED = {"busy": "busy", "no-answer": "no_answer", "failed": "failed", "canceled": "no_answer"}


@dataclass
class VoiceConfig:
    public_url: str
    queue: str = "hotline"
    operator_number: str = ""

    def url(self, path: str) -> str:
        return self.public_url.rstrip("/") + path


class TwilioVoice:
    """The voice webhooks' work, without HTTP: each method takes the request's parameters and
    returns TwiML (callcenter/twilio/webhooks.py signs and routes)."""

    def __init__(self, hotline: Hotline, config: VoiceConfig, speaker: twiml.Speaker):
        self.hotline = hotline
        self.config = config
        self.speaker = speaker
        self.agents = None  # the operators' queue (agents.TwilioQueue) when operators answer on Twilio

    @property
    def now(self):
        return self.hotline.domain.clock()

    def _tx(self, fn: Callable[[Session], Any]) -> Any:
        with session_scope(self.hotline.session_factory) as session:
            return fn(session)

    async def tx(self, fn: Callable[[Session], Any]) -> Any:
        return await asyncio.to_thread(self._tx, fn)

    # ---- the first webhook of a call --------------------------------------------------------
    async def start(self, params: dict[str, str], *, flow: str = "main", variables: dict[str, Any] | None = None,
                    purpose: str = "hotline", direction: str = "inbound", callback_key: str = "",
                    overflow: bool = False) -> str:
        """A call reached the number (or a callback call was answered): open its record, start the flow."""
        sid = params.get("CallSid", "")
        if not sid:
            raise WebhookRefused("no CallSid")
        caller = params.get("From", "")
        if caller in ("anonymous", "unknown", "+266696687"):  # Twilio's withheld-number forms
            caller = ""
        ctx = CallContext(self.hotline, caller, callback_key)
        try:
            started = self.now
            ctx.open_call_with_first_tx(uniqueid=sid, linkedid=sid, direction=direction, purpose=purpose,
                                        caller_number=caller, callee_number=params.get("To", ""),
                                        started_at=started, answered_at=started, carrier=DRIVER)
            preload = CallContext.preload_open_cases if flow == "main" else None
            # A2: on record from the first webhook, with the open-cases lookup in the same transaction.
            await ctx.run(lambda run: preload(ctx, run) if preload is not None else None)
            given = main_flow_variables(self.hotline.domain.policy) if flow == "main" else {}
            state_vars = {"caller": caller, "callback_key": callback_key, **given, **(variables or {})}

            def create(s: Session) -> CarrierCall:
                if s.execute(select(CarrierCall.id).where(CarrierCall.call_sid == sid)).first() is not None:
                    raise WebhookRefused("the call has started already")
                state = CarrierCall(driver=DRIVER, call_sid=sid, call_id=ctx.call_id, flow=flow, variables=state_vars,
                                    journal=[], step=0, outbound_key=callback_key or None, started_at=started,
                                    updated_at=started)
                s.add(state)
                calls.add_event(s, ctx.call_id, kind="carrier", at=started, dedup_key=f"carrier:{sid}",
                                data={"driver": DRIVER, "overflow": overflow})
                s.flush()
                s.expunge(state)
                return state
            state = await self.tx(create)
            return await self._advance(state, ctx)
        finally:
            ctx.close()

    # ---- each answer: digits, a recording -----------------------------------------------------
    async def answer(self, params: dict[str, str], step: str, entry: dict[str, Any]) -> str:
        """`entry` (the journal's form of the answer) for the flow waiting at `step`."""
        state = await self._state(params.get("CallSid", ""))
        if state.outcome is not None:
            raise WebhookRefused("the call's flow has ended")
        if step != str(state.step):
            raise WebhookRefused(f"step {step[:8]!r} is not the one awaited")
        state.journal = [*state.journal, entry]
        state.step += 1
        ctx = CallContext(self.hotline, state.variables.get("caller", ""), state.variables.get("callback_key", ""))
        ctx.call_id = state.call_id
        try:
            return await self._advance(state, ctx)
        finally:
            ctx.close()

    @staticmethod
    def digits_entry(params: dict[str, str]) -> dict[str, Any]:
        digits = "".join(ch for ch in params.get("Digits", "") if ch in "0123456789*#")
        return {"kind": "digits", "digits": digits[:64]}

    @staticmethod
    def record_entry(params: dict[str, str], empty: bool) -> dict[str, Any]:
        url = params.get("RecordingUrl", "")
        seconds = params.get("RecordingDuration", "0")
        recorded = bool(url) and not empty and seconds.isdigit() and int(seconds) > 0
        return {"kind": "record", "recording": url if recorded else None,
                "hung_up": params.get("CallStatus") == "completed"}

    async def _state(self, sid: str) -> CarrierCall:
        def load(s: Session) -> CarrierCall:
            state = s.execute(select(CarrierCall).where(CarrierCall.call_sid == sid)).scalar_one_or_none()
            if state is None:
                raise WebhookRefused("no flow runs for this call")
            s.expunge(state)
            return state
        return await self.tx(load)

    async def _save(self, state: CarrierCall, **done: Any) -> None:
        def save(s: Session) -> None:
            row = s.get(CarrierCall, state.id)
            row.journal, row.step, row.case_id, row.updated_at = list(state.journal), state.step, state.case_id, self.now
            for name, value in done.items():
                setattr(row, name, value)
        await self.tx(save)

    # ---- running the flow up to its next question --------------------------------------------
    async def _run(self, state: CarrierCall, ctx: CallContext, *, hung_up: bool = False
                   ) -> tuple[FlowResult | None, list, ReplayDriver]:
        driver = ReplayDriver(state.journal, hung_up=hung_up)

        async def saved_after_live_action() -> None:
            # A case created must never be created again by a later replay: journal it at once.
            state.journal = list(driver.journal)
            state.case_id = ctx.case_id or state.case_id
            await self._save(state)
        actions = driver.wrap_actions(ctx.actions(), saved_after_live_action)
        runner = FlowRunner(self.hotline.flows[state.flow], driver, actions, dict(state.variables), mask_text=mask_text)
        try:
            result = await runner.run()
        except Suspended as suspended:
            return None, suspended.verbs, driver
        return result, driver.pending, driver

    async def _advance(self, state: CarrierCall, ctx: CallContext) -> str:
        result, verbs, driver = await self._run(state, ctx)
        if result is None:
            await self._save(state)
            kind = verbs[-1].kind
            return twiml.waiting(self.speaker, verbs, self.config.url(f"/twilio/voice/{kind}?step={state.step}"),
                                 recording_url=self.recording_url(state.call_sid))
        await self._finish(state, ctx, result, driver)
        offered = self._offered(result)
        answer = twiml.finished(self.speaker, verbs, queued=result.outcome == "queued", queue=self.config.queue,
                                operator_number=self.config.operator_number,
                                queue_action_url=self.config.url("/twilio/voice/queue"),
                                recording_url=self.recording_url(state.call_sid),
                                queue_wait_url=self.config.url("/twilio/voice/queue/wait") if offered else "")
        return answer  # offered to an operator once it waits (the Enqueue's wait URL: agents.py)

    def _offered(self, result: FlowResult) -> bool:
        """The caller waits in the operators' queue of agents.py (not a fixed <Dial> number)."""
        return result.outcome == "queued" and self.agents is not None and not self.config.operator_number

    def recording_url(self, sid: str) -> str:
        return self.config.url(f"/twilio/voice/recording?{urlencode({'call': sid})}")

    async def _finish(self, state: CarrierCall, ctx: CallContext, result: FlowResult, driver: ReplayDriver) -> None:
        """The flow's end on the call record (ticketing.calls, as agi.hotline does) and, for a callback
        survey, the attempt settled in the same transaction."""
        case_id = ctx.case_id or state.case_id
        ended = self.now
        survey = self.hotline.survey if state.flow == "survey" else None

        def finish(s: Session) -> None:
            recording = driver.recordings[-1] if driver.recordings else None
            if recording is not None and (s.get(Call, state.call_id).recording_path or "").startswith(RECORDINGS_DIR):
                recording = None  # fetched already (recordings.py): the carrier's address does not replace it
            calls.finish_call(s, state.call_id, outcome=result.outcome, reason=result.reason, ended_at=ended,
                              flow_path=result.path, digits=result.digits, case_id=case_id, recording_path=recording)
            if survey is not None:
                satisfaction = result.variables.get("satisfaction")
                reason = "no key pressed" if result.reason != "hangup" else "hung up before rating"
                survey.finish_survey(s, self.hotline.domain, key=state.variables.get("callback_key", ""),
                                     satisfaction=satisfaction, call_id=state.call_id, reason=reason)
            row = s.get(CarrierCall, state.id)
            row.journal, row.step, row.case_id = list(state.journal), state.step, case_id
            row.outcome, row.updated_at = result.outcome, ended
            if self._offered(result):
                self.agents.queued(s, state, ended)
        await self.tx(finish)
        state.outcome = result.outcome
        log.info("call %s (%s) from %s: %s%s via %s (twilio)", state.call_id, state.call_sid,
                 mask_phone(state.variables.get("caller", "")) or "unknown", result.outcome,
                 f" ({result.reason})" if result.reason else "", ">".join(result.path) or "-",
                 extra={"call_id": state.call_id, "uniqueid": state.call_sid, "outcome": result.outcome,
                        "reason": result.reason, "path": list(result.path), "driver": DRIVER})

    # ---- after the menu: the queue, the end of the call ---------------------------------------
    async def queue_result(self, params: dict[str, str]) -> str:
        """Enqueue's (or Dial's) action: the caller reached an operator or gave up in the queue."""
        state = await self._state(params.get("CallSid", ""))
        result = params.get("QueueResult") or params.get("DialCallStatus") or ""
        if self.agents is not None and params.get("QueueResult"):
            if result.startswith("redirected"):  # dequeued to an operator (agents.py): their room
                return await self.agents.dequeued(state.call_sid)
            if result not in _OPERATOR_REACHED:
                await self.agents.caller_gone(state.call_sid, self.now)
                return twiml.hang_up()
        kind = "operator_connected" if result in _OPERATOR_REACHED else "queue_abandoned"
        await self._event(state, kind, f"twilio:{state.call_sid}:queue")
        if state.room_twiml:  # call control moved the operator's leg on (conference.py): the citizen follows
            return state.room_twiml
        return twiml.hang_up()

    async def status(self, params: dict[str, str]) -> bool:
        """The call's status callback: a caller who hangs up mid-menu ends the flow where it waited
        (the outcome its nodes give a hang-up); the end of the call is the call's end time. False
        when no flow ran for the call (an unanswered callback: callcenter/twilio/outbound.py)."""
        sid = params.get("CallSid", "")
        if params.get("CallStatus") not in ("completed", *UNANSWERED):
            return True
        try:
            state = await self._state(sid)
        except WebhookRefused:
            return False
        if state.outcome is None:
            ctx = CallContext(self.hotline, state.variables.get("caller", ""), state.variables.get("callback_key", ""))
            ctx.call_id = state.call_id
            try:
                result, _verbs, driver = await self._run(state, ctx, hung_up=True)
                if result is not None:
                    await self._finish(state, ctx, result, driver)
            finally:
                ctx.close()
        if self.agents is not None:
            await self.agents.caller_gone(sid, self.now)
        await self._event(state, "leg_end", f"twilio:{sid}:end")
        return True

    async def _event(self, state: CarrierCall, kind: str, dedup_key: str) -> None:
        at = self.now

        def log_event(s: Session) -> None:
            if calls.add_event(s, state.call_id, kind=kind, at=at, dedup_key=dedup_key):
                call = s.get(Call, state.call_id)
                calls.apply_event(call, kind, at=at, uniqueid=call.uniqueid)
        await self.tx(log_event)
