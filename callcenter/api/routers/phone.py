"""The operator's phone account (issue 17 item 1): which phone the logged-in operator answers on
(config/operators.yaml ``phone``) and, for the console's browser phone, the SIP credentials and the
secure WebSocket it registers over. Only the operator themself gets their password, never cached.
It needs no telephone link in this process: the account is the install's (state directory).
"""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from callcenter.api.deps import ActorDep, SessionDep
from callcenter.api.routers.operators import operator_user
from callcenter.errors import NOT_FOUND, UNAVAILABLE, AppError
from callcenter.pbx.credentials import sip_passwords
from callcenter.pbx.names import operator_endpoint
from callcenter.pbx.render import load_operators
from callcenter.pbx.root import ProvisionError
from callcenter.pbx.tls import fingerprint
from callcenter.settings import Settings

router = APIRouter(tags=["operators"])


class NotProvisioned(AppError):
    kind = NOT_FOUND

    def __init__(self, extension: str) -> None:
        super().__init__("phone_not_provisioned", f"extension {extension} is not in config/operators.yaml: an "
                                                  "administrator adds it and runs `callcenter asterisk install`")


class NotInstalled(AppError):
    kind = UNAVAILABLE

    def __init__(self) -> None:
        super().__init__("phone_not_installed", "the phone accounts are not installed yet: an administrator runs "
                                                "`callcenter asterisk install`")


class PhoneAccount(BaseModel):
    extension: str
    endpoint: str  # the SIP user name, e.g. op8001
    phone: Literal["softphone", "browser"]
    # browser phone only (null for a softphone, which is configured by the administrator)
    password: str | None = None
    ws_url: str | None = None  # wss://host:port/ws
    certificate_sha256: str | None = None  # to compare when the browser asks to trust the certificate


def ws_url(settings: Settings, hostname: str | None) -> str:
    """Where the browser phone connects: the setting, else Asterisk's wss port on the console's host."""
    if settings.wss_url:
        return settings.wss_url
    host = hostname or settings.wss_host
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    return f"wss://{host}:{int(settings.wss_port)}/ws"


@router.get("/operators/me/phone", response_model=PhoneAccount,
            summary="The operator's own phone account: softphone, or the browser phone's SIP credentials")
def my_phone(request: Request, response: Response, session: SessionDep, actor: ActorDep) -> PhoneAccount:
    extension = operator_user(session, actor).operator_extension
    session.rollback()
    settings: Settings = request.app.state.settings
    response.headers["Cache-Control"] = "no-store"
    try:
        operator = next((op for op in load_operators(settings) if op.id == extension), None)
    except ProvisionError:
        raise NotInstalled() from None
    if operator is None:
        raise NotProvisioned(extension)
    account = PhoneAccount(extension=extension, endpoint=operator_endpoint(extension), phone=operator.phone)
    if operator.phone == "browser":
        password = sip_passwords(settings).get(account.endpoint)
        if not password:
            raise NotInstalled()
        account.password = password
        account.ws_url = ws_url(settings, request.url.hostname)
        account.certificate_sha256 = fingerprint(settings)
    return account
