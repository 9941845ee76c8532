"""Operators at the phones (issue 4 §2, §3, §8, §9): queue login/logout/pause, live state, the
operator's own event stream (screen-pop) and the call log of a call.

Designed for the operator web console: every state the console shows has a plain GET, every change
is pushed on a server-sent-event stream (``text/event-stream``; each message's ``event:`` is the
payload's ``type``; a comment line every 15 s keeps proxies from closing an idle stream).

Without telephony in this API process (no ``app.state.callcontrol``), or while the AMI link is down,
the telephony endpoints answer 503 with a clear message; the rest of the API is unaffected.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from callcenter.api.deps import ActorDep, IdPath, SessionDep
from callcenter.api.deps import require_roles
from callcenter.callcontrol.link import LinkDown
from callcenter.callcontrol.queue import PAUSE_REASONS
from callcenter.errors import FORBIDDEN, INVALID, UNAVAILABLE, AppError
from ticketing.audit import Actor
from ticketing.enums import Role
from ticketing.errors import NotFound
from ticketing.access import may_read_content
from ticketing.models import Call, CallEvent, Case, User
from ticketing.privacy import mask_phone

router = APIRouter(tags=["operators"])

CENTER = (Role.FRONT_DESK, Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN)
KEEPALIVE_SECONDS = 15.0


class TelephonyOff(AppError):
    kind = UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("telephony_unavailable",
                         "this API server runs without the telephone link (no AMI connection configured); "
                         "queue and call functions are unavailable here")


class NoExtension(AppError):
    kind = FORBIDDEN

    def __init__(self) -> None:
        super().__init__("operator_extension", "your account has no operator extension (softphone); an "
                                               "administrator sets it (operator_extension)")


class UnknownPauseReason(AppError):
    kind = INVALID

    def __init__(self, reason: str) -> None:
        super().__init__("pause_reason", f"unknown pause reason {reason!r}; use one of {', '.join(PAUSE_REASONS)}")


def get_callcontrol(request: Request):
    cc = getattr(request.app.state, "callcontrol", None)
    if cc is None:
        raise TelephonyOff()
    return cc


CallControlDep = Annotated[Any, Depends(get_callcontrol)]


def operator_user(session, actor: Actor) -> User:
    """The calling user as a front-desk operator with a softphone extension."""
    require_roles(actor, Role.FRONT_DESK, rule="R5.1", what="work the hotline queue (front desk only)")
    user = session.get(User, actor.user_id)
    if user is None or not user.operator_extension:
        raise NoExtension()
    return user


class PauseIn(BaseModel):
    reason: str = Field(min_length=1, max_length=40, description=f"one of {', '.join(PAUSE_REASONS)}")


def _check_reason(reason: str) -> str:
    if reason not in PAUSE_REASONS:
        raise UnknownPauseReason(reason)
    return reason


def _me(cc, ext: str) -> dict[str, Any]:
    return {"extension": ext, "queue": cc.queue.state_of(ext),
            "calls": [c.public() for c in cc.link.operator_channels(ext)],
            "link": {"connected": cc.link.connected}}


# -- operator ---------------------------------------------------------------------------------


@router.get("/operators/me", summary="The operator's queue membership and current call legs")
def me(session: SessionDep, actor: ActorDep, cc: CallControlDep) -> dict[str, Any]:
    user = operator_user(session, actor)
    return _me(cc, user.operator_extension)


def _twilio_queue(request: Request):
    """The operators' queue on Twilio (callcenter/twilio/agents.py) when this install takes calls there."""
    settings = request.app.state.settings
    if settings.twilio_account_sid and settings.twilio_public_url and not settings.twilio_operator_number:
        from callcenter.twilio.wiring import agents_for

        return agents_for(request.app)
    return None


