"""Operator call control: warm transfer, three-way call, convenience transfer, recording (issue 4 §4-7).

A call is named by its citizen channel's uniqueid. Only the front-desk operator on the call acts
on it: another operator gets 403, an unknown channel 404, a hung-up call 410. Every step is logged
to the call (A2, ``ticketing.calls.add_event``) and the case is changed through the workflow (A1):
``dispatch`` with mode ``transfer`` / ``three_way`` once the unit is on the line, consent (R7.3f),
the live outcome (R7.4).
"""
from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.api.deps import ActorDep, DomainDep, SessionDep, WorkflowDep, commit, require_roles
from callcenter.callcontrol import conference
from callcenter.callcontrol.recording import link_recording, recording_for, recording_path
from callcenter.callcontrol.recovery import CONTROL_KEY
from callcenter.callcontrol.transfer import (
    CallControl,
    CallStateError,
    ControlledCall,
    DutyTarget,
    NotCallOwner,
    Outcome,
    PbxUnavailable,
    Step,
)
from callcenter.pbx.names import operator_endpoint
from callcenter.pbx.render import dial_digits
from callcenter.pbx.root import host_path
from ticketing import calls as call_log
from ticketing.audit import Actor
from ticketing.enums import DispatchMode, Role, Satisfaction, UnitType
from ticketing.errors import DomainError, InvalidInput, NotFound
from ticketing.models import Call, Case, MemberUnit, User
from ticketing.numbering import normalize_case_number
from ticketing.roster import duty_phones
from ticketing.workflow import Workflow

router = APIRouter(prefix="/calls", tags=["calls"])

# a uniqueid: Asterisk's 1712345678.123, or an originate's ChannelId (may end in ;2)
Uniqueid = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._;-]+$")]


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CaseRef(_In):
    case_number: str = Field(min_length=1, max_length=40)


class UnitCallIn(CaseRef):
    unit: str = Field(min_length=1, max_length=64, description="member unit code")


class ConsentIn(CaseRef):
    disclaimer_read: bool
    consent: bool


class OutcomeIn(CaseRef):
    answer: str = Field(min_length=1, max_length=4000)
    satisfaction: Satisfaction


def get_call_control(request: Request, session: SessionDep) -> CallControl:
    """The CallControl of the driver that carries the call (the call log's carrier): a call on Twilio
    is controlled through its conferences (callcenter/twilio/conference.py), by the same operations
    and rules; any other call through Asterisk's (`asterisk_call_control`)."""
    uniqueid = request.path_params.get("uniqueid")
    if uniqueid and session.execute(select(Call.carrier).where(Call.uniqueid == uniqueid)).scalar() == "twilio":
        from callcenter.twilio.wiring import transfers_for

        return transfers_for(request.app)
    return asterisk_call_control(request)


def asterisk_call_control(request: Request) -> CallControl:
    """The process's CallControl over Asterisk: ``app.state.call_transfers`` if set (tests), else the
    one of the AMI link service (``app.state.callcontrol.transfers``: restored from the call log after
    a restart, callcenter.callcontrol.recovery)."""
    control = getattr(request.app.state, "call_transfers", None)
    if control is not None:
        return control
    link = getattr(request.app.state, "callcontrol", None)
    if link is None:
        raise PbxUnavailable("call control is not running in this server (no AMI link)")
    control = getattr(link, "transfers", None)
    if control is None:
        from callcenter.callcontrol.transfer import AmiPbx

        control = CallControl(AmiPbx(link.ami))
    request.app.state.call_transfers = control
    return control


ControlDep = Annotated[CallControl, Depends(get_call_control)]


# --------------------------------------------------------------------------------------------
# helpers


def _front_desk(actor: Actor) -> None:
    require_roles(actor, Role.FRONT_DESK, rule="R5.1", what="control an operator's call")


def _endpoint(session: Session, actor: Actor) -> str | None:
    """The actor's phone endpoint ("op8001") from their account's operator extension."""
    user = session.get(User, actor.user_id) if actor.user_id is not None else None
    ext = getattr(user, "operator_extension", None) if user is not None else None
    return operator_endpoint(ext) if ext else None


def _case(wf: Workflow, number: str) -> Case:
    normalized = normalize_case_number(number)
    if normalized is None:
        raise InvalidInput("case_number", f"'{number[:40]}' is not a case number (e.g. 20261125-000123)")
    return wf.get_case(normalized)


