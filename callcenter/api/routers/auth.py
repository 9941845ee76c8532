from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter, Header, Request

from callcenter.api.deps import ActorDep, DomainDep, SessionDep, Unauthorized, commit
from callcenter.api.schemas import LoginIn, TokenOut, UserOut
from callcenter.auth import authenticate, issue_token, revoke_token
from ticketing import audit
from ticketing.models import User

router = APIRouter(prefix="/auth", tags=["auth"])


@router.post("/token", response_model=TokenOut, summary="Log in with username and password; get a bearer token")
def login(body: LoginIn, session: SessionDep, domain: DomainDep, request: Request) -> TokenOut:
    user = authenticate(session, body.username, body.password)
    if user is None:
        raise Unauthorized("wrong username or password")
    now = domain.clock()
    token, expires = issue_token(session, user, now=now, ttl=timedelta(hours=request.app.state.settings.token_ttl_hours))
    commit(session)
    return TokenOut(access_token=token, expires_at=expires, username=user.username, role=user.role,
                    unit_code=user.unit.code if user.unit else None)


@router.post("/logout", status_code=204, summary="Revoke the token in use")
def logout(actor: ActorDep, session: SessionDep, authorization: str = Header()) -> None:
    revoke_token(session, authorization.split(" ", 1)[1].strip())
    commit(session)


@router.get("/me", response_model=UserOut)
def me(actor: ActorDep, session: SessionDep) -> UserOut:
    user = session.get(User, actor.user_id)
    return UserOut(id=user.id, username=user.username, display_name=user.display_name, role=user.role,
                   unit_code=user.unit.code if user.unit else None, active=user.active,
                   operator_extension=user.operator_extension)


__all__ = ["router", "audit"]
