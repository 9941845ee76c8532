"""The portal's routes: the page at `/` (callcenter/web/portal.html) and its API under
/api/v1/portal. No login; every answer is about the procedure, never personal data. The number
and suffix travel in a POST body, not in a URL a log or a proxy keeps."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Request
from fastapi.responses import FileResponse
from starlette.concurrency import run_in_threadpool

from callcenter.api.deps import DomainDep, SessionDep, commit
from callcenter.api.schemas import ErrorOut
from callcenter.open311.submit import service_notice
from callcenter.portal import intake, progress
from callcenter.portal.forms import (
    PortalCatalogue,
    PortalReceipt,
    PortalRequestIn,
    ProgressIn,
    ProgressOut,
    RatingIn,
)

PREFIX = "/api/v1/portal"
SUBMIT_PATH = f"{PREFIX}/requests"
THROTTLED = {429: {"model": ErrorOut, "description": "A portal limit (per address, phone or case number) is used up; see Retry-After"}}
router = APIRouter(tags=["portal"])


def _address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.get("/", include_in_schema=False)
def portal_page() -> FileResponse:
    from callcenter.web.pages import HERE, PAGE_HEADERS

    return FileResponse(HERE / "portal.html", media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get(f"{PREFIX}/catalogue", response_model=PortalCatalogue,
            summary="The city's categories a citizen may choose on the web (with their kinds), the photo limit")
def catalogue(domain: DomainDep) -> PortalCatalogue:
    return PortalCatalogue(photo_max_kb=domain.policy.portal.photo_max_kb, categories=intake.categories(domain))


def _submit(session, domain, form: PortalRequestIn, address: str, sms: bool) -> PortalReceipt:
    now = domain.clock()
    case = intake.submit(session, domain, form, address=address, now=now, confirm_by_sms=sms)
    commit(session)
    return PortalReceipt(number=case.number, notice=service_notice(domain, case))


@router.post(SUBMIT_PATH, response_model=PortalReceipt, status_code=201, responses=THROTTLED,
             summary="R7.1, R2.2: a citizen's request from the web becomes a case (channel web)")
async def submit(form: PortalRequestIn, request: Request, session: SessionDep, domain: DomainDep) -> PortalReceipt:
    from callcenter.callbacks import sms_configured  # the confirmation by SMS where it can go so

    return await run_in_threadpool(_submit, session, domain, form, _address(request),
                                   sms_configured(request.app.state.settings))


@router.post(f"{PREFIX}/progress", response_model=ProgressOut, responses=THROTTLED,
             summary="A case's progress by its number and the phone's last four digits")
def check_progress(asked: ProgressIn, request: Request, session: SessionDep, domain: DomainDep) -> ProgressOut:
    case = progress.open_case(session, domain, asked.number, asked.phone_suffix, address=_address(request),
                              now=domain.clock())
    shown = progress.view(case, domain)
    session.rollback()  # read only (the check's counters commit themselves)
    return shown


@router.post(f"{PREFIX}/rating", response_model=ProgressOut, responses=THROTTLED,
             summary="R7.4 by web: the citizen rates the reported answer, once")
def rate(asked: Annotated[RatingIn, Body()], request: Request, session: SessionDep, domain: DomainDep) -> ProgressOut:
    case = progress.open_case(session, domain, asked.number, asked.phone_suffix, address=_address(request),
                              now=domain.clock())
    progress.rate(session, domain, case, asked.satisfaction)
    commit(session)
    return progress.view(case, domain)


__all__ = ["PREFIX", "SUBMIT_PATH", "router"]
