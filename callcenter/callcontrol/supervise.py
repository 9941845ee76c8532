"""Listen, whisper, barge (issue 12 §5; R5.2, R6.1, R7.3c, A1): a supervisor joins an operator's live call.

The supervisor's own phone (the PJSIP endpoint of their account's ``operator_extension``) is called
over AMI Originate into one of three dialplan contexts of ``asterisk/extensions_calls.conf``, whose
extension is the operator's; each runs ChanSpy on the operator's phone with its own options:

- ``listen``  (``cc-spy-listen``, ChanSpy ``q``): nobody on the call hears the supervisor;
- ``whisper`` (``cc-spy-whisper``, ``w``): only the operator hears the supervisor;
- ``barge``   (``cc-spy-barge``, ``B``): operator and citizen both hear the supervisor.

A mode switch is an AMI Redirect of the supervisor's leg to another of those contexts (no new ring);
stopping hangs the leg up. ChanSpy's ``E`` ends the supervisor's leg when the operator's call ends.
Each use is audited (A1): ``supervise_start`` (who, whom, mode, which call), ``supervise_mode`` on a
switch, ``supervise_end`` with the duration in seconds, whichever way it ended.

Who may: the back office (R5.2 supervises the front desk) and supervision (R6.1), and for a call
linked to a discipline report (R7.3c) only whom the recordings' rule (``recording.may_listen``) lets
hear that call -- heard live or recorded, one rule.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from callcenter.callcontrol.recording import may_listen
from callcenter.callcontrol.transfer import CallHungUp, CallStateError, Chan, Pbx, utcnow
from callcenter.pbx.names import operator_endpoint
from ticketing import audit
from ticketing.audit import Actor
from ticketing.enums import Role
from ticketing.models import Call, Case

# mode -> dialplan context (the ChanSpy options are written there, one place)
CONTEXTS = {"listen": "cc-spy-listen", "whisper": "cc-spy-whisper", "barge": "cc-spy-barge"}
SUPERVISE_ROLES = frozenset({Role.BACK_OFFICE, Role.SUPERVISOR})  # R5.2, R6.1
RING_SECONDS = 20


@dataclass
class SpySession:
    """One supervisor on one operator's call."""

    actor: Actor  # the supervisor
    supervisor_endpoint: str  # op8009
    operator: str  # the operator's extension, 8001
    mode: str
    channel: str  # the supervisor's leg (PJSIP/op8009-...), running ChanSpy
    uniqueid: str
    started_at: datetime
    call_id: int | None = None  # the operator's call in the call log, when logged
    case_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"supervisor": self.actor.name, "operator": self.operator, "mode": self.mode,
                "channel": self.channel, "started_at": self.started_at.isoformat()}


def may_join(actor: Actor, call: Call | None, case: Case | None) -> bool:
    """Back office or supervision; a call not yet in the call log has no case to protect."""
    if actor.role not in {r.value for r in SUPERVISE_ROLES}:
        return False
    return call is None or may_listen(actor, call, case)


def calls_of(session: Session, channels: list[Chan]) -> list[Call]:
    """The call-log rows of the operator's live call (its channels' uniqueids or linkedids)."""
    ids = [c.uniqueid for c in channels if c.uniqueid]
    if not ids:
        return []
    return list(session.execute(select(Call).where(or_(Call.uniqueid.in_(ids), Call.linkedid.in_(ids))))
                .scalars())


class Supervision:
    """The supervisors' legs now on operators' calls, one registry per process."""

    def __init__(self, pbx: Pbx, *, ring_seconds: float = RING_SECONDS,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self.pbx = pbx
        self.ring_seconds = ring_seconds
        self.clock = clock
        self.sessions: dict[str, SpySession] = {}  # by the supervisor's leg's uniqueid
        self._ringing: set[int | None] = set()  # supervisors whose phone is being rung

    # -- what is going on ---------------------------------------------------------------------
    async def operator_call(self, extension: str) -> list[Chan]:
        """The operator's leg on a live call and the channels bridged with it (409 if none)."""
        legs = [c for c in await self.pbx.endpoint_channels(operator_endpoint(extension)) if c.bridge_id]
        if not legs:
            raise CallStateError(f"operator {extension} is not on a call")
        leg = legs[0]
        return [leg, *await self.pbx.bridge_peers(leg)]

    def session_of(self, actor: Actor) -> SpySession | None:
        return next((s for s in self.sessions.values() if s.actor.user_id == actor.user_id), None)

    # -- start, switch, stop ------------------------------------------------------------------
    async def start(self, actor: Actor, supervisor_endpoint: str, extension: str, mode: str) -> SpySession:
        """Ring the supervisor's phone into the operator's call (waits for the answer)."""
        if supervisor_endpoint == operator_endpoint(extension):
            raise CallStateError("a supervisor cannot join their own call")
        if actor.user_id in self._ringing or self.session_of(actor) is not None:
            raise CallStateError("your phone is already being rung into a call, or is on one")
        self._ringing.add(actor.user_id)
        try:
            result = await self.pbx.call_endpoint_into_room(supervisor_endpoint, extension, CONTEXTS[mode],
                                                            self.ring_seconds)
        finally:
            self._ringing.discard(actor.user_id)
        if not result.answered:
            raise CallStateError(f"the supervisor's phone did not answer ({result.reason})")
        spy = SpySession(actor, supervisor_endpoint, extension, mode, result.channel, result.uniqueid, self.clock())
        self.sessions[spy.uniqueid] = spy
        return spy

    async def switch(self, spy: SpySession, mode: str) -> str:
        """Move the supervisor's leg to another mode; returns the previous mode."""
        await self._alive(spy)
        await self.pbx.redirect(spy.channel, CONTEXTS[mode], spy.operator)
        previous, spy.mode = spy.mode, mode
        return previous

    async def stop(self, spy: SpySession) -> None:
        self.sessions.pop(spy.uniqueid, None)
        await self.pbx.hangup(spy.channel)

    def ended(self, uniqueid: str) -> SpySession | None:
        """The supervisor's leg hung up (the operator's call ended, or the supervisor put the phone
        down): the session it ends, once."""
        return self.sessions.pop(uniqueid, None)

    async def _alive(self, spy: SpySession) -> None:
        if await self.pbx.channel(spy.uniqueid) is None:
            self.sessions.pop(spy.uniqueid, None)
            raise CallHungUp(spy.uniqueid)

    def duration(self, spy: SpySession) -> int:
        return max(0, round((self.clock() - spy.started_at).total_seconds()))


# -- the audit record (A1): who, whom, how, how long -----------------------------------------------


def audit_start(session: Session, spy: SpySession) -> None:
    audit.record(session, spy.actor, "supervise_start", at=spy.started_at, call_id=spy.call_id, case_id=spy.case_id,
                 data={"operator": spy.operator, "mode": spy.mode, "supervisor_endpoint": spy.supervisor_endpoint})


def audit_mode(session: Session, spy: SpySession, previous: str, at: datetime) -> None:
    audit.record(session, spy.actor, "supervise_mode", at=at, call_id=spy.call_id, case_id=spy.case_id,
                 data={"operator": spy.operator, "from": previous, "mode": spy.mode})


def audit_end(session: Session, spy: SpySession, at: datetime, reason: str) -> None:
    seconds = max(0, round((at - spy.started_at).total_seconds()))
    audit.record(session, spy.actor, "supervise_end", at=at, call_id=spy.call_id, case_id=spy.case_id,
                 data={"operator": spy.operator, "mode": spy.mode, "seconds": seconds, "reason": reason})
