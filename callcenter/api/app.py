"""The FastAPI application: /api/v1 routers, error mapping, request size limit, security headers."""
from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.exc import DataError, OperationalError
from sqlalchemy.orm.exc import StaleDataError

from callcenter.api import errors
from callcenter.api.schemas import ErrorOut
from callcenter.api.security import SecurityHeaders, install_docs
from callcenter.audit_vault import install as install_audit_vault
from callcenter.ops.metrics import install as install_metrics
from callcenter.settings import Settings, get_settings
from ticketing.calendar import CalendarError, CalendarUnknownYear
from ticketing.domain import Domain
from ticketing.store import make_session_factory, session_scope

log = logging.getLogger("callcenter.api")
MAX_BODY_BYTES = 256 * 1024
REFUSALS = {401: "Not logged in, or the token is unknown, expired or revoked", 403: "The role may not do this",
            404: "Not found", 409: "Refused by a rule, or the case changed meanwhile", 410: "Gone",
            413: "Request body too large", 422: "Invalid input, naming the field",
            502: "The telephone system failed the action", 503: "A service this needs is unavailable"}


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        if err.get("type") == "json_invalid":
            loc = err.get("loc", ())
            where = f" at character {loc[-1]}" if len(loc) > 1 else ""
            reason = (err.get("ctx") or {}).get("error", "")
            parts.append(f"body: malformed JSON{where}" + (f" ({reason})" if reason else ""))
            continue
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts)