def _call_row(session: Session, uniqueid: str) -> Call | None:
    return session.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one_or_none()


async def _my_call(control, session: Session, actor: Actor, uniqueid: str):
    """The front-desk operator's own live call (403 another operator's, 404 unknown, 410 hung up)."""
    _front_desk(actor)
    return await control.resolve(_endpoint(session, actor), uniqueid, known=_call_row(session, uniqueid) is not None)


def _unit(wf: Workflow, code: str) -> MemberUnit:
    return wf.unit_by_code(code)


def duty_targets(session: Session, unit: MemberUnit, at) -> list[DutyTarget]:
    """The unit's duty phones to ring: A role first, then B (R5.3); the unit's line if no roster."""
    return [DutyTarget(unit.code, role, digits) for role, digits in duty_phones(session, unit, at)]


def _dry_run_dispatch(session: Session, wf: Workflow, actor: Actor, case: Case, unit: MemberUnit,
                      mode: DispatchMode) -> None:
    """Refuse before any telephony what the workflow would refuse afterwards (R7.3e/f/g, R4.1...)."""
    savepoint = session.begin_nested()
    try:
        wf.dispatch(actor, case, units=[unit.code], mode=mode)
    finally:
        savepoint.rollback()


def _log(session: Session, actor: Actor, uniqueid: str, steps: list[Step], *, case: Case | None,
         now, settings: Any = None, cc: ControlledCall | None = None) -> Call:
    """The call's row (opened if the store has none yet), its case and operator, every step (A2).
    The last step carries ``cc``'s state: who holds the call and in which room, read back after a
    restart (callcenter.callcontrol.recovery)."""
    call = call_log.call_row(session, uniqueid=uniqueid, started_at=now, answered_at=now)
    call_log.link_call(call, case_id=case.id if case is not None else None, operator_id=actor.user_id)
    for i, step in enumerate(steps):
        data = {**step.data, "operator": actor.name}
        if cc is not None and i == len(steps) - 1:
            data[CONTROL_KEY] = cc.snapshot()
        call_log.add_event(session, call.id, kind=step.kind, at=step.at, dedup_key=f"cc:{uuid.uuid4().hex}",
                           data=data)
    if call.recording_path is None and settings is not None and call.carrier == "asterisk":
        # the queue recorded it (queues.conf monitor-format): link the file once it exists
        path = recording_path(uniqueid)
        try:
            exists = host_path(settings, path).is_file()
        except Exception:  # no Asterisk root on this host (API-only deployment): link by name
            exists = True
        if exists:
            link_recording(session, call, at=now, path=path)
    return call


def _settings(request: Request) -> Any:
    return getattr(request.app.state, "settings", None)


def _result(outcome: Outcome, **extra: Any) -> dict[str, Any]:
    return {**outcome.as_dict(), **extra}


# --------------------------------------------------------------------------------------------
# warm transfer (issue 4 §4)


@router.post("/{uniqueid}/transfer", summary="Warm transfer: hold the citizen, ring the unit's A then B duty phone")
async def warm_transfer(uniqueid: Uniqueid, body: UnitCallIn, request: Request, actor: ActorDep,
                        session: SessionDep, wf: WorkflowDep, domain: DomainDep, control: ControlDep) -> dict:
    _front_desk(actor)
    case, unit = _case(wf, body.case_number), _unit(wf, body.unit)
    _dry_run_dispatch(session, wf, actor, case, unit, DispatchMode.TRANSFER)
    targets = duty_targets(session, unit, domain.clock())
    known, endpoint = _call_row(session, uniqueid) is not None, _endpoint(session, actor)
    session.rollback()  # no transaction held while phones ring
    cc = await control.resolve(endpoint, uniqueid, known=known)
    outcome = await control.start_warm_transfer(cc, targets)
    cc.case_number = case.number
    _log(session, actor, uniqueid, outcome.steps, case=wf.get_case(case.number), now=domain.clock(),
         settings=_settings(request), cc=cc)
    commit(session)
    return _result(outcome)


