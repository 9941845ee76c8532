"""The API's edge for refusals: each kind of domain or application error answers with one HTTP
status, and the body names the rule (or the application's code) and says why."""
from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from callcenter import errors as app_errors
from callcenter.errors import AppError
from ticketing import errors as domain
from ticketing.errors import DomainError

STATUS = {
    domain.REFUSED: 409,
    domain.CONFLICT: 409,
    domain.FORBIDDEN: 403,
    domain.NOT_FOUND: 404,
    domain.INVALID: 422,
    app_errors.UNAUTHENTICATED: 401,
    app_errors.GONE: 410,
    app_errors.UNAVAILABLE: 503,
    app_errors.OUTCOME_UNKNOWN: 503,
    app_errors.UPSTREAM_FAILED: 502,
    app_errors.THROTTLED: 429,
}


def status_of(exc: DomainError | AppError) -> int:
    return STATUS[exc.kind]


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def domain_error(_request: Request, exc: DomainError):
        return JSONResponse(status_code=status_of(exc), content={"error": exc.rule, "detail": exc.message})

    @app.exception_handler(AppError)
    async def app_error(_request: Request, exc: AppError):
        return JSONResponse(status_code=status_of(exc), content={"error": exc.code, "detail": exc.message},
                            headers=getattr(exc, "headers", None))


__all__ = ["STATUS", "install", "status_of"]
