"""The GeoReport v2 routes under /open311/v2/ (wiki.open311.org/GeoReport_v2; Service Discovery:
wiki.open311.org/Service_Discovery). Each resource ends in its format, `.xml` or `.json`; every
refusal is the spec's error list (formats.py), never the /api/v1 body. One jurisdiction is served,
so `jurisdiction_id` is taken and ignored (the spec: optional when an endpoint serves one).
No route needs a login; POST needs a registered client's api_key."""
from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from callcenter.api.deps import DomainDep, SessionDep
from callcenter.open311 import clients, listing, submit
from callcenter.open311.formats import (
    Open311Error,
    openapi_responses,
    parse_format,
    refuse,
    render,
    render_error,
)
from callcenter.open311.services import catalogue, service_named
from ticketing.errors import DomainError

log = logging.getLogger("callcenter.open311")
PREFIX = "/open311/v2"
SPECIFICATION = "http://wiki.open311.org/GeoReport_v2"
router = APIRouter(prefix=PREFIX, tags=["open311"])

_LIST = {"type": "array", "items": {"type": "object"}}
_OBJECT = {"type": "object"}
# POST's form, for the API docs and the schema fuzz (tests/test_api_fuzz.py); checked in submit.py.
_FORM_FIELDS = ("api_key", "jurisdiction_id", "service_code", "lat", "long", "address_string", "address_id",
                "email", "device_id", "account_id", "first_name", "last_name", "phone", "description", "media_url")
_POST_BODY = {"requestBody": {"required": True, "content": {submit.FORM: {"schema": {
    "type": "object", "properties": {name: {"type": "string"} for name in _FORM_FIELDS},
    "additionalProperties": {"type": "string"}}}}}}


def _answer(fmt: str, build) -> Response:
    """`build()` rendered as `fmt` (root element, value), or its Open311Error as the spec's errors."""
    try:
        fmt = parse_format(fmt)
        root, value = build(fmt)
        return render(fmt, root, value)
    except Open311Error as exc:
        return render_error(fmt, exc)


def _changeset(request: Request) -> str:
    """When the service list last changed: the categories file's time (sortable, local)."""
    domain = request.app.state.domain
    config_dir = domain.config_dir or Path(request.app.state.settings.config_dir)
    try:
        stamp = (Path(config_dir) / "categories.yaml").stat().st_mtime
    except OSError:
        return "2026-12-07 00:00"
    return datetime.fromtimestamp(stamp, domain.calendar.tz).strftime("%Y-%m-%d %H:%M")


@router.get("/discovery.{fmt}", summary="Service discovery (Open311)", responses=openapi_responses(_OBJECT))
def discovery(fmt: str, request: Request) -> Response:
    def build(_fmt):
        changeset = _changeset(request)
        url = str(request.base_url).rstrip("/") + PREFIX
        return "discovery", {
            "changeset": changeset,
            "contact": "12345政府公共服务热线（拨打 12345）",
            "key_service": "api_key 由热线管理员发放：callcenter open311 add-client NAME",
            "endpoints": [{"specification": SPECIFICATION, "url": url, "changeset": changeset, "type": "production",
                           "formats": ["text/xml", "application/json"]}]}
    return _answer(fmt, build)


@router.get("/services.{fmt}", summary="GeoReport v2: the service list (the city's categories)",
            responses=openapi_responses(_LIST))
def services(fmt: str, domain: DomainDep, jurisdiction_id: str | None = None) -> Response:
    return _answer(fmt, lambda _fmt: ("services", [s.row() for s in catalogue(domain).values()]))


@router.get("/services/{service_code}.{fmt}", summary="GeoReport v2: a service definition (its attributes)",
            responses=openapi_responses(_OBJECT))
def service_definition(service_code: str, fmt: str, domain: DomainDep, jurisdiction_id: str | None = None) -> Response:
    return _answer(fmt, lambda _fmt: ("service_definition", service_named(domain, service_code).definition()))