@router.post("/{uniqueid}/transfer/complete", summary="Complete the warm transfer: the unit takes the citizen")
async def complete_transfer(uniqueid: Uniqueid, request: Request, actor: ActorDep, session: SessionDep,
                            wf: WorkflowDep, domain: DomainDep, control: ControlDep) -> dict:
    cc = await _my_call(control, session, actor, uniqueid)
    if cc.state != "consulting" or cc.unit is None or cc.case_number is None:
        raise CallStateError("no warm transfer with a unit on the line to complete")
    case = wf.get_case(cc.case_number)
    unit_code = cc.unit.unit_code
    outcome = await control.complete_transfer(cc)
    call = _log(session, actor, uniqueid, outcome.steps, case=case, now=domain.clock(),
                settings=_settings(request), cc=cc)
    wf.dispatch(actor, case, units=[unit_code], mode=DispatchMode.TRANSFER, call_id=call.id)
    commit(session)
    return _result(outcome)


@router.post("/{uniqueid}/transfer/cancel", summary="Cancel the warm transfer: back to the citizen")
async def cancel_transfer(uniqueid: Uniqueid, request: Request, actor: ActorDep, session: SessionDep,
                          wf: WorkflowDep, domain: DomainDep, control: ControlDep) -> dict:
    cc = await _my_call(control, session, actor, uniqueid)
    outcome = await control.cancel_transfer(cc)
    case = wf.get_case(cc.case_number) if cc.case_number else None
    _log(session, actor, uniqueid, outcome.steps, case=case, now=domain.clock(),
         settings=_settings(request), cc=cc)
    commit(session)
    return _result(outcome)


# --------------------------------------------------------------------------------------------
# three-way call (issue 4 §5; R7.3a/e/g)


@router.post("/{uniqueid}/conference", summary="Three-way call: citizen, operator and the unit in one room")
async def start_conference(uniqueid: Uniqueid, body: UnitCallIn, request: Request, actor: ActorDep,
                           session: SessionDep, wf: WorkflowDep, domain: DomainDep, control: ControlDep) -> dict:
    _front_desk(actor)
    case, unit = _case(wf, body.case_number), _unit(wf, body.unit)
    _dry_run_dispatch(session, wf, actor, case, unit, DispatchMode.THREE_WAY)
    targets = duty_targets(session, unit, domain.clock())
    known, endpoint = _call_row(session, uniqueid) is not None, _endpoint(session, actor)
    session.rollback()  # no transaction held while phones ring
    cc = await control.resolve(endpoint, uniqueid, known=known)
    outcome = await conference.start_three_way(control, cc, targets)
    cc.case_number = case.number
    case = wf.get_case(case.number)
    call = _log(session, actor, uniqueid, outcome.steps, case=case, now=domain.clock(),
                settings=_settings(request), cc=cc)
    if outcome.connected is not None:
        wf.dispatch(actor, case, units=[unit.code], mode=DispatchMode.THREE_WAY, call_id=call.id)
    commit(session)
    return _result(outcome)


@router.post("/{uniqueid}/conference/leave", summary="The operator drops out; citizen and unit stay")
async def leave_conference(uniqueid: Uniqueid, request: Request, actor: ActorDep, session: SessionDep,
                           wf: WorkflowDep, domain: DomainDep, control: ControlDep) -> dict:
    cc = await _my_call(control, session, actor, uniqueid)
    outcome = await conference.leave(control, cc)
    _log(session, actor, uniqueid, outcome.steps, case=None, now=domain.clock(),
         settings=_settings(request), cc=cc)
    commit(session)
    return _result(outcome)


@router.post("/{uniqueid}/conference/rejoin", summary="Call the operator's phone back into the three-way call")
async def rejoin_conference(uniqueid: Uniqueid, request: Request, actor: ActorDep, session: SessionDep,
                            wf: WorkflowDep, domain: DomainDep, control: ControlDep) -> dict:
    cc = await _my_call(control, session, actor, uniqueid)
    outcome = await conference.rejoin(control, cc)
    _log(session, actor, uniqueid, outcome.steps, case=None, now=domain.clock(),
         settings=_settings(request), cc=cc)
    commit(session)
    return _result(outcome)


@router.get("/{uniqueid}/conference", summary="Who is in the call's room now (ConfbridgeList)")
async def conference_members(uniqueid: Uniqueid, actor: ActorDep, session: SessionDep,
                             control: ControlDep) -> dict:
    cc = await _my_call(control, session, actor, uniqueid)
    return {"uniqueid": uniqueid, "state": cc.state, "room": cc.room,
            "members": await conference.members(control, cc)}


