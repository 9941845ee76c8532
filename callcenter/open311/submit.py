"""POST requests: a GeoReport v2 service request becomes a case through the same intake workflow
as a phone or desk case (R7.1, R2.2: every channel lands in the same case store), channel `web`
(R2.2 names web; Open311 is how an application on the web reaches us, and the Open311 record keeps
which client it was). Accepted at once, like a case the voice menu creates: its number is the
service_request_id, no owner yet; the front desk takes it (R4.1), dispatches it (R7.3) or refuses
it with its ground (R3.1), like any other case.

The spec's POST (wiki.open311.org/GeoReport_v2, "POST Service Request"): form-encoded
(application/x-www-form-urlencoded, UTF-8); `api_key`; `service_code`; a location: `lat` and
`long` (WGS84, both), or `address_string`, or `address_id`; `attribute[code]=value` (and
`attribute[code][]=…` for a multivaluelist) as the service definition asks; optional `email`,
`device_id`, `account_id`, `first_name`, `last_name`, `phone`, `description` (at most 4,000
characters) and `media_url`. The answer: service_request_id, service_notice, account_id. Errors:
404 service_code not found, 400 not provided or anything else wrong (every problem listed), 403
api_key missing or invalid; our 429 when the client's rate limit is used up.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import parse_qsl

from sqlalchemy.orm import Session

from callcenter.open311.formats import Open311Error, refuse
from callcenter.open311.services import (
    Service,
    check_attributes,
    kind_of,
    service_named,
    submitted_attributes,
)
from ticketing import audit
from ticketing.audit import Actor
from ticketing.domain import Domain
from ticketing.enums import Channel, Role
from ticketing.models import Case
from ticketing.open311_model import Open311Client, Open311Request

FORM = "application/x-www-form-urlencoded"
MAX_FIELDS = 200
# Longest value of each field we take (description: the spec's 4,000 characters).
LIMITS = {"service_code": 64, "address_string": 200, "address_id": 64, "email": 200, "device_id": 100,
          "account_id": 100, "first_name": 50, "last_name": 50, "phone": 40, "description": 4000, "media_url": 500}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_PHONE = re.compile(r"^\+?[0-9][0-9 \-()]{2,38}$")


@dataclass(frozen=True)
class Submission:
    service: Service
    kind: str
    attributes: dict[str, object]
    fields: dict[str, str]
    lat: float | None
    long: float | None


def parse_form(body: bytes, content_type: str | None) -> list[tuple[str, str]]:
    media = (content_type or "").split(";")[0].strip().lower()
    if media != FORM:
        raise refuse(400, f"send the request form-encoded ({FORM}; charset=utf-8)")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=MAX_FIELDS)
    except (UnicodeDecodeError, ValueError):
        raise refuse(400, f"the form is not UTF-8 or has more than {MAX_FIELDS} fields") from None


def field(form: list[tuple[str, str]], name: str) -> str:
    """A field's first value, trimmed; "" when absent (the spec: empty and absent are the same)."""
    return next((value.strip() for key, value in form if key == name), "")


def _coordinate(text: str, name: str, bound: float, errors: list) -> float | None:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or abs(value) > bound:
        errors.append((400, f"{name} must be a WGS84 coordinate between -{bound:g} and {bound:g}"))
        return None
    return value


def check(domain: Domain, form: list[tuple[str, str]]) -> Submission:
    """The request as the intake needs it, or the spec's errors (every problem at once)."""
    service = service_named(domain, field(form, "service_code")[:LIMITS["service_code"]])
    fields = {name: field(form, name) for name in LIMITS if name != "service_code"}
    errors: list[tuple[int, str]] = []
    for name, value in fields.items():
        if len(value) > LIMITS[name]:
            errors.append((400, f"{name} has at most {LIMITS[name]} characters"))
    if any("\x00" in value for _key, value in form):
        errors.append((400, "a field holds a NUL character"))
    lat_text, long_text = field(form, "lat"), field(form, "long")
    lat = long = None
    if lat_text or long_text:
        if not (lat_text and long_text):
            errors.append((400, "lat and long are sent together"))
        else:
            lat = _coordinate(lat_text, "lat", 90, errors)
            long = _coordinate(long_text, "long", 180, errors)
    elif not (fields["address_string"] or fields["address_id"]):
        errors.append((400, "a location is required: lat and long, or address_string, or address_id"))
    if fields["email"] and not _EMAIL.match(fields["email"]):
        errors.append((400, "email is not an e-mail address"))
    if fields["phone"] and not _PHONE.match(fields["phone"]):
        errors.append((400, "phone is not a phone number (digits, spaces, '-', '(', ')', a leading '+')"))
    if fields["media_url"] and not re.match(r"^https?://\S+$", fields["media_url"]):
        errors.append((400, "media_url must be an http or https URL"))
    values, attribute_errors = check_attributes(service, submitted_attributes(form))
    errors += attribute_errors
    if errors:
        raise Open311Error(400, *errors)
    return Submission(service, kind_of(service, values), values, fields, lat, long)


