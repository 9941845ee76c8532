"""The list of notice deliveries (issue 14): urges to a unit's duty phone, R8.2 notices and portal
confirmations to citizens, one row per delivery with its state, tries and last outcome; the numbers
masked (ticketing.privacy). Who sees which: the center all but R7.3c reports' (ticketing.access:
the commission alone), a unit its own unit's. Failed ones are retried by callback.notify.retry.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ticketing.access import CENTER_READERS
from ticketing.audit import Actor
from ticketing.enums import Role
from ticketing.errors import NotFound
from ticketing.models import Case, MemberUnit, UnitNotification
from ticketing.notification_model import CitizenNotice, NotificationDelivery
from ticketing.privacy import mask_phone


@dataclass(frozen=True)
class DeliveryRow:
    id: int
    kind: str              # urge (or another unit notice kind) | unit_notice (R8.2) | portal_confirmation
    to: str                # unit | citizen
    case_number: str | None
    unit_code: str | None
    unit_name: str | None
    channel: str
    state: str
    tries: int             # tries settled without an acknowledgement
    target_role: str
    phone: str             # masked
    scheduled_for: datetime
    finished_at: datetime | None
    acknowledged_at: datetime | None
    last_outcome: str


def _query() -> Select:
    case_id = func.coalesce(UnitNotification.case_id, CitizenNotice.case_id)
    unit_id = func.coalesce(UnitNotification.unit_id, CitizenNotice.unit_id)
    return (select(NotificationDelivery, UnitNotification.kind, CitizenNotice.kind, Case.number, Case.confidential,
                   MemberUnit.code, MemberUnit.name)
            .outerjoin(UnitNotification, UnitNotification.id == NotificationDelivery.notification_id)
            .outerjoin(CitizenNotice, CitizenNotice.id == NotificationDelivery.citizen_notice_id)
            .outerjoin(Case, Case.id == case_id)
            .outerjoin(MemberUnit, MemberUnit.id == unit_id))


def _visible(actor: Actor, stmt: Select) -> Select:
    unit_id = func.coalesce(UnitNotification.unit_id, CitizenNotice.unit_id)
    if actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE}:
        return stmt.where(unit_id == actor.unit_id)
    if actor.role in CENTER_READERS:  # R7.3c: not even that a reporter was called
        return stmt.where(func.coalesce(Case.confidential, False).is_(False))
    return stmt.where(NotificationDelivery.id.is_(None))


def _row(r) -> DeliveryRow:
    d, unit_kind, citizen_kind, number, _confidential, code, name = r
    return DeliveryRow(
        id=d.id, kind=citizen_kind or unit_kind or "", to="citizen" if d.citizen_notice_id else "unit",
        case_number=number, unit_code=code, unit_name=name, channel=d.channel, state=d.state, tries=d.tries,
        target_role=d.target_role, phone=mask_phone(d.phone), scheduled_for=d.scheduled_for,
        finished_at=d.finished_at, acknowledged_at=d.acknowledged_at, last_outcome=d.detail or "")


def list_deliveries(session: Session, actor: Actor, *, state: str | None = None, kind: str | None = None,
                    case_number: str | None = None, limit: int = 100, offset: int = 0) -> list[DeliveryRow]:
    """Newest first; filtered by state, kind or case number."""
    stmt = _visible(actor, _query())
    if state:
        stmt = stmt.where(NotificationDelivery.state == state)
    if kind:
        stmt = stmt.where(func.coalesce(CitizenNotice.kind, UnitNotification.kind) == kind)
    if case_number:
        stmt = stmt.where(Case.number == case_number)
    stmt = stmt.order_by(NotificationDelivery.id.desc()).limit(limit).offset(offset)
    return [_row(r) for r in session.execute(stmt).all()]


def get_delivery(session: Session, actor: Actor, delivery_id: int) -> DeliveryRow:
    """One delivery the actor may see; NotFound otherwise (whether it exists or not)."""
    r = session.execute(_visible(actor, _query()).where(NotificationDelivery.id == delivery_id)).first()
    if r is None:
        raise NotFound("notice delivery", delivery_id)
    return _row(r)


__all__ = ["DeliveryRow", "get_delivery", "list_deliveries"]