@router.post("/{uniqueid}/outcome", summary="R7.4: the operator rates the three-way call or transfer live")
def live_outcome(uniqueid: Uniqueid, body: OutcomeIn, actor: ActorDep, session: SessionDep, wf: WorkflowDep,
                 domain: DomainDep) -> dict:
    # the call may be over already: judged from the call log, not from the live channel
    _front_desk(actor)
    call = _call_row(session, uniqueid)
    if call is None:
        raise NotFound("call", uniqueid)
    if call.operator_id is not None and call.operator_id != actor.user_id:
        raise NotCallOwner(uniqueid)
    case = _case(wf, body.case_number)
    wf.record_live_outcome(actor, case, answer=body.answer, satisfaction=body.satisfaction, call_id=call.id)
    call_log.add_event(session, call.id, kind="live_outcome", at=domain.clock(), dedup_key=f"cc:{uuid.uuid4().hex}",
                       data={"case": case.number, "satisfaction": body.satisfaction.value, "operator": actor.name})
    commit(session)
    return {"uniqueid": uniqueid, "case_number": case.number, "status": case.status.value,
            "satisfaction": body.satisfaction.value}


# --------------------------------------------------------------------------------------------
# convenience service transfer (issue 4 §6; R7.3f)


@router.post("/{uniqueid}/consent", summary="R7.3f: disclaimer read to the citizen, and their answer")
async def convenience_consent(uniqueid: Uniqueid, body: ConsentIn, request: Request, actor: ActorDep,
                              session: SessionDep, wf: WorkflowDep, domain: DomainDep, control: ControlDep) -> dict:
    cc = await _my_call(control, session, actor, uniqueid)
    case = _case(wf, body.case_number)
    cc.case_number = case.number
    call = _log(session, actor, uniqueid, [control.step("convenience_consent", consent=body.consent,
                                                        disclaimer_read=body.disclaimer_read)],
                case=case, now=domain.clock(), settings=_settings(request), cc=cc)
    wf.record_convenience_consent(actor, case, disclaimer_read=body.disclaimer_read, consent=body.consent,
                                  call_id=call.id)
    commit(session)
    return {"uniqueid": uniqueid, "case_number": case.number, "consent": body.consent}


def _convenience_center(session: Session) -> MemberUnit:
    unit = session.execute(select(MemberUnit).where(MemberUnit.type == UnitType.CONVENIENCE,
                                                    MemberUnit.joined.is_(True))).scalars().first()
    if unit is None:
        raise NotFound("convenience service center", "(none joined)")
    return unit


@router.post("/{uniqueid}/convenience-transfer",
             summary="R7.3f: transfer to the convenience service center; refused until consent is recorded")
async def convenience_transfer(uniqueid: Uniqueid, body: CaseRef, request: Request, actor: ActorDep,
                               session: SessionDep, wf: WorkflowDep, domain: DomainDep, control: ControlDep) -> dict:
    _front_desk(actor)
    case, unit = _case(wf, body.case_number), _convenience_center(session)
    _dry_run_dispatch(session, wf, actor, case, unit, DispatchMode.TRANSFER)  # R7.3f: consent first
    number = dial_digits(unit.phone)
    if not number:
        raise DomainError("R7.3f", f"{unit.name} has no phone number to transfer to")
    known, endpoint = _call_row(session, uniqueid) is not None, _endpoint(session, actor)
    session.rollback()  # no transaction held while phones ring
    cc = await control.resolve(endpoint, uniqueid, known=known)
    outcome = await control.blind_transfer(cc, DutyTarget(unit.code, "line", number))
    case = wf.get_case(case.number)
    call = _log(session, actor, uniqueid, outcome.steps, case=case, now=domain.clock(),
                settings=_settings(request), cc=cc)
    wf.dispatch(actor, case, units=[unit.code], mode=DispatchMode.TRANSFER, call_id=call.id)
    commit(session)
    return _result(outcome)


# --------------------------------------------------------------------------------------------
# recordings (issue 4 §7)


@router.get("/{uniqueid}/recording", summary="The call's recording (back office, supervision, its operator)",
            response_class=FileResponse)
def get_recording(uniqueid: Uniqueid, request: Request, actor: ActorDep, session: SessionDep) -> FileResponse:
    path = recording_for(session, _settings(request), actor, uniqueid)
    return FileResponse(path, media_type="audio/wav", filename=path.name)
