"""Notices delivered, not only recorded (issue 14 item 5): the durable side of their delivery.

A `UnitNotification` of a kind the policy names (`notifications.voice_kinds`: the R7.7 urge) gets
one `NotificationDelivery` by `voice` (a unique pair, so a repeated plan adds nothing). Each try
rings one of the unit's duty phones (`ticketing.roster.duty_phones`: A, then B, the ones the warm
transfer rings), within the callback's calling hours; the duty holder hears the case number and
deadline and presses 1 to acknowledge (the AGI calls `acknowledge`). A try's life::

    scheduled --claim--> dialing --the phone answered--> answered --key 1--> acknowledged
    dialing|answered --no answer / no key 1--> scheduled (next duty phone, a NEW key) | failed (no tries left)
    dialing --certainly not dialled--> scheduled (same key)

`claim` commits `dialing` BEFORE the Originate; the dialplan writes the ledger entry before it
dials (`[outbound-callback]`, as for 回访 and 漏接回拨), so a dead runner's tries are settled by
asking Asterisk (callback/fate.py), never by dialling again. Every change is a conditional UPDATE.
Pure store code: the calls are callback/notify_runner.py's.

A `CitizenNotice` (callback/notices.py: R8.2, the unit has the case; the portal's confirmation) is
delivered by the same machinery to the case's phone (role `citizen`, one line: every try after
`retry_minutes`); the citizen hears it to its end (then "press 1 to hear it again"), which is its
acknowledgement. Its outcome, heard or failed, is on the case's audit trail.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from callback.attempts import CALLBACK_ACTOR
from callback.notices import citizen_facts, plan_unit_notices
from ticketing import audit
from ticketing.domain import Domain
from ticketing.models import Case, MemberUnit, UnitNotification, WorkOrder
from ticketing.notification_model import DELIVERY_OPEN_STATES, CitizenNotice, NotificationDelivery
from ticketing.roster import duty_phones

VOICE = "voice"
SMS = "sms"  # a citizen's notice as a text (callback/notify_sms.py), when an SMS sender is wired
KEY_PREFIX = "nt-"  # a try's key, and so its call's channel id (after a test's prefix)
SCHEDULED, DIALING, ANSWERED = DELIVERY_OPEN_STATES
ACKNOWLEDGED = "acknowledged"
FAILED = "failed"
IN_FLIGHT_STATES = (DIALING, ANSWERED)
CITIZEN = "citizen"  # the role of a try to the citizen's line (a unit's tries: its duty roles A, B)


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    key: str
    phone: str
    role: str
    case_number: str
    due_at: datetime | None  # the deadline the notice is about (read to the duty holder; to the citizen)
    recipient: str = "unit"  # "unit": a duty phone; CITIZEN: the citizen's line


def new_key() -> str:
    return f"{KEY_PREFIX}{uuid.uuid4().hex[:16]}"


def key_of_channel(channel_id: str) -> str | None:
    at = (channel_id or "").find(KEY_PREFIX)
    return channel_id[at:] if at >= 0 else None


def may_call(domain: Domain, now: datetime) -> bool:
    return domain.policy.callback_may_call_at(now, domain.calendar)


def plan(session: Session, domain: Domain) -> int:
    """A voice delivery for every recent notice of a voiced kind, and a delivery by its channel (voice
    or SMS) for every recent citizen's notice, that has none (R8.2 notices are first made from their
    work orders: callback/notices.py)."""
    rules = domain.policy.notifications
    now = domain.clock()
    since = now - timedelta(hours=rules.within_hours)
    plan_unit_notices(session, domain, now)
    ids: list[tuple[str, int, str]] = []  # (the delivery's notice column, its id, the channel)
    if rules.voice_kinds:
        has = select(NotificationDelivery.id).where(NotificationDelivery.notification_id == UnitNotification.id,
                                                    NotificationDelivery.channel == VOICE).exists()
        ids += [("notification_id", i, VOICE) for i in session.execute(select(UnitNotification.id).where(
            UnitNotification.kind.in_(rules.voice_kinds), UnitNotification.delivered.is_(False),
            UnitNotification.at >= since, ~has).order_by(UnitNotification.id).limit(200)).scalars()]
    has = select(NotificationDelivery.id).where(NotificationDelivery.citizen_notice_id == CitizenNotice.id,
                                                NotificationDelivery.channel == CitizenNotice.channel).exists()
    ids += [("citizen_notice_id", i, ch) for i, ch in session.execute(select(CitizenNotice.id, CitizenNotice.channel).where(
        CitizenNotice.at >= since, ~has).order_by(CitizenNotice.id).limit(200)).all()]
    made = 0
    for column, notice_id, channel in ids:
        try:
            with session.begin_nested():  # another scheduler planned it: the unique pair says no
                session.add(NotificationDelivery(**{column: notice_id}, channel=channel, state=SCHEDULED,
                                                 idempotency_key=new_key(), tries=0, scheduled_for=now))
        except IntegrityError:
            continue
        made += 1
    return made


def _move(session: Session, delivery_id: int, from_states: tuple[str, ...], to_state: str, **values) -> bool:
    """Conditional transition; False if the delivery was not in `from_states` (someone else moved it)."""
    res = session.execute(update(NotificationDelivery).where(
        NotificationDelivery.id == delivery_id, NotificationDelivery.state.in_(from_states))
        .values(state=to_state, **values).execution_options(synchronize_session=False))
    return res.rowcount == 1


def _facts(session: Session, notice: UnitNotification | CitizenNotice) -> tuple[str, datetime | None]:
    """The case number and the deadline the notice is about (the work order's next one; to a citizen,
    when the unit is to answer)."""
    case_number = session.execute(select(Case.number).where(Case.id == notice.case_id)).scalar_one_or_none() or ""
    due = None
    if notice.work_order_id is not None:
        wo = session.get(WorkOrder, notice.work_order_id)
        due = wo.report_due_at if isinstance(notice, CitizenNotice) else (
            (wo.notify_due_at if wo.notified_at is None else None) or wo.report_due_at)
    return case_number, due


def _lines(session: Session, d: NotificationDelivery, now: datetime) -> list[tuple[str, str]]:
    """The (role, number) pairs a delivery's tries go round: the unit's duty phones, or the case's phone."""
    if d.citizen_notice_id is not None:
        notice = session.get(CitizenNotice, d.citizen_notice_id)
        phone = session.execute(select(Case.citizen_phone).where(Case.id == notice.case_id)).scalar_one()
        return [(CITIZEN, phone)] if phone else []
    notice = session.get(UnitNotification, d.notification_id)
    return duty_phones(session, session.get(MemberUnit, notice.unit_id), now)


