"""GET requests and GET requests/{id}: cases as GeoReport v2 service requests, for anyone (the
spec asks no api_key to read), so only what the public may know of a case is returned.

Listed: every case of any channel except R7.3c reports (ticketing.open311.listed_cases), so a citizen can
follow a case number given on the phone too. Returned: its number, service, open/closed with notes
on where it is in the procedure (ticketing.open311.open311_status), the units handling it (public
bodies), request, update and expected (R8.3 deadline) times; the description and the answer only as
the back office reviewed and published them (R7.6: public_summary, public_answer). Never returned:
the citizen's name, phone, e-mail, device or account id (personal data), the text of an unpublished
case (a caller's words often name people and doors), the media_url (a photo no one reviewed), the
address_id (it points at a door). Of a request an Open311 client sent: its address_string when
ticketing.privacy finds nothing personal in it (no house number, name or phone), and lat/long
rounded to 3 decimals (about 100 m): where the problem is, not whose door.

The spec's query (wiki.open311.org/GeoReport_v2, "GET Service Requests"): `service_request_id`
(comma-separated; overrides every other argument), `service_code` (comma-separated), `start_date`
and `end_date` (w3 date-times on requested_datetime, at most 90 days apart; missing ones give the
most recent 90 days), `status` (open, closed; comma-separated). At most 1000 requests, newest first.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from callcenter.open311.formats import echo, refuse, w3
from ticketing.domain import Domain
from ticketing.enums import WorkOrderRole, WorkOrderStatus
from ticketing.models import Case, WorkOrder
from ticketing.numbering import normalize_case_number
from ticketing.open311 import CLOSED_STATUSES, listed_cases, open311_status
from ticketing.open311_model import Open311Request
from ticketing.privacy import find_personal_data

WINDOW = timedelta(days=90)
MAX_REQUESTS = 1000
COORDINATE_DECIMALS = 3
_GONE = (WorkOrderStatus.CANCELLED, WorkOrderStatus.RETURNED)


def _items(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def parse_when(text: str, name: str, tz) -> datetime:
    """A w3 date-time with its zone (2026-03-01T00:00:00Z); a date alone is local midnight."""
    try:
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            if len(text) != 10:
                raise refuse(400, f"{name} must carry its time zone (Z or an offset such as +08:00)")
            moment = moment.replace(tzinfo=tz)
        return moment.astimezone(tz)
    except (ValueError, OverflowError):
        raise refuse(400, f"{name} must be a w3 date-time such as 2026-03-01T00:00:00+08:00") from None


def window(start_date: str | None, end_date: str | None, *, now: datetime, tz) -> tuple[datetime, datetime]:
    start = parse_when(start_date, "start_date", tz) if start_date else None
    end = parse_when(end_date, "end_date", tz) if end_date else None
    if start is not None and end is not None:
        if end < start:
            raise refuse(400, "end_date is before start_date")
        if end - start > WINDOW:
            raise refuse(400, "start_date and end_date may not span more than 90 days")
        return start, end
    if start is not None:
        return start, start + WINDOW
    if end is not None:
        return end - WINDOW, end
    return now - WINDOW, now


def find(session: Session, domain: Domain, *, ids: str | None = None, service_code: str | None = None,
         start_date: str | None = None, end_date: str | None = None, status: str | None = None,
         ) -> list[tuple[Case, Open311Request | None]]:
    """The cases the query names, with their Open311 record where they have one."""
    stmt = listed_cases(select(Case, Open311Request).outerjoin(Open311Request, Open311Request.case_id == Case.id)
                        .options(selectinload(Case.work_orders).selectinload(WorkOrder.unit)))
    numbers = _items(ids)
    if numbers:
        if len(numbers) > MAX_REQUESTS:
            raise refuse(400, f"at most {MAX_REQUESTS} service_request_id at once")
        stmt = stmt.where(Case.number.in_({n for n in map(normalize_case_number, numbers) if n}))
    else:
        statuses = set(_items(status))
        if statuses - {"open", "closed"}:
            raise refuse(400, "status takes open, closed, or both comma-separated")
        start, end = window(start_date, end_date, now=domain.clock(), tz=domain.calendar.tz)
        stmt = stmt.where(Case.accepted_at >= start, Case.accepted_at <= end)
        codes = _items(service_code)
        if codes:
            stmt = stmt.where(Case.category_code.in_(codes))
        if statuses == {"open"}:
            stmt = stmt.where(Case.status.not_in(CLOSED_STATUSES))
        elif statuses == {"closed"}:
            stmt = stmt.where(Case.status.in_(CLOSED_STATUSES))
    stmt = stmt.order_by(Case.accepted_at.desc(), Case.id.desc()).limit(MAX_REQUESTS)
    return [(case, record) for case, record in session.execute(stmt).all()]


def find_one(session: Session, domain: Domain, number: str) -> tuple[Case, Open311Request | None]:
    """GET requests/{id}: 404 for an unknown number and for an R7.3c case alike."""
    normalized = normalize_case_number(number)
    rows = find(session, domain, ids=normalized) if normalized else []
    if not rows:
        raise refuse(404, f"service_request_id '{echo(number, 40)}' was not found")
    return rows[0]


def _agencies(work_orders: Iterable[WorkOrder]) -> str | None:
    current = [wo for wo in work_orders if wo.status not in _GONE]
    current.sort(key=lambda wo: (wo.role != WorkOrderRole.LEAD, wo.id))
    names = list(dict.fromkeys(wo.unit.name for wo in current))
    return "、".join(names) or None


def public_address(record: Open311Request | None) -> str | None:
    """An Open311 address_string, unless it names a door, a person or a number (ticketing.privacy)."""
    place = record.address_string if record is not None else ""
    if not place or find_personal_data(place, location=place):
        return None
    return place


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, COORDINATE_DECIMALS)


def request_row(case: Case, record: Open311Request | None, domain: Domain) -> dict:
    """One service request as the public may read it (the spec's field order)."""
    tz = domain.calendar.tz
    status, notes = open311_status(case)
    published = case.published_at is not None
    if published and case.public_answer:
        notes = f"{notes}。答复：{case.public_answer}"
    category = domain.categories.get(case.category_code or "")
    return {
        "service_request_id": case.number,
        "status": status,
        "status_notes": notes,
        "service_name": category.name if category else None,
        "service_code": case.category_code,
        "description": case.public_summary if published else None,
        "agency_responsible": _agencies(case.work_orders),
        "service_notice": None,
        "requested_datetime": w3(case.accepted_at, tz),
        "updated_datetime": w3(case.closed_at if status == "closed" and case.closed_at else case.updated_at, tz),
        "expected_datetime": w3(case.deadline_at, tz),
        "address": public_address(record),
        "address_id": None,
        "zipcode": None,
        "lat": _rounded(record.lat if record else None),
        "long": _rounded(record.long if record else None),
        "media_url": None,
    }


__all__ = ["MAX_REQUESTS", "find", "find_one", "public_address", "request_row", "window"]