class BodyLimit:
    """413 for bodies over the limit, declared (Content-Length) or streamed (chunked).

    A chunked body has no length to check up front, so it is read here, at most the limit,
    before the application sees it: an oversized one is never buffered whole.
    """

    def __init__(self, app, max_bytes: int = MAX_BODY_BYTES, larger: dict[str, int] | None = None):
        self.app = app
        self.max_bytes = max_bytes
        self.larger = larger or {}  # paths that take more (the portal's photo)

    async def _reject(self, scope, receive, send, limit: int) -> None:
        response = JSONResponse(status_code=413, content={
            "error": "too_large", "detail": f"request bodies are limited to {limit // 1024} KiB"})
        await response(scope, receive, send)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.larger.get(scope.get("path", ""), self.max_bytes)
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit() or int(length) > limit:
                await self._reject(scope, receive, send, limit)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await self._reject(scope, receive, send, limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay():
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _correct_provisional_deadlines(domain: Domain, engine: Engine) -> None:
    """T1: deadlines counted provisionally are counted again at start (a chinesecalendar or an
    override file that learnt a year since); a failure is logged, never stops the API."""
    from ticketing.deadline_correction import correct_deadlines_if_calendar_changed

    try:
        with session_scope(make_session_factory(engine)) as session:
            correct_deadlines_if_calendar_changed(session, domain)
    except Exception:  # noqa: BLE001 - the scheduler's sweep tries again
        log.exception("calendar: provisional deadlines not counted again at start")


def create_app(settings: Settings | None = None, *, domain: Domain | None = None, engine: Engine | None = None,
               callcontrol=None, background: Sequence = ()) -> FastAPI:
    """``callcontrol``: a ``callcenter.callcontrol.CallControl`` when this process runs the telephone
    link (started and stopped with the app; the API comes up even while Asterisk is down). Without
    it the operator/queue endpoints answer 503. ``background``: services with async start()/stop()
    run for the app's lifetime (the callback scheduler)."""
    settings = settings or get_settings()
    install_audit_vault(settings.state_dir)  # A1: the audit key and checkpoints of this install
    domain = domain or Domain.load(settings.config_dir)
    engine = engine or settings.store_engine()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI):
        await asyncio.to_thread(_correct_provisional_deadlines, domain, engine)
        if callcontrol is not None and not callcontrol.link.ami.connected:
            await callcontrol.start(wait=False)
        started = []
        if settings.twilio_account_sid and settings.twilio_public_url:
            from callcenter.twilio.restore import restore_at_start

            await restore_at_start(_app)  # calls carried by Twilio across a restart (callcenter/twilio/restore.py)
        try:
            for service in background:
                await service.start()
                started.append(service)
            yield
        finally:
            for service in reversed(started):
                await service.stop()
            if callcontrol is not None:
                await callcontrol.stop()
            from callcenter.twilio.wiring import close as close_twilio

            await close_twilio(_app)  # the Twilio voice menu's database connections, if it ran

    app = FastAPI(
        lifespan=lifespan,
        title="12345 hotline",
        version="0.1.0",
        description="Cases, work orders and member units of a 12345 government public-service hotline.",
        openapi_url="/openapi.json",
        docs_url=None,  # FastAPI's own pages load Swagger UI and ReDoc from a CDN: security.install_docs
        redoc_url=None,
        # The schema says what a refusal looks like (not FastAPI's default 422 body): clients and
        # the schema-driven fuzz test (tests/test_api_fuzz.py) hold every answer to it.
        responses={status: {"model": ErrorOut, "description": why} for status, why in REFUSALS.items()},
    )
    app.state.settings = settings
    app.state.domain = domain
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)
    app.state.callcontrol = callcontrol
    app.state.background = tuple(background)  # the readiness and metrics read the scheduler's state

    from callcenter.portal import intake as portal_intake
    from callcenter.portal.router import SUBMIT_PATH as PORTAL_SUBMIT

    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES,
                       larger={PORTAL_SUBMIT: portal_intake.body_limit(domain)})
    app.add_middleware(SecurityHeaders)  # around BodyLimit: also on 413s and error answers
    install_docs(app)
    install_metrics(app)  # outermost: times every answer (413s and errors too), changes none

    errors.install(app)  # domain and application errors: kind -> status

    @app.exception_handler(StaleDataError)
    async def stale(_request: Request, _exc: StaleDataError):
        return JSONResponse(status_code=409, content={"error": "concurrent_update",
                                                      "detail": "the case was changed by someone else; reload and try again"})

    @app.exception_handler(DataError)
    async def unstorable(_request: Request, exc: DataError):
        # A value the database refuses (out-of-range number, NUL byte in a path or query): the
        # caller's input, not a server fault. The driver's message stays in the log.
        log.warning("store refused a value: %s", exc.orig)
        return JSONResponse(status_code=422, content={"error": "invalid_input",
                                                      "detail": "a value in the request cannot be stored or searched for"})

    @app.exception_handler(OperationalError)
    async def store_unavailable(_request: Request, exc: OperationalError):
        # The store refused or stopped answering (restart, partition: its deadlines end the wait,
        # callcenter/settings.py): the request may be tried again, nothing half-done was kept.
        log.warning("store unavailable: %s", type(exc.orig).__name__)
        return JSONResponse(status_code=503, content={"error": "store_unavailable",
                                                      "detail": "the database is not reachable; try again shortly"})

    @app.exception_handler(CalendarError)
    async def calendar_error(_request: Request, exc: CalendarError):
        log.error("calendar: %s", exc)
        if isinstance(exc, CalendarUnknownYear):
            # Outside every calendar, statutory included: say so without the server's paths.
            return JSONResponse(status_code=503, content={"error": "T1", "year": exc.year, "detail": (
                f"a deadline of this action falls in {exc.year}, for which no working-day calendar "
                f"exists, so it cannot be counted (T1). Nothing was changed.")})
        return JSONResponse(status_code=503, content={"error": "T1", "detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"error": "invalid_input", "detail": _validation_message(exc)})

    from callcenter.api.routers import (
        admin,
        approvals,
        assessment,
        attachments,
        auth,
        board,
        calendar,
        cases,
        exports,
        health,
        hot_topics,
        inquiries,
        knowledge,
        missed_calls,
        notifications,
        operators,
        phone,
        public,
        repeats,
        stats,
        supervise,
        units,
        work_orders,
    )
    from callcenter.api.routers import calls as call_control

    for module in (auth, cases, attachments, repeats, missed_calls, work_orders, approvals, units, knowledge, admin,
                   calendar, call_control, operators, phone, supervise, inquiries, assessment, stats, board, exports,
                   hot_topics, notifications):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(public.router)
    app.include_router(knowledge.public_router)  # the public FAQ beside the published cases
    app.include_router(hot_topics.public_router)  # public answers to hot topics (R7.6)
    from callcenter.open311.router import router as open311_router

    app.include_router(open311_router)  # /open311/v2/: GeoReport v2 (issue 14 item 2)
    from callcenter.portal.router import router as portal_router

    app.include_router(portal_router)  # / and /api/v1/portal: the citizen web portal (issue 14 item 1)
    app.include_router(health.router)  # /healthz, /readyz, /metrics
    from callcenter import web

    app.include_router(web.router)  # the staff console: /app pages and their helper endpoints
    from callcenter.twilio.webhooks import router as twilio_router

    app.include_router(twilio_router)  # Twilio's signed webhooks (callcenter/twilio/)

    return app
