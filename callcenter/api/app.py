"""The FastAPI application: /api/v1 routers, error mapping, request size limit."""
from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import Engine
from sqlalchemy.orm.exc import StaleDataError

from callcenter.settings import Settings, get_settings
from ticketing.calendar import CalendarError
from ticketing.domain import Domain
from ticketing.errors import DomainError
from ticketing.store import make_engine, make_session_factory

log = logging.getLogger("callcenter.api")
MAX_BODY_BYTES = 256 * 1024


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:10]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{loc or 'body'}: {err.get('msg')}")
    return "; ".join(parts)


def create_app(settings: Settings | None = None, *, domain: Domain | None = None, engine: Engine | None = None) -> FastAPI:
    settings = settings or get_settings()
    domain = domain or Domain.load(settings.config_dir)
    engine = engine or make_engine(settings.effective_database_url)

    app = FastAPI(
        title="12345 hotline",
        version="0.1.0",
        description="Cases, work orders and member units of a 12345 government public-service hotline.",
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.domain = domain
    app.state.engine = engine
    app.state.session_factory = make_session_factory(engine)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY_BYTES):
            return JSONResponse(status_code=413, content={
                "error": "too_large", "detail": f"request bodies are limited to {MAX_BODY_BYTES // 1024} KiB"})
        return await call_next(request)

    @app.exception_handler(DomainError)
    async def domain_error(_request: Request, exc: DomainError):
        return JSONResponse(status_code=exc.status_code, content={"error": exc.rule, "detail": exc.message})

    @app.exception_handler(StaleDataError)
    async def stale(_request: Request, _exc: StaleDataError):
        return JSONResponse(status_code=409, content={"error": "concurrent_update",
                                                      "detail": "the case was changed by someone else; reload and try again"})

    @app.exception_handler(CalendarError)
    async def calendar_error(_request: Request, exc: CalendarError):
        log.error("calendar: %s", exc)
        return JSONResponse(status_code=503, content={"error": "T1", "detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def invalid(_request: Request, exc: RequestValidationError):
        return JSONResponse(status_code=422, content={"error": "invalid_input", "detail": _validation_message(exc)})

    from callcenter.api.routers import admin, auth, cases, public, units, work_orders

    for module in (auth, cases, work_orders, units, admin):
        app.include_router(module.router, prefix="/api/v1")
    app.include_router(public.router)

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict:
        return {"ok": True}

    return app
