"""Logging in and out, and changing one's own password (throttled and audited: callcenter.accounts)."""
from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Header, Request

from callcenter import accounts
from callcenter.api.deps import ActorDep, DomainDep, SessionDep, commit
from callcenter.api.schemas import LoginIn, OwnPasswordIn, TokenOut, UserOut
from callcenter.auth import check_credentials, issue_token
from ticketing.models import User

router = APIRouter(prefix="/auth", tags=["auth"])


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


@router.post("/token", response_model=TokenOut, summary="Log in with username and password; get a bearer token",
             responses={401: {"description": "wrong username or password"},
                        429: {"description": "too many failed logins: the account or the address is locked"}})
def login(body: LoginIn, session: SessionDep, domain: DomainDep, request: Request) -> TokenOut:
    now = domain.clock()
    outcome = accounts.login(session, domain.policy, username=body.username, password=body.password,
                             address=client_address(request), now=now)
    if outcome.refusal is not None:
        commit(session)  # the failure is counted and audited even though the login is refused
        raise outcome.refusal
    user = outcome.user
    token, expires = issue_token(session, user, now=now,
                                 ttl=timedelta(hours=request.app.state.settings.token_ttl_hours))
    commit(session)
    return TokenOut(access_token=token, expires_at=expires, username=user.username, role=user.role,
                    unit_code=user.unit.code if user.unit else None, unit_leader=bool(user.is_unit_leader))


@router.post("/logout", status_code=204, summary="Revoke the token in use")
def logout(actor: ActorDep, session: SessionDep, domain: DomainDep, authorization: str = Header()) -> None:
    accounts.logout(session, actor, authorization.split(" ", 1)[1].strip(), now=domain.clock())
    commit(session)


@router.post("/password", status_code=204,
             summary="Change one's own password; every token of the user is revoked (log in again)")
def change_own_password(body: OwnPasswordIn, actor: ActorDep, session: SessionDep, domain: DomainDep) -> None:
    user, _ = check_credentials(session, actor.name, body.current_password)
    if user is None or user.id != actor.user_id:
        raise accounts.LoginFailed("the current password is wrong")
    accounts.set_password(session, actor, user, body.new_password, policy=domain.policy, now=domain.clock())
    commit(session)


@router.get("/me", response_model=UserOut)
def me(actor: ActorDep, session: SessionDep) -> UserOut:
    user = session.get(User, actor.user_id)
    return UserOut(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                   unit_code=user.unit.code if user.unit else None, active=user.active,
                   operator_extension=user.operator_extension, unit_leader=bool(user.is_unit_leader))


__all__ = ["client_address", "router"]
