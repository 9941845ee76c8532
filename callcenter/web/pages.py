"""Serves the console's pages and assets, and mounts its read-only helper endpoints under /api/v1."""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, RedirectResponse

from callcenter.web import console_api, vendor

HERE = Path(__file__).resolve().parent
PAGES = {"login": "login.html", "desk": "desk.html", "unit": "unit.html", "back": "back.html",
         "knowledge": "knowledge.html"}
PAGES["stats"] = "stats.html"
PAGES["board"] = "board.html"
ASSETS = {"console.js": "text/javascript", "console.css": "text/css", "knowledge.js": "text/javascript"}
ASSETS["stats.js"] = "text/javascript"
ASSETS["board.js"] = "text/javascript"
ASSETS["board.css"] = "text/css"
ASSETS["callpanel.js"] = "text/javascript"
ASSETS["portal.js"] = "text/javascript"  # the citizen portal at / (callcenter/portal/)
ASSETS["portal.css"] = "text/css"
ASSETS["hot.js"] = "text/javascript"  # the back-office page's hot topics (R7.6)
ASSETS["phone.js"] = "text/javascript"
ASSETS["deliveries.js"] = "text/javascript"  # the back-office page's notice deliveries (issue 14)
# Pages hold no data (the script fetches it with the token), but never let a proxy keep stale code.
NO_CACHE = {"Cache-Control": "no-cache"}
# Everything comes from this server and no markup is built from strings: say so to the browser, so
# an injected script or a foreign origin is refused even if a bug ever let one in.
PAGE_HEADERS = {**NO_CACHE, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; "
                                           "img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; "
                                           "base-uri 'none'; form-action 'self'"}

router = APIRouter()
router.include_router(console_api.router, prefix="/api/v1")
router.include_router(vendor.router)  # /app/static/vendor/: npm libraries and their licences


@router.get("/app", include_in_schema=False)
@router.get("/app/", include_in_schema=False)
def app_root() -> RedirectResponse:
    return RedirectResponse("/app/login", status_code=307)


def _desk_headers(request: Request) -> dict[str, str]:
    """The desk page's phone also talks to Asterisk's wss address: that origin, and no other, is allowed."""
    from callcenter.api.routers.phone import ws_url

    url = urlsplit(ws_url(request.app.state.settings, request.url.hostname))
    csp = PAGE_HEADERS["Content-Security-Policy"].replace("connect-src 'self'",
                                                          f"connect-src 'self' {url.scheme}://{url.netloc}")
    return {**PAGE_HEADERS, "Content-Security-Policy": csp}


def _page(name: str):
    def serve(request: Request) -> FileResponse:
        headers = _desk_headers(request) if name == "desk" else PAGE_HEADERS
        return FileResponse(HERE / PAGES[name], media_type="text/html; charset=utf-8", headers=headers)

    serve.__name__ = f"page_{name}"
    return serve


for _name in PAGES:
    router.add_api_route(f"/app/{_name}", _page(_name), methods=["GET"], include_in_schema=False)


def _asset(name: str):
    def serve() -> FileResponse:
        media = ASSETS[name] + "; charset=utf-8"
        return FileResponse(HERE / name, media_type=media, headers={**NO_CACHE, "X-Content-Type-Options": "nosniff"})

    serve.__name__ = "asset_" + name.replace(".", "_")
    return serve


for _name in ASSETS:
    router.add_api_route(f"/app/static/{_name}", _asset(_name), methods=["GET"], include_in_schema=False)