def _notice(session: Session, d: NotificationDelivery) -> UnitNotification | CitizenNotice:
    if d.citizen_notice_id is not None:
        return session.get(CitizenNotice, d.citizen_notice_id)
    return session.get(UnitNotification, d.notification_id)


def claim(session: Session, domain: Domain, channel: str = VOICE) -> Claimed | None:
    """The longest-due scheduled delivery by `channel`, moved to `dialing` towards the duty phone of
    its try (the caller commits BEFORE dialling or sending). No duty phone at all: failed."""
    now = domain.clock()
    if not may_call(domain, now):
        return None
    rows = session.execute(select(NotificationDelivery).where(
        NotificationDelivery.state == SCHEDULED, NotificationDelivery.channel == channel,
        NotificationDelivery.scheduled_for <= now)
        .order_by(NotificationDelivery.scheduled_for, NotificationDelivery.id).limit(20)).scalars().all()
    for d in rows:
        phones = _lines(session, d, now)
        if not phones:
            detail = "the case has no phone number" if d.citizen_notice_id else "the unit has no duty phone"
            if _move(session, d.id, (SCHEDULED,), FAILED, finished_at=now, detail=detail):
                _record_failure(session, d, now)
            continue
        role, phone = phones[d.tries % len(phones)]
        if _move(session, d.id, (SCHEDULED,), DIALING, started_at=now, target_role=role, phone=phone):
            case_number, due = _facts(session, _notice(session, d))
            return Claimed(d.id, d.idempotency_key, phone, role, case_number, due,
                           CITIZEN if d.citizen_notice_id else "unit")
    return None


def unclaim(session: Session, delivery_id: int, detail: str) -> bool:
    """Certainly not dialled: back to `scheduled`, same key, same duty phone."""
    return _move(session, delivery_id, (DIALING,), SCHEDULED, started_at=None, detail=detail)


def mark_answered(session: Session, delivery_id: int) -> bool:
    return _move(session, delivery_id, (DIALING,), ANSWERED)


def missed(session: Session, domain: Domain, delivery_id: int, detail: str) -> str | None:
    """A try that rang but was not acknowledged: the next duty phone at once (B after A), the next
    round after `retry_minutes`, or `failed` once the tries are used up. None if already settled
    (acknowledged meanwhile, or another process settled it)."""
    d = session.get(NotificationDelivery, delivery_id)
    if d is None or d.state not in IN_FLIGHT_STATES:
        return None
    now, rules = domain.clock(), domain.policy.notifications
    tries = d.tries + 1
    if tries >= rules.max_tries:
        ok = _move(session, delivery_id, IN_FLIGHT_STATES, FAILED, tries=tries, finished_at=now, detail=detail)
        if ok:
            _record_failure(session, d, now)
        return FAILED if ok else None
    n = max(1, len(_lines(session, d, now)))
    wait = timedelta(0) if tries % n else timedelta(minutes=rules.retry_minutes)
    ok = _move(session, delivery_id, IN_FLIGHT_STATES, SCHEDULED, tries=tries, idempotency_key=new_key(),
               scheduled_for=now + wait, started_at=None, detail=detail)
    return SCHEDULED if ok else None


