"""The legs of a call-control room on Twilio in the call log (A2): each participant joining or leaving
a transfer's or three-way call's conference (conference.py) is logged on the citizen's call as
`conference_join` / `conference_leave` with the room, as the ConfBridge events are on Asterisk
(callcenter/callcontrol/calllog.py); once each (the dedup key is the carrier's event)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import select

from ticketing import calls
from ticketing.models import Call
from ticketing.store import session_scope

from .conference import endpoint_of_leg

_KINDS = {"participant-join": "conference_join", "participant-leave": "conference_leave"}


def log_room_event(session_factory, now: datetime, citizen_sid: str, params: dict[str, str]) -> bool:
    """One room event; False when it is none we log, the call is unknown or it was logged before."""
    kind = _KINDS.get(params.get("StatusCallbackEvent", ""))
    if kind is None or not citizen_sid:
        return False
    leg = params.get("CallSid", "")
    data = {"conference": params.get("FriendlyName", ""), "leg": leg, "driver": "twilio"}
    if params.get("Coaching") == "true":
        data["coaching"] = True
    if leg == citizen_sid:
        data["party"] = "citizen"
    elif (endpoint := endpoint_of_leg(params.get("To") or params.get("Called"))) is not None:
        data["party"], data["endpoint"] = "operator", endpoint
    dedup = f"twilio:{params.get('ConferenceSid', '')}:{leg}:{kind}:{params.get('SequenceNumber', '')}"
    with session_scope(session_factory) as s:
        call_id = s.execute(select(Call.id).where(Call.uniqueid == citizen_sid)).scalar_one_or_none()
        if call_id is None:
            return False
        return calls.add_event(s, call_id, kind=kind, at=now, dedup_key=dedup[:200], data=data)
