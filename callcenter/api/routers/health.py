"""Liveness, readiness and metrics for the machine's supervisor and Prometheus (issue 19 item 2).

- ``/healthz``: the process answers (no auth, nothing else checked, nothing personal).
- ``/readyz``: every readiness check (callcenter/ops/health.py); 200 or 503 naming the failing ones.
- ``/metrics``: Prometheus text (callcenter/ops/metrics.py), for a scraper on this machine
  (client 127.0.0.1 or ::1) or with an admin's bearer token; anyone else 403.
"""
from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from callcenter.auth import resolve_token
from callcenter.ops.health import readiness, readiness_report
from callcenter.ops.metrics import scrape
from ticketing.enums import Role

router = APIRouter(include_in_schema=False)
LOCAL_CLIENTS = frozenset({"127.0.0.1", "::1"})


@router.get("/healthz")
async def healthz() -> dict:
    return {"ok": True}


@router.get("/readyz")
async def readyz(request: Request) -> JSONResponse:
    report = readiness_report(await asyncio.to_thread(readiness, request.app))
    return JSONResponse(status_code=200 if report["ready"] else 503, content=report)


def _admin_token(app, authorization: str | None) -> bool:
    if not authorization or not authorization.lower().startswith("bearer "):
        return False
    with app.state.session_factory() as session:
        actor = resolve_token(session, authorization.split(" ", 1)[1].strip(), now=app.state.domain.clock())
    return actor is not None and actor.role == Role.ADMIN.value


@router.get("/metrics")
async def metrics(request: Request, authorization: Annotated[str | None, Header()] = None) -> Response:
    local = request.client is not None and request.client.host in LOCAL_CLIENTS
    if not local and not await asyncio.to_thread(_admin_token, request.app, authorization):
        return JSONResponse(status_code=403, content={
            "error": "forbidden", "detail": "metrics are for this machine or an administrator's token"})
    return Response(await scrape(request.app), media_type=CONTENT_TYPE_LATEST)