async def _queue_action(request: Request, ext: str, on_asterisk, on_twilio) -> dict[str, Any]:
    """One queue action on every driver this install answers calls with: Asterisk's queue (the
    answer) and Twilio's (under "twilio"); 503 with neither."""
    cc = getattr(request.app.state, "callcontrol", None)
    twilio = _twilio_queue(request)
    if cc is None and twilio is None:
        raise TelephonyOff()
    answer = await on_asterisk(cc) if cc is not None else {"extension": ext}
    if twilio is not None:
        answer["twilio"] = await on_twilio(twilio)
    return answer


@router.post("/operators/me/queue/login", summary="Log in to the 12345 queue (R5.1)")
async def queue_login(request: Request, session: SessionDep, actor: ActorDep) -> dict[str, Any]:
    user = operator_user(session, actor)
    ext = user.operator_extension
    session.rollback()
    return await _queue_action(request, ext, lambda cc: cc.queue.login(ext, user.display_name or user.username),
                               lambda tw: tw.login(ext))


@router.post("/operators/me/queue/logout", summary="Log out of the 12345 queue")
async def queue_logout(request: Request, session: SessionDep, actor: ActorDep) -> dict[str, Any]:
    ext = operator_user(session, actor).operator_extension
    session.rollback()
    return await _queue_action(request, ext, lambda cc: cc.queue.logout(ext), lambda tw: tw.logout(ext))


@router.post("/operators/me/queue/pause", summary="Pause (stay logged in, receive no queue calls) with a reason")
async def queue_pause(request: Request, body: PauseIn, session: SessionDep, actor: ActorDep) -> dict[str, Any]:
    ext = operator_user(session, actor).operator_extension
    session.rollback()
    reason = _check_reason(body.reason)
    return await _queue_action(request, ext, lambda cc: cc.queue.pause(ext, reason),
                               lambda tw: tw.set_pause(ext, True, reason))


@router.post("/operators/me/queue/unpause", summary="End the pause")
async def queue_unpause(request: Request, session: SessionDep, actor: ActorDep) -> dict[str, Any]:
    ext = operator_user(session, actor).operator_extension
    session.rollback()
    return await _queue_action(request, ext, lambda cc: cc.queue.unpause(ext), lambda tw: tw.set_pause(ext, False))


@router.get("/operators/me/calls", summary="The operator's live call legs")
def my_calls(session: SessionDep, actor: ActorDep, cc: CallControlDep) -> list[dict[str, Any]]:
    ext = operator_user(session, actor).operator_extension
    cc.link.require_link()
    return [c.public() for c in cc.link.operator_channels(ext)]


@router.post("/operators/me/calls/{channel:path}/hangup",
             summary="Hang up a leg of one of the operator's own calls (uniqueid or channel name)")
async def hangup(channel: Annotated[str, Path(min_length=1, max_length=200)], session: SessionDep,
                 actor: ActorDep, cc: CallControlDep) -> dict[str, Any]:
    ext = operator_user(session, actor).operator_extension
    session.rollback()
    leg = cc.link.require_call(ext, channel)
    from callcenter.ami.errors import AMILinkLost, AMINotConnected, AMITimeout

    try:
        reply = await cc.link.ami.send_action({"Action": "Hangup", "Channel": leg.name})
    except AMINotConnected:
        raise LinkDown() from None
    except (AMILinkLost, AMITimeout):
        raise LinkDown("the link to Asterisk dropped before it confirmed the hang-up; check the call state") from None
    if not reply.success:
        from callcenter.callcontrol.link import ChannelGone

        raise ChannelGone(channel)
    return {"hung_up": leg.uniqueid, "channel": leg.name}


@router.get("/operators/me/events", summary="Server-sent events for this operator: screen-pops, call and queue-membership changes")
async def my_events(request: Request, session: SessionDep, actor: ActorDep, cc: CallControlDep,
                    limit: Annotated[int | None, Query(ge=1, le=10_000, description="close after this many events")] = None
                    ) -> StreamingResponse:
    ext = operator_user(session, actor).operator_extension
    session.rollback()
    feed = cc.link.subscribe([f"operator:{ext}", "link"])
    first = {"type": "hello", **_me(cc, ext)}
    return _sse(request, feed, first, limit)


