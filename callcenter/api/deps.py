"""Dependencies: one database session per request, the current user from a bearer token, role checks."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from callcenter.auth import actor_of, resolve_token
from ticketing.audit import Actor
from ticketing.domain import Domain
from ticketing.enums import Role
from ticketing.errors import Conflict, DomainError, Forbidden
from ticketing.workflow import Workflow


class Unauthorized(DomainError):
    status_code = 401

    def __init__(self, message: str = "log in first: send 'Authorization: Bearer <token>'"):
        super().__init__("unauthorized", message)


def get_domain(request: Request) -> Domain:
    return request.app.state.domain


def get_session(request: Request) -> Iterator[Session]:
    session = request.app.state.session_factory()
    try:
        yield session
    finally:
        session.rollback()  # anything not committed explicitly is dropped
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]
# Row ids in paths: bounded to the store's 32-bit integer keys, so a huge id is a 422, not a driver overflow.
IdPath = Annotated[int, Path(ge=1, le=2_147_483_647)]
DomainDep = Annotated[Domain, Depends(get_domain)]


def get_actor(session: SessionDep, domain: DomainDep, authorization: Annotated[str | None, Header()] = None) -> Actor:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized()
    user = resolve_token(session, authorization.split(" ", 1)[1].strip(), now=domain.clock())
    if user is None:
        raise Unauthorized("the token is unknown, expired or revoked; log in again")
    # Held for the request: the session's identity map is weak, and without this every later
    # look-up of the acting user (a case's owner, a work order's dispatcher) is another query.
    session.info["user"] = user
    return actor_of(user)


ActorDep = Annotated[Actor, Depends(get_actor)]


def get_workflow(session: SessionDep, domain: DomainDep) -> Workflow:
    return domain.workflow(session)


WorkflowDep = Annotated[Workflow, Depends(get_workflow)]


def require_roles(actor: Actor, *roles: Role, rule: str = "roles", what: str = "do this") -> None:
    if actor.role not in {r.value for r in roles}:
        raise Forbidden(rule, f"a {actor.role} may not {what}")


def commit(session: Session) -> None:
    """Commit the unit of work; a lost race becomes 409, never a half-written case."""
    try:
        session.commit()
    except StaleDataError as exc:
        session.rollback()
        raise Conflict() from exc
    except IntegrityError as exc:
        session.rollback()
        raise Conflict("the change collides with one made at the same moment; reload and try again") from exc
