"""The Twilio webhooks (README "Running on Twilio"). Every one is signed and checked before anything
is read or written (signature.py); a refusal is a 403 with the API's error body.

    POST /twilio/voice/incoming     a call to the hotline number (Voice "A call comes in")
    POST /twilio/voice/status       the call's status callback (Voice "Call status changes")
    POST /twilio/voice/gather       digits for the flow step in ?step=
    POST /twilio/voice/record       a recording for the flow step in ?step=
    POST /twilio/voice/queue        the caller left the operator queue
    POST /twilio/voice/queue/wait   the Enqueue's wait URL: hold music, and callers offered to operators
    POST /twilio/voice/operator     a caller dequeued to an operator: their room; the operator rung
    POST /twilio/voice/agent        the operator's leg answered or ended (?call=&ext=)
    POST /twilio/voice/survey       a callback survey call was answered (?key=&case=, set by outbound.py)
    POST /twilio/voice/conference   a transfer's or three-way call's room: a leg joined or left (?call=)
    POST /twilio/voice/recording    a recording is ready: fetched into the recording store (?call=)
    POST /twilio/sms/incoming       an SMS to the hotline number (Messaging "A message comes in")
    POST /twilio/sms/status         an outbound SMS's delivery status
"""
from __future__ import annotations

import asyncio
from typing import Annotated
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from ticketing.store import session_scope

from .signature import (
    SIGNATURE_HEADER,
    WebhookRefused,
    check_signature,
    log_refusal,
    public_url,
    remember,
    request_digest,
)

router = APIRouter(prefix="/twilio", tags=["twilio"])
TWIML = {200: {"description": "TwiML", "content": {"application/xml": {}}}}
EMPTY = {204: {"description": "Recorded"}}


async def signed_params(request: Request) -> dict[str, str]:
    """The request's POST parameters once its signature is Twilio's and it was not answered before."""
    settings = request.app.state.settings
    path = request.url.path
    try:
        signature = request.headers.get(SIGNATURE_HEADER)
        if not signature:  # before reading anything the sender controls
            raise WebhookRefused(f"no {SIGNATURE_HEADER} header")
        # Twilio posts application/x-www-form-urlencoded UTF-8; anything else is no request of its.
        try:
            params = dict(parse_qsl((await request.body()).decode("utf-8"), keep_blank_values=True,
                                    strict_parsing=False))
        except UnicodeDecodeError as exc:
            raise WebhookRefused("the body is not form data") from exc
        url = public_url(settings.twilio_public_url, path, request.url.query)
        check_signature(settings.twilio_auth_token, url, params, signature)
        domain = request.app.state.domain

        def once(session) -> None:
            remember(session, request_digest(url, signature), domain.clock(), settings.twilio_replay_window_s)
        await asyncio.to_thread(lambda: _in_tx(request, once))
        return params
    except WebhookRefused as exc:
        log_refusal(path, exc)
        raise


def _in_tx(request: Request, fn) -> None:
    with session_scope(request.app.state.session_factory) as session:
        fn(session)


Params = Annotated[dict[str, str], Depends(signed_params)]


def _twiml(xml: str) -> Response:
    return Response(content=xml, media_type="application/xml")


def _voice(request: Request):
    from .wiring import voice_for
    return voice_for(request.app)


def _sms(request: Request):
    from .wiring import sms_for
    return sms_for(request.app)


def _refusing(fn):
    """A webhook refused after its signature was checked (an old step, an unknown call) is logged as
    the signature refusals are."""
    async def run(request: Request, *args):
        try:
            return await fn(*args)
        except WebhookRefused as exc:
            log_refusal(request.url.path, exc)
            raise
    return run


@router.post("/voice/incoming", response_class=Response, responses=TWIML, summary="Twilio: a call comes in")
async def voice_incoming(request: Request, params: Params) -> Response:
    from . import routing, twiml

    number = params.get("To", "")
    if await routing.carried_by_asterisk(request.app, number):
        return _twiml(twiml.to_pbx(request.app.state.settings.twilio_pbx_sip_uri))
    overflow = routing.mode_for(request.app.state.settings, number) == "overflow"

    async def start(p):
        return await _voice(request).start(p, overflow=overflow)
    return _twiml(await _refusing(start)(request, params))


@router.post("/voice/survey", response_class=Response, responses=TWIML, summary="Twilio: a callback survey answered")
async def voice_survey(request: Request, params: Params) -> Response:
    key, case = request.query_params.get("key", ""), request.query_params.get("case", "")
    if not case:
        exc = WebhookRefused("a survey call without a case number")
        log_refusal(request.url.path, exc)
        raise exc

    async def start(p):
        return await _voice(request).start(p, flow="survey", variables={"case_number": case}, purpose="callback",
                                           direction="outbound", callback_key=key)
    return _twiml(await _refusing(start)(request, params))