def _name(first: str, last: str) -> str:
    """张 + 三 -> 张三; John + Smith -> John Smith."""
    if (first + last).isascii():
        return " ".join(part for part in (first, last) if part)
    return last + first


def title_of(service_name: str, description: str) -> str:
    """A web request's case title: its category and the first line of what was written (the web
    portal's too, callcenter/portal/intake.py)."""
    first_line = description.strip().splitlines()[0][:40] if description.strip() else ""
    return (f"{service_name}：{first_line}" if first_line else service_name)[:200]


def _case_text(sub: Submission, client: Open311Client) -> tuple[str, str, str]:
    """(title, description, location) of the case: what the desk and the unit read."""
    f = sub.fields
    title = title_of(sub.service.name, f["description"])
    lines = [f["description"]] if f["description"] else []
    extra = [f"{a.description}：{sub.attributes[a.code]}" for a in sub.service.attributes
             if a.code in sub.attributes and a.code != "kind"]
    if sub.lat is not None:
        extra.append(f"坐标（WGS84）：{sub.lat}, {sub.long}")
    if f["address_id"]:
        extra.append(f"地址编号：{f['address_id']}")
    if f["media_url"]:
        extra.append(f"附件链接：{f['media_url']}")
    if f["email"]:
        extra.append(f"电子邮箱：{f['email']}")
    extra.append(f"（经 Open311 客户端 {client.name} 提交）")
    description = "\n\n".join(lines + ["\n".join(extra)])
    location = f["address_string"] or (f"坐标 {sub.lat},{sub.long}" if sub.lat is not None else f"地址编号 {f['address_id']}")
    return title, description, location[:200]


def actor_of(client: Open311Client | None) -> Actor:
    """Who acts in the audit record: the client, as the system (like the voice menu: no person)."""
    return Actor(user_id=None, name=f"open311:{client.name}" if client else "open311", role=Role.SYSTEM.value)


def create(session: Session, domain: Domain, client: Open311Client, sub: Submission, *, now: datetime) -> Case:
    """Accept the request as a case (R7.1) and keep what the case has no column for."""
    actor = actor_of(client)
    f = sub.fields
    title, description, location = _case_text(sub, client)
    case = domain.workflow(session).accept(
        actor, kind=sub.kind, channel=Channel.WEB, title=title, description=description,
        citizen_name=_name(f["first_name"], f["last_name"])[:100], citizen_phone=f["phone"], location=location,
        category_code=sub.service.code)
    session.add(Open311Request(
        case_id=case.id, client_id=client.id, service_code=sub.service.code, attributes=sub.attributes,
        lat=sub.lat, long=sub.long, address_string=f["address_string"], address_id=f["address_id"],
        email=f["email"], device_id=f["device_id"], account_id=f["account_id"], media_url=f["media_url"],
        requested_at=now))
    audit.record(session, actor, "open311_request", at=now, case_id=case.id, channel=Channel.WEB.value, data={
        "client": client.name, "service_code": sub.service.code, "service_request_id": case.number,
        "fields": sorted(name for name, value in f.items() if value)})  # which were sent, not what
    return case


def service_notice(domain: Domain, case: Case) -> str:
    days = domain.policy.limits.report_working_days.for_kind(str(getattr(case.kind, "value", case.kind)))
    return (f"已受理，编号 {case.number}。派单后承办单位一般在 {days} 个工作日内答复（节假日顺延），"
            "可凭编号查询办理进度。")


def record_refusal(session: Session, client: Open311Client | None, exc: Open311Error, *, address: str,
                   now: datetime) -> None:
    """A1: a refused POST is an event too (its errors, never the values sent)."""
    audit.record(session, actor_of(client), "open311_refused", at=now, channel=Channel.WEB.value, data={
        "client": client.name if client else None, "address": address[:200], "status": exc.status,
        "errors": [description for _code, description in exc.errors][:20]})


__all__ = ["FORM", "Submission", "check", "create", "parse_form", "record_refusal", "service_notice", "title_of"]