@router.get("/tokens/{token}.{fmt}", summary="GeoReport v2: service_request_id from a token",
            responses=openapi_responses(_LIST))
def token(token: str, fmt: str, jurisdiction_id: str | None = None) -> Response:
    # Every service is realtime: POST answers with the service_request_id, never a token (the spec:
    # one or the other), so no token exists to be looked up.
    def build(_fmt):
        raise refuse(404, "token not found: this endpoint's services are realtime and answer with a "
                          "service_request_id, never a token")
    return _answer(fmt, build)


@router.get("/requests.{fmt}", summary="GeoReport v2: service requests (no personal data, no R7.3c case)",
            responses=openapi_responses(_LIST))
def requests(fmt: str, session: SessionDep, domain: DomainDep, service_request_id: str | None = None,
             service_code: str | None = None, start_date: str | None = None, end_date: str | None = None,
             status: str | None = None, jurisdiction_id: str | None = None) -> Response:
    def build(_fmt):
        rows = listing.find(session, domain, ids=service_request_id, service_code=service_code,
                            start_date=start_date, end_date=end_date, status=status)
        return "service_requests", [listing.request_row(case, record, domain) for case, record in rows]
    return _answer(fmt, build)


@router.get("/requests/{service_request_id}.{fmt}", summary="GeoReport v2: one service request",
            responses=openapi_responses(_LIST))
def one_request(service_request_id: str, fmt: str, session: SessionDep, domain: DomainDep,
                jurisdiction_id: str | None = None) -> Response:
    def build(_fmt):
        case, record = listing.find_one(session, domain, service_request_id)
        return "service_requests", [listing.request_row(case, record, domain)]
    return _answer(fmt, build)


def _post(fmt: str, body: bytes, content_type: str | None, address: str, session, domain) -> Response:
    """POST requests: the api_key and the rate limit first (each refusal audited, A1), then the
    request's checks, then the case (submit.py). Answered in `fmt` or, for an unknown one, in XML."""
    now = domain.clock()
    client = None
    try:
        fmt = parse_format(fmt)
        form = submit.parse_form(body, content_type)
        client = clients.client_for_key(session, submit.field(form, "api_key"))
        if client is None:
            raise refuse(403, "api_key missing or invalid: can't proceed with create request")
        retry = clients.take_slot(client, now)
        if retry is not None:
            raise refuse(429, f"rate limit of {client.rate_limit_per_minute} requests per minute used up; "
                              f"try again in {retry} s", headers={"Retry-After": str(retry)})
        session.commit()  # the request counts against the limit whatever follows
        case = submit.create(session, domain, client, submit.check(domain, form), now=now)
        # account_id: the hotline keeps no citizen accounts (the client's own id is stored, not returned)
        answer = [{"service_request_id": case.number, "service_notice": submit.service_notice(domain, case),
                   "account_id": None}]
        session.commit()
    except Open311Error as exc:
        session.rollback()
        _refused(session, client, exc, address, now)
        return render_error(fmt, exc)
    except DomainError as exc:  # a rule of the intake workflow: the spec's general 400
        session.rollback()
        refusal = refuse(400, exc.message)
        _refused(session, client, refusal, address, now)
        return render_error(fmt, refusal)
    log.info("open311: client %s created case %s", client.name, case.number)
    return render(fmt, "service_requests", answer)


def _refused(session, client, exc: Open311Error, address: str, now) -> None:
    submit.record_refusal(session, client, exc, address=address, now=now)
    session.commit()


@router.post("/requests.{fmt}", summary="GeoReport v2: create a service request (form-encoded, api_key)",
             responses=openapi_responses(_LIST, 403, 429), openapi_extra=_POST_BODY)
async def create_request(fmt: str, request: Request, session: SessionDep, domain: DomainDep) -> Response:
    body = await request.body()
    address = request.client.host if request.client else "unknown"
    return await run_in_threadpool(_post, fmt, body, request.headers.get("content-type"), address, session, domain)