@router.post("/voice/gather", response_class=Response, responses=TWIML, summary="Twilio: digits for a flow step")
async def voice_gather(request: Request, params: Params) -> Response:
    voice = _voice(request)
    step = request.query_params.get("step", "")
    return _twiml(await _refusing(voice.answer)(request, params, step, voice.digits_entry(params)))


@router.post("/voice/record", response_class=Response, responses=TWIML, summary="Twilio: a recording for a flow step")
async def voice_record(request: Request, params: Params) -> Response:
    voice = _voice(request)
    step = request.query_params.get("step", "")
    entry = voice.record_entry(params, empty=request.query_params.get("empty") == "1")
    return _twiml(await _refusing(voice.answer)(request, params, step, entry))


@router.post("/voice/queue", response_class=Response, responses=TWIML, summary="Twilio: the caller left the queue")
async def voice_queue(request: Request, params: Params) -> Response:
    return _twiml(await _refusing(_voice(request).queue_result)(request, params))


@router.post("/voice/queue/wait", response_class=Response, responses=TWIML,
             summary="Twilio: a caller waits in the operator queue (hold music; offers to free operators)")
async def voice_queue_wait(request: Request, params: Params) -> Response:
    from .wiring import agents_for

    agents = agents_for(request.app)
    await agents.dispatch()
    return _twiml(agents.wait_twiml())


@router.post("/voice/operator", response_class=Response, responses=TWIML,
             summary="Twilio: a caller dequeued to an operator (their room; the operator is rung)")
async def voice_operator(request: Request, params: Params) -> Response:
    from .wiring import agents_for

    return _twiml(await agents_for(request.app).dequeued(params.get("CallSid", "")))


@router.post("/voice/agent", status_code=204, response_class=Response, responses=EMPTY,
             summary="Twilio: an operator's leg answered or ended")
async def voice_agent(request: Request, params: Params) -> Response:
    from .wiring import agents_for

    await agents_for(request.app).agent_status(request.query_params.get("call", ""),
                                               request.query_params.get("ext", ""), params)
    return Response(status_code=204)


@router.post("/voice/status", status_code=204, response_class=Response, responses=EMPTY,
             summary="Twilio: call status callback")
async def voice_status(request: Request, params: Params) -> Response:
    ran = await _voice(request).status(params)
    key = request.query_params.get("key", "")
    if not ran and key:  # a callback call that never reached the survey
        from .outbound import settle_unanswered

        await asyncio.to_thread(settle_unanswered, request.app.state.domain, request.app.state.session_factory, key,
                                params.get("CallSid", ""), params.get("CallStatus", ""))
    return Response(status_code=204)


@router.post("/voice/conference", status_code=204, response_class=Response, responses=EMPTY,
             summary="Twilio: a leg joined or left a call-control room")
async def voice_conference(request: Request, params: Params) -> Response:
    from .legs import log_room_event

    await asyncio.to_thread(log_room_event, request.app.state.session_factory, request.app.state.domain.clock(),
                            request.query_params.get("call", ""), params)
    supervision = getattr(request.app.state, "twilio_supervision", None)
    if supervision is not None and params.get("StatusCallbackEvent") == "participant-leave":
        from .restore import (
            supervisor_left,  # a supervisor's leg left: the session ends (A1)
        )

        await supervisor_left(request.app, supervision, params.get("CallSid", ""))
    return Response(status_code=204)


@router.post("/voice/recording", status_code=204, response_class=Response, responses=EMPTY,
             summary="Twilio: a recording is ready (fetched into the recording store)")
async def voice_recording(request: Request, params: Params) -> Response:
    from .recordings import RecordingUnavailable
    from .wiring import recordings_for

    if params.get("RecordingStatus", "completed") != "completed" or not params.get("RecordingSid"):
        return Response(status_code=204)  # absent or failed: nothing to fetch
    call_sid = request.query_params.get("call", "") or params.get("CallSid", "")
    try:
        await asyncio.to_thread(recordings_for(request.app).completed, call_sid=call_sid,
                                recording_sid=params["RecordingSid"], recording_url=params.get("RecordingUrl", ""))
    except RecordingUnavailable:
        # not fetched: the request is forgotten, so the carrier's retry of it is taken (no replay)
        from .signature import forget

        url = public_url(request.app.state.settings.twilio_public_url, request.url.path, request.url.query)
        digest = request_digest(url, request.headers.get(SIGNATURE_HEADER, ""))
        await asyncio.to_thread(lambda: _in_tx(request, lambda s: forget(s, digest)))
        return Response(status_code=503)
    return Response(status_code=204)


@router.post("/sms/incoming", response_class=Response, responses=TWIML, summary="Twilio: an SMS comes in")
async def sms_incoming(request: Request, params: Params) -> Response:
    return _twiml(await _sms(request).incoming(params))


@router.post("/sms/status", status_code=204, response_class=Response, responses=EMPTY,
             summary="Twilio: an SMS's delivery status")
async def sms_status(request: Request, params: Params) -> Response:
    await _sms(request).delivery_status(params)
    return Response(status_code=204)
