"""A request sent on the portal becomes a case through the same intake workflow as a phone case
(R7.1, R2.2): channel `web`, no owner yet (the front desk takes it from its list, R4.1, and
dispatches it the same day, R7.3). The catalogue is the one Open311 clients see
(callcenter/open311/services.py: not urgent help, which needs a live call, and not R7.3c reports,
which go by phone to 12388). The photo is checked before the case is made and kept with it
(ticketing/attachments.py). The phone given gets a confirmation call with the case number
(callback/notices.py; delivered by the notice runner, within calling hours)."""
from __future__ import annotations

import base64
import binascii
from datetime import datetime

from sqlalchemy.orm import Session

from callback.notices import SMS, VOICE, confirm_submission
from callcenter.api.routers.public import KIND_NAMES
from callcenter.open311.services import catalogue
from callcenter.open311.submit import title_of
from callcenter.portal import limits
from callcenter.portal.forms import PortalCategory, PortalKind, PortalRequestIn
from ticketing import attachments
from ticketing.audit import Actor
from ticketing.domain import Domain
from ticketing.enums import Channel, Role
from ticketing.errors import InvalidInput
from ticketing.models import Case

# The citizen on the web, as the system (like the voice menu: no person of ours acts).
WEB = Actor(user_id=None, name="web", role=Role.SYSTEM.value)
PHOTO = "web_photo"


def categories(domain: Domain) -> list[PortalCategory]:
    return [PortalCategory(code=s.code, name=s.name, description=s.description, keywords=s.keywords, unit=s.group,
                           kinds=[PortalKind(code=k, name=KIND_NAMES[k]) for k in s.kinds])
            for s in catalogue(domain).values()]


def _photo(form: PortalRequestIn, domain: Domain) -> bytes | None:
    if not form.photo:
        return None
    text = form.photo.split(",", 1)[1] if form.photo.startswith("data:") else form.photo  # a data: URL too
    try:
        data = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("R2.2", "照片数据无法读取，请重新选择照片") from None
    attachments.check(data, allowed=attachments.PHOTO_TYPES, max_bytes=domain.policy.portal.photo_max_kb * 1024)
    return data


def submit(session: Session, domain: Domain, form: PortalRequestIn, *, address: str, now: datetime,
           confirm_by_sms: bool = False) -> Case:
    """Accept the request as a case (R7.1); the caller commits. Its confirmation goes by voice call,
    or by SMS where an SMS sender is configured."""
    rules = domain.policy.portal
    limits.before_sending(session, rules, address=address, phone=form.phone, now=now)
    service = catalogue(domain).get(form.category_code)
    if service is None:
        raise InvalidInput("R2.1", "请从目录中选择诉求类别")
    if form.kind not in service.kinds:
        raise InvalidInput("R2.1", f"“{service.name}”不受理{KIND_NAMES[form.kind]}类诉求，请换一种诉求类型")
    photo = _photo(form, domain)
    description = form.description.strip()
    case = domain.workflow(session).accept(
        WEB, kind=form.kind, channel=Channel.WEB, title=title_of(service.name, description), description=description,
        citizen_name=form.name.strip(), citizen_phone=form.phone, location=form.location.strip(),
        category_code=service.code)
    if photo is not None:
        attachments.attach(session, WEB, case, photo, source=PHOTO, allowed=attachments.PHOTO_TYPES,
                           max_bytes=rules.photo_max_kb * 1024, now=now)
    limits.sent(session, rules, address=address, phone=form.phone, now=now)
    if domain.policy.notifications.portal_confirmation:  # its case number, by a voice call (issue 14)
        confirm_submission(session, case, now, SMS if confirm_by_sms else VOICE)
    return case


def body_limit(domain: Domain) -> int:
    """Bytes a submission may have: the photo as base64 and the form around it."""
    return (domain.policy.portal.photo_max_kb * 1024 * 4) // 3 + 64 * 1024


__all__ = ["WEB", "body_limit", "categories", "submit"]
