"""After a restart of the application in the middle of Twilio calls (issue 15): the calls kept running
at the carrier; what this process knew is rebuilt from the store and reconciled with the carrier's
REST API (each call's status, the queue's members, the rooms' participants), never dialling twice
and never losing a call record:

- a caller whose call ended meanwhile: waiting, they abandoned the queue; talking, the operator's
  call completed; the call's end logged (each event once: the same dedup keys as the webhooks');
- offered but still a member of the carrier's queue: dequeued again (a dequeue is no ring);
- an operator being rung (``ringing`` was committed before the request): the leg is looked up (the
  agent's leg, the room's participants, the calls to the operator's address) -- found, it is
  followed (answered now: connected and popped); not found, the ring never happened or ended
  unanswered: the caller goes back to the queue, and is offered again;
- talking: followed as before (the rooms' citizens and the operators' legs known again);
- transfers and three-way calls: call control's own recovery (callcenter/callcontrol/recovery.py)
  over the Twilio rooms;
- then free operators are offered the waiting callers.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import select
from twilio.base.exceptions import TwilioRestException

from callcenter.callcontrol import supervise as sv
from callcenter.callcontrol.recovery import LOOKBACK, ControlRecovery
from ticketing import calls
from ticketing.audit import Actor
from ticketing.carrier_model import CarrierAgent, CarrierCall
from ticketing.models import AuditEvent, Call

from .agents import LIVE, WAITING, TwilioQueue, _aware

log = logging.getLogger("callcenter.twilio.restore")
_OPEN = ("queued", "offered", "ringing", "connected")


async def supervisor_left(app, supervision: sv.Supervision, leg: str) -> None:
    """A supervisor's leg left the room: their session ends, audited (A1), once."""
    spy = supervision.ended(leg)
    if spy is None:
        return
    supervision.pbx.spies.pop(leg, None)
    at = supervision.clock()

    def write() -> None:
        with app.state.session_factory() as session:
            sv.audit_end(session, spy, at, "hangup")
            session.commit()
    await asyncio.to_thread(write)


async def _fetch(agents: TwilioQueue, sid: str) -> Any | None:
    try:
        return await agents.rest(lambda: agents.client.calls(sid).fetch())
    except TwilioRestException as exc:
        if exc.status == 404:
            return None
        raise


def _open_calls(agents: TwilioQueue) -> list[dict[str, Any]]:
    def read(s) -> list[dict[str, Any]]:
        rows = s.execute(select(CarrierCall.call_sid, CarrierCall.queue_state, CarrierCall.operator,
                                CarrierCall.room, CarrierCall.call_id, CarrierAgent.leg_sid)
                         .outerjoin(CarrierAgent, CarrierAgent.call_sid == CarrierCall.call_sid)
                         .where(CarrierCall.queue_state.in_(_OPEN)).order_by(CarrierCall.id)).all()
        return [dict(r._mapping) for r in rows]
    return agents._tx(read)


async def _call_ended(agents: TwilioQueue, row: dict[str, Any], at: datetime) -> None:
    sid = row["call_sid"]
    if row["queue_state"] in WAITING:
        await agents.caller_gone(sid, at)
    else:
        await agents.leg_ended(sid, row["operator"], row["leg_sid"] or "", ended_at=at)

    def end(s) -> None:  # the end of the call's own leg, as its status callback logs it
        if calls.add_event(s, row["call_id"], kind="leg_end", at=at, dedup_key=f"twilio:{sid}:end"):
            call = s.get(Call, row["call_id"])
            calls.apply_event(call, "leg_end", at=at, uniqueid=call.uniqueid)
    await agents.tx(end)


async def _operator_leg(agents: TwilioQueue, row: dict[str, Any]) -> Any | None:
    """The leg that rings (or rang) the operator for this call, as the carrier knows it."""
    if row["leg_sid"]:
        return await _fetch(agents, row["leg_sid"])
    address = agents.address_of(row["operator"])
    if row["room"]:
        for member in await agents.pbx.room_members(row["room"]):
            if member != row["call_sid"] and agents.pbx._dialled.get(member) == address:
                return await _fetch(agents, member)
    for status in ("ringing", "queued", "in-progress"):
        legs = await agents.rest(lambda st=status: agents.client.calls.list(to=address, status=st, limit=20))
        if legs:
            return legs[0]
    return None


async def _still_queued(agents: TwilioQueue, sid: str) -> bool:
    try:
        qsid = await agents.queue_sid()
        await agents.rest(lambda: agents.client.queues(qsid).members(sid).fetch())
    except TwilioRestException as exc:
        if exc.status == 404:
            return False
        raise
    except LookupError:
        return False
    return True


