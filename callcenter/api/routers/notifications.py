"""Notice deliveries (issue 14): urges to a unit's duty phone (R7.7), R8.2 notices and portal
confirmations to citizens, as the back office and a unit see them (callback/deliveries.py: who sees
which, numbers masked), and a failed one tried again (callback.notify.retry)."""
from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query

from callback import notify
from callback.deliveries import get_delivery, list_deliveries
from callcenter.api.deps import ActorDep, DomainDep, IdPath, OffsetQuery, SessionDep, commit, require_roles
from callcenter.api.schemas import Out
from ticketing.enums import Role
from ticketing.errors import DomainError

router = APIRouter(prefix="/notifications", tags=["notifications"])
READERS = (Role.FRONT_DESK, Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN, Role.UNIT_STAFF, Role.DISCIPLINE)
RETRIERS = (Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN, Role.UNIT_STAFF, Role.DISCIPLINE)


class DeliveryOut(Out):
    id: int
    kind: str
    to: str
    case_number: str | None
    unit_code: str | None
    unit_name: str | None
    channel: str
    state: str
    tries: int
    target_role: str
    phone: str  # masked (138****5678)
    scheduled_for: datetime
    finished_at: datetime | None
    acknowledged_at: datetime | None
    last_outcome: str


@router.get("", response_model=list[DeliveryOut], summary="Notice deliveries: urges, R8.2 notices, portal confirmations")
def deliveries(actor: ActorDep, session: SessionDep,
               state: Annotated[str | None, Query(max_length=16, pattern=r"^[a-z_]+$")] = None,
               kind: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")] = None,
               case_number: Annotated[str | None, Query(max_length=20, pattern=r"^[0-9-]+$")] = None,
               limit: Annotated[int, Query(ge=1, le=500)] = 100, offset: OffsetQuery = 0) -> list[DeliveryOut]:
    require_roles(actor, *READERS, rule="R5.3", what="see notice deliveries")
    rows = list_deliveries(session, actor, state=state, kind=kind, case_number=case_number, limit=limit, offset=offset)
    return [DeliveryOut(**vars(r)) for r in rows]


@router.post("/{delivery_id}/retry", response_model=DeliveryOut, summary="Try a failed delivery again (a new round of tries)")
def retry(delivery_id: IdPath, actor: ActorDep, session: SessionDep, domain: DomainDep) -> DeliveryOut:
    require_roles(actor, *RETRIERS, rule="R5.3", what="retry notice deliveries")
    get_delivery(session, actor, delivery_id)  # one the actor may see, else 404
    if not notify.retry(session, domain, actor, delivery_id):
        raise DomainError("R7.7", f"notice delivery {delivery_id} has not failed: it is tried already")
    commit(session)
    return DeliveryOut(**vars(get_delivery(session, actor, delivery_id)))
