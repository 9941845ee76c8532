"""Dependencies: one database session per request, the current user from a bearer token, role checks."""
from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Header, Path, Query, Request
from starlette.concurrency import run_in_threadpool
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from callcenter.auth import resolve_token
from callcenter.errors import UNAUTHENTICATED, AppError
from ticketing.audit import Actor
from ticketing.domain import Domain
from ticketing.enums import Role
from ticketing.errors import Conflict, Forbidden
from ticketing.workflow import Workflow


class Unauthorized(AppError):
    kind = UNAUTHENTICATED

    def __init__(self, message: str = "log in first: send 'Authorization: Bearer <token>'"):
        super().__init__("unauthorized", message)


# The cheap dependencies are `async def`: a sync one costs a hop to the thread pool and back on
# every request, for work that never waits.
async def get_domain(request: Request) -> Domain:
    return request.app.state.domain


def _discard(session: Session) -> None:
    session.rollback()  # anything not committed explicitly is dropped
    session.close()


async def get_session(request: Request) -> AsyncIterator[Session]:
    session = request.app.state.session_factory()  # no connection until first used
    try:
        yield session
    finally:
        if session.in_transaction():
            await run_in_threadpool(_discard, session)  # a round trip to the database: not on the loop
        else:
            session.close()  # committed (or never used): nothing to send


SessionDep = Annotated[Session, Depends(get_session)]
# Row ids in paths: bounded to the store's 32-bit integer keys, so a huge id is a 422, not a driver overflow.
IdPath = Annotated[int, Path(ge=1, le=2_147_483_647)]
# List offsets likewise: past 2**63 the driver overflows (a 500); no list is longer than a 32-bit key.
OffsetQuery = Annotated[int, Query(ge=0, le=2_147_483_647)]
DomainDep = Annotated[Domain, Depends(get_domain)]


def get_actor(session: SessionDep, domain: DomainDep, authorization: Annotated[str | None, Header()] = None) -> Actor:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized()
    actor = resolve_token(session, authorization.split(" ", 1)[1].strip(), now=domain.clock())
    if actor is None:
        raise Unauthorized("the token is unknown, expired or revoked; log in again")
    return actor


ActorDep = Annotated[Actor, Depends(get_actor)]


async def get_workflow(session: SessionDep, domain: DomainDep) -> Workflow:
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
