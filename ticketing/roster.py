"""R9.1: a unit's leader and duty staff, with history, and whether changes were reported in time."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ticketing import audit
from ticketing.audit import Actor
from ticketing.deadlines import Deadlines
from ticketing.dialing import dial_digits
from ticketing.enums import Duty, Role
from ticketing.errors import Forbidden, InvalidInput
from ticketing.models import MemberUnit, RosterEntry


def on_duty(session: Session, unit_id: int, at: datetime) -> dict[str, RosterEntry]:
    """Who held each duty at a unit at the given moment."""
    rows = session.execute(
        select(RosterEntry).where(
            RosterEntry.unit_id == unit_id,
            RosterEntry.valid_from <= at,
            or_(RosterEntry.valid_to.is_(None), RosterEntry.valid_to > at),
        )
    ).scalars()
    return {str(r.duty.value if hasattr(r.duty, "value") else r.duty): r for r in rows}


def duty_phones(session: Session, unit: MemberUnit, at: datetime) -> list[tuple[str, str]]:
    """The unit's duty phones to ring, in order, as (role, digits): A first, then B (R5.3); the
    unit's own line if no roster. Warm transfers, three-way calls and voice notices ring these."""
    duty = on_duty(session, unit.id, at)
    phones = [(role, dial_digits(duty[role].phone)) for role in ("A", "B") if role in duty]
    phones = [(role, digits) for role, digits in phones if digits]
    if not phones and dial_digits(unit.phone):
        phones.append(("line", dial_digits(unit.phone)))
    return phones


def change_duty(
    session: Session,
    actor: Actor,
    unit: MemberUnit,
    *,
    duty: Duty | str,
    name: str,
    phone: str,
    effective_from: datetime,
    now: datetime,
    calendar,
    policy,
) -> RosterEntry:
    """Record a change of leader or A/B staff; late if reported after the limit (R9.1)."""
    if actor.role not in {Role.ADMIN, Role.BACK_OFFICE} and not (
        actor.role in {Role.UNIT_STAFF, Role.DISCIPLINE} and actor.unit_id == unit.id
    ):
        raise Forbidden("R9.1", "only the unit itself or the center changes a unit's roster")
    duty = Duty(duty)
    if not name.strip() or not phone.strip():
        raise InvalidInput("R9.1", "a duty holder needs a name and a phone number")
    if effective_from > now:
        raise InvalidInput("R9.1", "report a change once it has taken effect")
    current = on_duty(session, unit.id, effective_from).get(duty.value)
    if current is not None:
        current.valid_to = effective_from
    due = Deadlines(policy, calendar).roster_change_due(effective_from).at
    entry = RosterEntry(
        unit_id=unit.id, duty=duty, name=name.strip(), phone=phone.strip(), valid_from=effective_from,
        valid_to=None, reported_at=now, report_due_at=due, reported_late=now > due,
    )
    session.add(entry)
    session.flush()
    audit.record(session, actor, "roster_change", at=now,
                 data={"unit": unit.code, "duty": duty.value, "effective_from": effective_from,
                       "reported_late": entry.reported_late})
    return entry
