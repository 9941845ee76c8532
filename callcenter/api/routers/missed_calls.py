"""漏接回拨 (国办函〔2025〕66号): the front desk's list of callers who gave up in the operator queue,
and the record of calling them back. The rule of who is on the list is `ticketing.missed_calls`."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path

from callback.missed import open_attempts
from callcenter.api.deps import ActorDep, DomainDep, SessionDep, commit, require_roles
from callcenter.api.schemas import Out, ShortText, Strict
from ticketing.enums import Role
from ticketing.missed_calls import missed_calls, record_callback

router = APIRouter(prefix="/missed-calls", tags=["calls"])

NumberPath = Annotated[str, Path(max_length=40, pattern=r"^\+?[0-9]{3,20}$")]


class MissedCallOut(Out):
    number: str                # in clear: the front desk dials it
    times: int
    first_at: datetime
    last_at: datetime
    longest_wait_s: float
    tries: int
    # the scheduler's callback of this number under way (scheduled, dialing, answered): not to be dialled by hand now
    automatic: str | None = None


class MissedCallbackIn(Strict):
    reached: bool
    note: ShortText = ""


class MissedCallbackOut(Out):
    id: int
    number: str
    reached: bool
    called_at: datetime


@router.get("", response_model=list[MissedCallOut],
            summary="Callers who gave up in the operator queue and are still to be called back (漏接回拨)")
def list_missed(actor: ActorDep, session: SessionDep, domain: DomainDep) -> list[MissedCallOut]:
    require_roles(actor, Role.FRONT_DESK, Role.BACK_OFFICE, rule="R5.1", what="see missed calls")
    rows = missed_calls(session, domain.clock(), domain.policy)
    under_way = open_attempts(session, [m.number for m in rows])
    return [MissedCallOut(**vars(m), automatic=under_way.get(m.number)) for m in rows]


@router.post("/{number}/callback", response_model=MissedCallbackOut,
             summary="Record a call back to a missed caller: reached (off the list) or not (stays on it)")
def callback(number: NumberPath, body: MissedCallbackIn, actor: ActorDep, session: SessionDep,
             domain: DomainDep) -> MissedCallbackOut:
    row = record_callback(session, actor, number, reached=body.reached, note=body.note, now=domain.clock())
    commit(session)
    return MissedCallbackOut(id=row.id, number=row.caller_number, reached=row.reached, called_at=row.called_at)
