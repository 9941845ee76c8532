"""Users and the audit chain (A1). The unit assessment is in routers/assessment.py."""
from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path
from sqlalchemy import select

from callcenter import accounts
from callcenter.api.deps import ActorDep, DomainDep, SessionDep, commit, require_roles
from callcenter.api.schemas import (
    PasswordIn,
    RevokedOut,
    RoleIn,
    UnlockIn,
    UserIn,
    UserOut,
    VerifyOut,
)
from callcenter.auth import create_user
from ticketing import audit
from ticketing.enums import Role
from ticketing.errors import InvalidInput
from ticketing.models import User

router = APIRouter(tags=["administration"])
UsernamePath = Annotated[str, Path(min_length=1, max_length=64)]


def _user_out(u: User) -> UserOut:
    return UserOut(id=u.id, username=u.username, display_name=u.display_name, role=u.role,
                   unit_code=u.unit.code if u.unit else None, active=u.active, operator_extension=u.operator_extension,
                   unit_leader=bool(u.is_unit_leader))


@router.post("/users", response_model=UserOut, status_code=201)
def add_user(body: UserIn, actor: ActorDep, session: SessionDep, domain: DomainDep) -> UserOut:
    require_roles(actor, Role.ADMIN, rule="users", what="manage users")
    user = create_user(session, username=body.username, password=body.password, role=body.role,
                       display_name=body.display_name, unit_code=body.unit_code,
                       operator_extension=body.operator_extension, now=domain.clock(), created_by=actor,
                       password_min_length=domain.policy.accounts.password_min_length, unit_leader=body.unit_leader)
    commit(session)
    session.refresh(user)
    return _user_out(user)


def _admin_target(actor, session, username: str) -> User:
    require_roles(actor, Role.ADMIN, rule="users", what="manage users")
    return accounts.user_named(session, username)


@router.post("/users/{username}/disable", response_model=RevokedOut,
             summary="Disable a user: no more logins, every token revoked")
def disable_user(username: UsernamePath, actor: ActorDep, session: SessionDep, domain: DomainDep) -> RevokedOut:
    user = _admin_target(actor, session, username)
    if user.id == actor.user_id:
        raise InvalidInput("users", "an administrator may not disable their own account")
    count = accounts.set_active(session, actor, user, active=False, now=domain.clock())
    commit(session)
    return RevokedOut(username=username, tokens_revoked=count)


@router.post("/users/{username}/enable", response_model=UserOut, summary="Let a disabled user log in again")
def enable_user(username: UsernamePath, actor: ActorDep, session: SessionDep, domain: DomainDep) -> UserOut:
    user = _admin_target(actor, session, username)
    accounts.set_active(session, actor, user, active=True, now=domain.clock())
    commit(session)
    return _user_out(user)


@router.post("/users/{username}/password", response_model=RevokedOut,
             summary="Set a user's password (password rules apply); every token of the user is revoked")
def set_user_password(username: UsernamePath, body: PasswordIn, actor: ActorDep, session: SessionDep,
                      domain: DomainDep) -> RevokedOut:
    user = _admin_target(actor, session, username)
    count = accounts.set_password(session, actor, user, body.password, policy=domain.policy, now=domain.clock())
    commit(session)
    return RevokedOut(username=username, tokens_revoked=count)


@router.post("/users/{username}/role", response_model=RevokedOut,
             summary="Move a user to another role (and member unit); every token of the user is revoked")
def set_user_role(username: UsernamePath, body: RoleIn, actor: ActorDep, session: SessionDep,
                  domain: DomainDep) -> RevokedOut:
    user = _admin_target(actor, session, username)
    if user.id == actor.user_id:
        raise InvalidInput("users", "an administrator may not change their own role")
    count = accounts.set_role(session, actor, user, body.role, unit_code=body.unit_code, now=domain.clock(),
                              unit_leader=body.unit_leader)
    commit(session)
    return RevokedOut(username=username, tokens_revoked=count)


@router.post("/users/{username}/revoke-tokens", response_model=RevokedOut, summary="Revoke every token of a user")
def revoke_user_tokens(username: UsernamePath, actor: ActorDep, session: SessionDep, domain: DomainDep) -> RevokedOut:
    user = _admin_target(actor, session, username)
    count = accounts.revoke_all_tokens(session, actor, user, now=domain.clock(), reason="revoked by an administrator")
    commit(session)
    return RevokedOut(username=username, tokens_revoked=count)


@router.post("/users/{username}/unlock", status_code=204,
             summary="Lift a login lock of an account name (and, optionally, of a client address)")
def unlock_user(username: UsernamePath, actor: ActorDep, session: SessionDep, domain: DomainDep,
                body: UnlockIn | None = None) -> None:
    require_roles(actor, Role.ADMIN, rule="users", what="manage users")
    accounts.unlock(session, actor, username=username, address=body.address if body else None, now=domain.clock())
    commit(session)


@router.get("/users", response_model=list[UserOut])
def list_users(actor: ActorDep, session: SessionDep) -> list[UserOut]:
    require_roles(actor, Role.ADMIN, Role.BACK_OFFICE, Role.SUPERVISOR, rule="users", what="list users")
    return [_user_out(u) for u in session.execute(select(User).order_by(User.id)).scalars()]


@router.get("/audit/verify", response_model=VerifyOut, summary="A1: check the whole event chain")
def verify_audit(actor: ActorDep, session: SessionDep) -> VerifyOut:
    require_roles(actor, Role.ADMIN, Role.SUPERVISOR, Role.BACK_OFFICE, rule="A1", what="verify the audit log")
    report = audit.verify(session)
    return VerifyOut(ok=report.ok, checked=report.checked, problems=report.problems)