@router.get("/operators", summary="Operators (users with an extension) and their queue state")
def operators(session: SessionDep, actor: ActorDep, cc: CallControlDep) -> list[dict[str, Any]]:
    require_roles(actor, *CENTER, rule="R5.2", what="see the operators")
    users = session.execute(select(User).where(User.operator_extension.is_not(None), User.active.is_(True))
                            .order_by(User.operator_extension)).scalars().all()
    return [{"username": u.username, "display_name": u.display_name, **cc.queue.state_of(u.operator_extension)}
            for u in users]


# -- queue ------------------------------------------------------------------------------------


@router.get("/queue", summary="12345 queue: callers waiting, longest wait, operators free/paused/busy")
def queue_state(actor: ActorDep, cc: CallControlDep) -> dict[str, Any]:
    require_roles(actor, *CENTER, rule="R5.2", what="see the queue")
    return cc.link.queue_snapshot()


@router.get("/queue/events", summary="Server-sent events: the queue state on every change")
async def queue_events(request: Request, actor: ActorDep, cc: CallControlDep,
                       limit: Annotated[int | None, Query(ge=1, le=10_000)] = None) -> StreamingResponse:
    require_roles(actor, *CENTER, rule="R5.2", what="see the queue")
    feed = cc.link.subscribe(["queue", "link"])
    return _sse(request, feed, {"type": "queue", "state": cc.link.queue_snapshot()}, limit)


# -- call log (A2) ------------------------------------------------------------------------------


@router.get("/calls/{call_id}/log", summary="A2: a call and its log (legs, holds, transfers, conference joins)")
def call_log(call_id: IdPath, session: SessionDep, actor: ActorDep) -> dict[str, Any]:
    require_roles(actor, *CENTER, rule="A2", what="read call logs")
    call = session.get(Call, call_id)
    if call is None:
        raise NotFound("call", call_id)
    events = session.execute(select(CallEvent).where(CallEvent.call_id == call.id)
                             .order_by(CallEvent.at, CallEvent.id)).scalars().all()
    case = session.get(Case, call.case_id) if call.case_id is not None else None
    if case is not None and not may_read_content(actor, case):
        # R7.3c: which case, which keys and which menu path would tell what the call was about
        return {"id": call.id, "uniqueid": call.uniqueid, "direction": call.direction, "purpose": call.purpose,
                "started_at": _iso(call.started_at), "ended_at": _iso(call.ended_at), "outcome": call.outcome,
                "confidential": True}
    return {
        "id": call.id, "uniqueid": call.uniqueid, "linkedid": call.linkedid, "direction": call.direction,
        "purpose": call.purpose, "caller_number": mask_phone(call.caller_number),
        "started_at": _iso(call.started_at), "answered_at": _iso(call.answered_at), "ended_at": _iso(call.ended_at),
        "outcome": call.outcome, "outcome_reason": call.outcome_reason, "case_id": call.case_id,
        "operator_id": call.operator_id, "flow_path": call.flow_path, "digits": call.digits,
        "recording_path": call.recording_path,
        "events": [{"at": _iso(e.at), "kind": e.kind, "data": e.data} for e in events],
    }


def _iso(value) -> str | None:
    return value.isoformat() if value is not None else None


# -- SSE ----------------------------------------------------------------------------------------


def _sse_message(event: dict[str, Any]) -> bytes:
    body = json.dumps(event, ensure_ascii=False, default=str)
    return f"event: {event.get('type', 'message')}\ndata: {body}\n\n".encode()


def _sse(request: Request, feed, first: dict[str, Any], limit: int | None) -> StreamingResponse:
    async def stream() -> AsyncIterator[bytes]:
        sent = 0
        try:
            yield _sse_message(first)
            sent += 1
            while limit is None or sent < limit:
                if await request.is_disconnected():
                    break
                try:
                    event = await feed.get(timeout=KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                except StopAsyncIteration:
                    break
                yield _sse_message(event)
                sent += 1
        except asyncio.CancelledError:
            raise
        finally:
            feed.close()

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
