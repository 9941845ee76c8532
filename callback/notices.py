"""Notices to citizens, delivered (issue 14; R8.2, the portal's confirmation): what makes a
`CitizenNotice`, and what its voice call says. The delivery (tries, calling hours, exactly once) is
callback/notify.py's, the same as an urge's.

- R8.2: a unit records that it notified the citizen (`Workflow.notify`) and names a channel the
  hotline delivers (`notifications.citizen_voice_channels`, e.g. `auto_voice`): the planner makes
  the citizen's notice from the work order (once: its `origin`), the runner calls the case's phone.
- The portal: a request with a phone gets its confirmation (`record`, in the intake's transaction).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivr_flows.actions import unit_prompt_name
from ticketing.domain import Domain
from ticketing.models import Case, MemberUnit, WorkOrder
from ticketing.notification_model import PORTAL_CONFIRMATION, UNIT_NOTICE, CitizenNotice, NotificationDelivery

VOICE = "voice"
SMS = "sms"


def _origin(kind: str, case_id: int, work_order_id: int | None) -> str:
    return f"wo:{work_order_id}" if kind == UNIT_NOTICE else f"case:{case_id}"


def record(session: Session, *, kind: str, case: Case, now: datetime, work_order: WorkOrder | None = None,
           channel: str = VOICE) -> CitizenNotice | None:
    """The citizen's notice of `kind` about `case` (an R8.2 notice: about `work_order`), once; None if
    it exists already. A case without a phone gets one too: its delivery fails at once, saying why,
    where the unit sees it (callback.notify.claim)."""
    if case.id is None:
        session.flush()
    wo_id = work_order.id if work_order is not None else None
    notice = CitizenNotice(origin=_origin(kind, case.id, wo_id), kind=kind, case_id=case.id, work_order_id=wo_id,
                           unit_id=work_order.unit_id if work_order is not None else None, channel=channel, at=now)
    try:
        with session.begin_nested():  # made meanwhile by another planner: the unique origin says no
            session.add(notice)
    except IntegrityError:
        return None
    return notice


def confirm_submission(session: Session, case: Case, now: datetime, channel: str = VOICE) -> CitizenNotice | None:
    """The portal's confirmation of a request (its case number), called (or texted) to the phone it gave."""
    return record(session, kind=PORTAL_CONFIRMATION, case=case, now=now, channel=channel)


def plan_unit_notices(session: Session, domain: Domain, now: datetime) -> int:
    """R8.2: the citizen's notice for every work order recently notified by a channel the hotline
    delivers, that has none yet."""
    rules = domain.policy.notifications
    channels = {**dict.fromkeys(rules.citizen_voice_channels, VOICE), **dict.fromkeys(rules.citizen_sms_channels, SMS)}
    if not channels:
        return 0
    has = select(CitizenNotice.id).where(CitizenNotice.work_order_id == WorkOrder.id,
                                         CitizenNotice.kind == UNIT_NOTICE).exists()
    rows = session.execute(select(WorkOrder).where(
        WorkOrder.notify_channel.in_(channels), WorkOrder.notified_at >= now - timedelta(hours=rules.within_hours), ~has)
        .order_by(WorkOrder.id).limit(200)).scalars().all()
    return sum(record(session, kind=UNIT_NOTICE, case=wo.case, work_order=wo, now=now,
                      channel=channels[wo.notify_channel]) is not None for wo in rows)


def citizen_facts(session: Session, domain: Domain, key: str) -> dict[str, str] | None:
    """What a citizen's notice call says (ivr_flows/citizen_notice.yaml), by the try's key; None if
    the key is not a citizen's notice (an urge: ivr_flows/notify.yaml)."""
    row = session.execute(select(CitizenNotice).join(
        NotificationDelivery, NotificationDelivery.citizen_notice_id == CitizenNotice.id).where(
        NotificationDelivery.idempotency_key == key)).scalar_one_or_none()
    if row is None:
        return None
    number = session.execute(select(Case.number).where(Case.id == row.case_id)).scalar_one()
    facts = {"notice_kind": row.kind, "case_number": number.replace("-", ""), "unit_prompt": "", "due_date": ""}
    if row.work_order_id is not None:
        wo = session.get(WorkOrder, row.work_order_id)
        code = session.execute(select(MemberUnit.code).where(MemberUnit.id == wo.unit_id)).scalar_one()
        facts["unit_prompt"] = unit_prompt_name(code)
        facts["due_date"] = wo.report_due_at.astimezone(domain.calendar.tz).date().isoformat()
    return facts


def sms_text(session: Session, domain: Domain, key: str) -> str:
    """The text of a citizen's notice sent by SMS: what its call says, in one message."""
    row = session.execute(select(CitizenNotice).join(
        NotificationDelivery, NotificationDelivery.citizen_notice_id == CitizenNotice.id).where(
        NotificationDelivery.idempotency_key == key)).scalar_one()
    number = session.execute(select(Case.number).where(Case.id == row.case_id)).scalar_one()
    if row.work_order_id is None:
        return f"【12345热线】您在网上提交的诉求已受理，编号{number}。可凭编号和手机号码后四位在网上查询办理进度。"
    wo = session.get(WorkOrder, row.work_order_id)
    unit = session.execute(select(MemberUnit.name).where(MemberUnit.id == wo.unit_id)).scalar_one()
    due = wo.report_due_at.astimezone(domain.calendar.tz)
    return f"【12345热线】您反映的诉求（编号{number}）已由{unit}受理，将于{due.month}月{due.day}日前办理并答复您。"


__all__ = ["SMS", "VOICE", "citizen_facts", "confirm_submission", "plan_unit_notices", "record", "sms_text"]
