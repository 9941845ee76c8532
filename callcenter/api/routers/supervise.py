"""Listen, whisper, barge on an operator's live call (issue 12 §5; R5.2, R6.1, R7.3c, A1).

    POST   /api/v1/operators/{extension}/supervise  {"mode": "listen"|"whisper"|"barge"}
           rings the caller's own phone into the operator's call; again while joined: switches mode
    DELETE /api/v1/operators/{extension}/supervise  the supervisor leaves (their leg is hung up)
    GET    /api/v1/supervise                        who is on whose call now

The telephony and the audit events are callcenter.callcontrol.supervise's.
"""
from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy.orm import Session

from callcenter.api.deps import ActorDep, SessionDep, commit, require_roles
from callcenter.api.routers.calls import asterisk_call_control
from callcenter.api.routers.operators import NoExtension
from callcenter.callcontrol import supervise as sv
from callcenter.callcontrol.transfer import CallHungUp, CallStateError
from callcenter.pbx.names import operator_endpoint
from ticketing.audit import Actor
from ticketing.errors import Forbidden
from ticketing.models import Case, User

router = APIRouter(tags=["supervise"])

Extension = Annotated[str, Path(pattern=r"^[0-9]{3,8}$")]


class SuperviseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    mode: Literal["listen", "whisper", "barge"]


def get_supervision(request: Request, actor: ActorDep, session: SessionDep) -> sv.Supervision:
    """The registry of the driver carrying the operator's call: Twilio's (callcenter/twilio/supervise.py)
    when the operator is on a call from the Twilio queue, or the actor supervises one there; else the
    process's registry over Asterisk, whose sessions end (audited) when Asterisk hangs a leg up."""
    twilio = _twilio_supervision(request, actor, session)
    if twilio is not None:
        return twilio
    return asterisk_supervision(request)


def _twilio_supervision(request: Request, actor: Actor, session: Session) -> sv.Supervision | None:
    settings = request.app.state.settings
    if not (settings.twilio_account_sid and settings.twilio_public_url):
        return None
    from callcenter.twilio.wiring import agents_for, supervision_for

    supervision = supervision_for(request.app)
    extension = request.path_params.get("extension")
    if supervision.session_of(actor) is not None or (extension and agents_for(request.app).operator_room(extension, session)):
        return supervision
    return None


def asterisk_supervision(request: Request) -> sv.Supervision:
    state = request.app.state
    supervision = getattr(state, "supervision", None)
    if supervision is None:
        supervision = sv.Supervision(asterisk_call_control(request).pbx)
        link = getattr(getattr(state, "callcontrol", None), "link", None)
        if link is not None:
            link.on_event(_on_hangup(supervision, state.session_factory))
        state.supervision = supervision
    return supervision


SupervisionDep = Annotated[sv.Supervision, Depends(get_supervision)]


def _on_hangup(supervision: sv.Supervision, session_factory):
    def write_end(spy: sv.SpySession, at) -> None:
        with session_factory() as session:
            sv.audit_end(session, spy, at, "hangup")
            session.commit()

    async def handler(msg) -> None:
        if (msg.name or "").lower() != "hangup":
            return
        spy = supervision.ended(msg.get_first("Uniqueid") or "")
        if spy is not None:
            await asyncio.to_thread(write_end, spy, supervision.clock())

    return handler


def _supervisor(session: Session, actor: Actor) -> str:
    """The supervisor's own phone endpoint (403 without a role that supervises or an extension)."""
    require_roles(actor, *sv.SUPERVISE_ROLES, rule="R5.2",
                  what="listen to operators' calls (back office and supervision only)")
    user = session.get(User, actor.user_id) if actor.user_id is not None else None
    if user is None or not user.operator_extension:
        raise NoExtension()
    return operator_endpoint(user.operator_extension)


@router.post("/operators/{extension}/supervise",
             summary="Listen to, whisper to or barge in on an operator's live call from your own phone")
async def supervise(extension: Extension, body: SuperviseIn, actor: ActorDep, session: SessionDep,
                    supervision: SupervisionDep) -> dict[str, Any]:
    endpoint = _supervisor(session, actor)
    current = supervision.session_of(actor)
    if current is not None:
        if current.operator != extension:
            raise CallStateError(f"you are on operator {current.operator}'s call; leave it first")
        session.rollback()
        try:
            previous = await supervision.switch(current, body.mode)
        except CallHungUp:  # the leg is gone before Asterisk's Hangup event reached us: end it here
            sv.audit_end(session, current, supervision.clock(), "hangup")
            commit(session)
            raise
        if previous != body.mode:
            sv.audit_mode(session, current, previous, supervision.clock())
            commit(session)
        return current.as_dict()
    session.rollback()  # the driver may read the store itself (Twilio: the operator's room)
    channels = await supervision.operator_call(extension)
    calls = sv.calls_of(session, channels)
    cases = {c.id: session.get(Case, c.case_id) if c.case_id is not None else None for c in calls}
    if not all(sv.may_join(actor, c, cases[c.id]) for c in calls):
        raise Forbidden("R7.3c", "a call about a report to the discipline commission is heard by the "
                                 "commission alone")
    call = calls[0] if calls else None
    case = next((case for case in cases.values() if case is not None), None)
    session.rollback()  # no transaction held while the supervisor's phone rings
    spy = await supervision.start(actor, endpoint, extension, body.mode)
    spy.call_id = call.id if call is not None else None
    spy.case_id = case.id if case is not None else None
    sv.audit_start(session, spy)
    commit(session)
    return spy.as_dict()


@router.delete("/operators/{extension}/supervise", summary="Leave the operator's call")
async def leave(extension: Extension, actor: ActorDep, session: SessionDep,
                supervision: SupervisionDep) -> dict[str, Any]:
    _supervisor(session, actor)
    spy = supervision.session_of(actor)
    if spy is None or spy.operator != extension:
        raise CallStateError(f"you are not on operator {extension}'s call")
    session.rollback()
    await supervision.stop(spy)
    now = supervision.clock()
    sv.audit_end(session, spy, now, "left")
    commit(session)
    return {**spy.as_dict(), "seconds": supervision.duration(spy)}


@router.get("/supervise", summary="Supervisors now on operators' calls")
def sessions(request: Request, actor: ActorDep) -> list[dict[str, Any]]:
    require_roles(actor, *sv.SUPERVISE_ROLES, rule="R5.2", what="see who is supervising")
    registries = [getattr(request.app.state, name, None) for name in ("twilio_supervision", "supervision")]
    if not any(registries):
        registries = [asterisk_supervision(request)]
    return [s.as_dict() for r in registries if r is not None for s in r.sessions.values()]
