"""Security headers on every response, and the API's docs (Swagger UI, ReDoc) served from the
install: nothing a browser loads from this server comes from, or may be framed by, another origin.

Assets of the docs pages are the ones the `fastapi-offline` package ships (MIT). Its wheel has no
licence files for the Swagger UI (Apache-2.0) and ReDoc (MIT) bundles: ours, for the exact versions
bundled, are in static_licences/ and served at /docs/licences.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import re
from pathlib import Path

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, PlainTextResponse
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS = "/docs-assets"
DOCS_LICENCES = "/docs/licences"
_ASSET_DIR = Path(fastapi_offline.__file__).resolve().parent / "static"
LICENCE_DIR = Path(__file__).resolve().parent / "static_licences"

_COMMON = "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
# JSON and anything without its own policy: nothing may run or load from it.
DEFAULT_CSP = f"default-src 'none'; {_COMMON}"
# The public page (R7.6): its one inline <style>, no script at all.
PUBLIC_CSP = f"default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; {_COMMON}"

STATIC_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}


def _no_store(path: str) -> bool:
    """Responses that may carry personal data: the API and the console (not its static assets)."""
    return path.startswith("/api/") or (path.startswith("/app") and not path.startswith("/app/static/"))


class SecurityHeaders:
    """Pure ASGI (streams such as SSE pass through untouched): adds the headers a route did not
    set itself; `Cache-Control: no-store` always wins on personal data."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        no_store = _no_store(path)
        csp = PUBLIC_CSP if path == "/public" else DEFAULT_CSP

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if not (no_store and k.lower() == b"cache-control")]
                present = {k.lower() for k, _ in headers}
                for name, value in STATIC_HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.encode(), value.encode()))
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", csp.encode()))
                if no_store:
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _inline_script_hashes(html: str) -> str:
    """CSP sources for this page's own inline scripts (generated here, never from input)."""
    bodies = re.findall(r"<script>(.*?)</script>", html, flags=re.S)
    return " ".join("'sha256-" + base64.b64encode(hashlib.sha256(b.encode()).digest()).decode() + "'"
                    for b in bodies)


def install_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Swagger UI and ReDoc from the package's files; the app must be built with docs_url=None
    and redoc_url=None (FastAPI's own pages load them from a CDN)."""
    # The endpoints are module functions reading request.app, not closures over this app: FastAPI
    # caches what it learns of each endpoint function (up to 4,096), and a closure per app kept
    # every app ever built alive (gigabytes over the test suite).
    app.mount(DOCS_ASSETS, StaticFiles(directory=_ASSET_DIR), name="docs-assets")
    app.add_api_route(DOCS_LICENCES, _docs_licences, methods=["GET"], include_in_schema=False)
    app.mount(DOCS_LICENCES, StaticFiles(directory=LICENCE_DIR), name="docs-licences")
    app.add_api_route(docs_url, _swagger_ui, methods=["GET"], include_in_schema=False)
    app.add_api_route(redoc_url, _redoc, methods=["GET"], include_in_schema=False)


_FAVICON = f"{DOCS_ASSETS}/favicon.png"


def _docs_licences(request: Request) -> PlainTextResponse:
    root = request.scope.get("root_path", "")
    return PlainTextResponse("Licences of the Swagger UI and ReDoc bundles of /docs and /redoc:\n"
                             + "".join(f"{root}{DOCS_LICENCES}/{name}\n" for name in _licence_files()))


@functools.cache
def _licence_files() -> list[str]:
    """The licence files shipped with the package (read once, as install_docs did per app)."""
    return sorted(str(f.relative_to(LICENCE_DIR)) for f in LICENCE_DIR.rglob("*") if f.is_file())


def _swagger_ui(request: Request) -> HTMLResponse:
    root, app = request.scope.get("root_path", ""), request.app
    page = get_swagger_ui_html(
        openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - Swagger UI",
        swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css", swagger_favicon_url=f"{root}{_FAVICON}",
        oauth2_redirect_url=None,
        swagger_ui_parameters={"validatorUrl": None},  # no badge fetched from validator.swagger.io
    )
    html = page.body.decode()
    csp = (f"default-src 'none'; script-src 'self' {_inline_script_hashes(html)}; style-src 'self'; "
           f"img-src 'self' data:; connect-src 'self'; {_COMMON}")
    return HTMLResponse(html, headers={"Content-Security-Policy": csp})


def _redoc(request: Request) -> HTMLResponse:
    root, app = request.scope.get("root_path", ""), request.app
    page = get_redoc_html(openapi_url=f"{root}{app.openapi_url}", title=f"{app.title} - ReDoc",
                          redoc_js_url=f"{root}{DOCS_ASSETS}/redoc.standalone.js",
                          redoc_favicon_url=f"{root}{_FAVICON}", with_google_fonts=False)
    # ReDoc writes its styles into <style> elements at run time, and searches in a blob: worker.
    csp = (f"default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
           f"font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; {_COMMON}")
    return HTMLResponse(page.body.decode(), headers={"Content-Security-Policy": csp})


__all__ = ["DEFAULT_CSP", "PUBLIC_CSP", "SecurityHeaders", "install_docs"]