def acknowledge(session: Session, domain: Domain, key: str, *, call_id: int | None = None) -> bool:
    """Key 1 on the call with this key: the notice is delivered (R7.7's urge acknowledged), on the
    case's audit trail. Idempotent: a second key 1 changes nothing."""
    d = delivery_by_key(session, key)
    if d is None:
        return False
    now = domain.clock()
    to_citizen = d.citizen_notice_id is not None
    how = ("accepted by the carrier" if d.channel == SMS else "heard to its end on the citizen's line") if to_citizen \
        else f"acknowledged by key 1 on the {d.target_role} duty phone"
    if not _move(session, d.id, IN_FLIGHT_STATES, ACKNOWLEDGED, acknowledged_at=now, finished_at=now, detail=how):
        return d.state == ACKNOWLEDGED
    if to_citizen:
        notice = session.get(CitizenNotice, d.citizen_notice_id)
        audit.record(session, CALLBACK_ACTOR, f"{notice.kind}_delivered", at=now, case_id=notice.case_id,
                     work_order_id=notice.work_order_id, call_id=call_id,
                     data={"citizen_notice_id": notice.id, "channel": d.channel, "tries": d.tries + 1})
        session.flush()
        return True
    notice = session.get(UnitNotification, d.notification_id)
    notice.delivered = True
    audit.record(session, CALLBACK_ACTOR, f"{notice.kind}_acknowledged", at=now, case_id=notice.case_id,
                 work_order_id=notice.work_order_id, call_id=call_id,
                 data={"notification_id": notice.id, "channel": d.channel, "duty_role": d.target_role,
                       "tries": d.tries + 1})
    session.flush()
    return True


def _record_failure(session: Session, d: NotificationDelivery, now: datetime) -> None:
    """A citizen's notice given up on: on the case's audit trail, where the unit and the center see it.
    (A failed urge stays recorded as the urge itself; its delivery is in the deliveries' list.)"""
    if d.citizen_notice_id is None:
        return
    notice = session.get(CitizenNotice, d.citizen_notice_id)
    session.refresh(d)
    audit.record(session, CALLBACK_ACTOR, f"{notice.kind}_failed", at=now, case_id=notice.case_id,
                 work_order_id=notice.work_order_id,
                 data={"citizen_notice_id": notice.id, "channel": d.channel, "tries": d.tries, "detail": d.detail})


def retry(session: Session, domain: Domain, actor, delivery_id: int) -> bool:
    """Someone at the center (or the unit, its own) asks a failed delivery to be tried again: a new
    round of tries from now, a new key; on the audit trail. False if it is not failed (any more)."""
    now = domain.clock()
    if not _move(session, delivery_id, (FAILED,), SCHEDULED, tries=0, idempotency_key=new_key(), scheduled_for=now,
                 started_at=None, finished_at=None, detail="retried by hand"):
        return False
    d = session.get(NotificationDelivery, delivery_id)
    session.refresh(d)
    notice = _notice(session, d)
    audit.record(session, actor, "notice_delivery_retried", at=now, case_id=notice.case_id,
                 work_order_id=notice.work_order_id, data={"delivery_id": d.id, "channel": d.channel})
    return True


# ---- read side -------------------------------------------------------------------------------------
def delivery_by_key(session: Session, key: str) -> NotificationDelivery | None:
    return session.execute(select(NotificationDelivery).where(
        NotificationDelivery.idempotency_key == key)).scalar_one_or_none()


def state_of(session: Session, delivery_id: int) -> str | None:
    return session.execute(select(NotificationDelivery.state).where(
        NotificationDelivery.id == delivery_id)).scalar_one_or_none()


def orphans(session: Session, exclude, channel: str = VOICE) -> list[tuple[int, str, str]]:
    """Tries by `channel` in flight that this process is not driving: (id, key, state)."""
    q = select(NotificationDelivery.id, NotificationDelivery.idempotency_key, NotificationDelivery.state).where(
        NotificationDelivery.state.in_(IN_FLIGHT_STATES), NotificationDelivery.channel == channel)
    ex = list(exclude)
    if ex:
        q = q.where(NotificationDelivery.id.not_in(ex))
    return [tuple(r) for r in session.execute(q).all()]


def due(session: Session, domain: Domain, channel: str = VOICE) -> int:
    return session.execute(select(func.count()).select_from(NotificationDelivery).where(
        NotificationDelivery.state.in_(DELIVERY_OPEN_STATES), NotificationDelivery.channel == channel,
        NotificationDelivery.scheduled_for <= domain.clock())).scalar_one()


__all__ = [
    "ACKNOWLEDGED",
    "ANSWERED",
    "CITIZEN",
    "DIALING",
    "FAILED",
    "KEY_PREFIX",
    "SCHEDULED",
    "SMS",
    "VOICE",
    "Claimed",
    "acknowledge",
    "citizen_facts",
    "claim",
    "delivery_by_key",
    "due",
    "key_of_channel",
    "mark_answered",
    "may_call",
    "missed",
    "new_key",
    "orphans",
    "plan",
    "retry",
    "state_of",
    "unclaim",
]
