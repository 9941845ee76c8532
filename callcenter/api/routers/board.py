"""The live wallboard (issue 12 item 4; R5.2 the back office supervises the front desk, R6.1 supervision):

    GET /api/v1/board          the board now (JSON)
    GET /api/v1/board/stream   server-sent events: the board first, then every change as it happens

Both for the back office and supervision only (others 403); without telephony in this process 503
(as the operators' endpoints). The state is callcenter.callcontrol.wallboard's; the stream is the
operators' SSE (event ``board`` with the whole state, ``link`` when the AMI link drops or returns,
a comment line every 15 s while idle, closed when the viewer goes).
"""
from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from callcenter.api.deps import ActorDep, SessionDep, require_roles
from callcenter.api.routers.operators import CallControlDep, _sse
from ticketing.audit import Actor
from ticketing.enums import Role

router = APIRouter(tags=["board"])

BOARD_ROLES = (Role.BACK_OFFICE, Role.SUPERVISOR)


def _board(actor: Actor, session, cc):
    require_roles(actor, *BOARD_ROLES, rule="R5.2", what="watch the wallboard (back office and supervision only)")
    session.rollback()  # the request's transaction (the token check) is not held while the board reads
    return cc.board


@router.get("/board", summary="The wallboard now: queue, operators, today's call figures, overdue work by unit")
async def board(actor: ActorDep, session: SessionDep, cc: CallControlDep) -> dict[str, Any]:
    return await _board(actor, session, cc).snapshot()


@router.get("/board/stream", summary="Server-sent events: the wallboard, again on every change")
async def board_stream(request: Request, actor: ActorDep, session: SessionDep, cc: CallControlDep,
                       limit: Annotated[int | None, Query(ge=1, le=10_000, description="close after this many events")]
                       = None) -> StreamingResponse:
    wallboard = _board(actor, session, cc)
    feed = wallboard.subscribe()
    try:
        first = {"type": "board", "state": await wallboard.snapshot()}
    except BaseException:
        feed.close()
        raise
    return _sse(request, feed, first, limit)