async def restore_queue(agents: TwilioQueue) -> dict[str, int]:
    counts = {"ended": 0, "requeued": 0, "followed": 0, "dequeued": 0}
    for row in await asyncio.to_thread(_open_calls, agents):
        sid, state = row["call_sid"], row["queue_state"]
        call = await _fetch(agents, sid)
        if call is None or call.status not in LIVE:
            await _call_ended(agents, row, getattr(call, "end_time", None) or agents.clock())
            counts["ended"] += 1
            continue
        if state == "queued":
            continue
        if row["room"]:
            agents.pbx.citizen_of_room[row["room"]] = sid
        if state == "offered" and await _still_queued(agents, sid):
            await agents._dequeue(sid)  # asked again: its URL rings the operator (once: ring's claim)
            counts["dequeued"] += 1
            continue
        leg = await _operator_leg(agents, row) if state in ("ringing", "connected") else None
        if state == "offered":  # dequeued, the operator never rung: ring now
            state_row = await agents._load(sid)
            await agents.ring(state_row)
            counts["followed"] += 1
        elif leg is None or leg.status not in LIVE:
            if state == "connected":
                await agents.leg_ended(sid, row["operator"], row["leg_sid"] or "")
            else:
                await agents.requeue(sid)
            counts["requeued" if state == "ringing" else "ended"] += 1
        else:
            agents.pbx._dialled[leg.sid] = agents.address_of(row["operator"])
            agents._tx(lambda s, leg=leg, sid=sid: s.execute(CarrierAgent.__table__.update().where(
                CarrierAgent.call_sid == sid).values(leg_sid=leg.sid)))
            if leg.status == "in-progress" and state == "ringing":
                await agents.answered(sid, row["operator"], leg.sid)
            counts["followed"] += 1
    agents._tx(_free_stale_agents)
    await agents.dispatch()
    return counts


def _free_stale_agents(s) -> None:
    """Operators still marked on a call whose queue part is over."""
    open_sids = select(CarrierCall.call_sid).where(CarrierCall.queue_state.in_(_OPEN))
    s.execute(CarrierAgent.__table__.update().where(CarrierAgent.call_sid.is_not(None),
                                                    CarrierAgent.call_sid.not_in(open_sids))
              .values(call_sid=None, leg_sid=None))


def _open_supervisions(session_factory, since: datetime) -> list[dict[str, Any]]:
    """Supervisors on Twilio calls whose session has no end in the audit record (A1)."""
    with session_factory() as s:
        rows = s.execute(select(AuditEvent).join(Call, Call.id == AuditEvent.call_id).where(
            AuditEvent.action.in_(("supervise_start", "supervise_mode", "supervise_end")), AuditEvent.at >= since,
            Call.carrier == "twilio").order_by(AuditEvent.id)).scalars().all()
        open_: dict[int | None, dict[str, Any]] = {}
        for e in rows:
            if e.action == "supervise_start":
                open_[e.actor_id] = {"actor": Actor(e.actor_id, e.actor_name, e.actor_role), "at": e.at,
                                     "call_id": e.call_id, "case_id": e.case_id, **(e.data or {})}
            elif e.action == "supervise_mode" and e.actor_id in open_:
                open_[e.actor_id]["mode"] = (e.data or {}).get("mode", open_[e.actor_id]["mode"])
            elif e.action == "supervise_end":
                open_.pop(e.actor_id, None)
        return list(open_.values())


async def restore_supervision(app) -> int:
    """Supervisors still in an operator's room get their session back (so leaving, a switch and the
    end are audited as usual); one whose leg is gone gets its end audited now."""
    from .wiring import supervision_for

    supervision = supervision_for(app)
    spy_pbx = supervision.pbx
    since = supervision.clock() - LOOKBACK
    restored = 0
    for row in await asyncio.to_thread(_open_supervisions, app.state.session_factory, since):
        where = await spy_pbx._where(str(row.get("operator", "")))
        leg = participant = None
        if where is not None:
            _citizen, operator_leg, room = where
            wanted = f"client:{row.get('supervisor_endpoint', '')}"
            leg = next((m for m in await spy_pbx.pbx.room_members(room) if spy_pbx.pbx._dialled.get(m) == wanted), None)
            participant = await spy_pbx.pbx.participant(room, leg) if leg else None
        spy = sv.SpySession(row["actor"], str(row.get("supervisor_endpoint", "")), str(row.get("operator", "")),
                            str(row.get("mode", "listen")), leg or "", leg or "", _aware(row["at"]),
                            call_id=row["call_id"], case_id=row["case_id"])
        if participant is None:
            at = supervision.clock()

            def end(spy=spy, at=at) -> None:
                with app.state.session_factory() as session:
                    sv.audit_end(session, spy, at, "ended_during_restart")
                    session.commit()
            await asyncio.to_thread(end)
            continue
        supervision.sessions[leg] = spy
        spy_pbx.spies[leg] = (participant.conference_sid, operator_leg)
        restored += 1
    return restored


async def restore(app) -> dict[str, int]:
    """At start-up (the app's lifespan): the queue, then the rooms of call control."""
    from .wiring import agents_for, transfers_for

    agents = agents_for(app)
    counts = await restore_queue(agents)
    control = transfers_for(app)
    recovery = ControlRecovery(control, app.state.session_factory)
    await recovery.restore()
    for cc in control.calls.values():  # the rooms' legs are logged on the citizen's call again
        for room in (cc.room, cc.consult_room):
            if room:
                control.pbx.citizen_of_room[room] = cc.uniqueid
    counts.update(held_calls=recovery.restored_calls, dropped_calls=recovery.dropped_calls,
                  supervisors=await restore_supervision(app))
    log.info("twilio restore: %s", counts)
    return counts


async def restore_at_start(app) -> None:
    """`restore`, never keeping the app from starting: the carrier unreachable, it is logged, and
    call control answers new calls (webhooks and later status callbacks settle the others)."""
    try:
        await restore(app)
    except Exception:
        log.exception("twilio restore failed; the calls will be settled by their next webhooks")
    finally:
        control = getattr(app.state, "twilio_transfers", None)
        if control is not None and control.restored is not None:
            control.restored.set()
