"""Security headers on every response (issue 11 item 8) and the API docs served from the install:
/docs and /redoc in headless Chromium make no request that leaves 127.0.0.1 and break no CSP."""
from __future__ import annotations

import re

import pytest

from .conftest import CONFIG_DIR
from tests.helpers import browser_context, serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ALWAYS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY", "referrer-policy": "no-referrer"}


def _secure(r, *, no_store: bool) -> str:
    for name, value in ALWAYS.items():
        assert r.headers.get(name) == value, (r.url, name, r.headers)
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "base-uri 'none'" in csp
    assert "unsafe-eval" not in csp and "http" not in csp
    if no_store:
        assert r.headers["cache-control"] == "no-store", r.url
    else:
        assert "no-store" not in r.headers.get("cache-control", ""), r.url
    return csp


def test_api_answers_carry_security_headers_and_no_store(api):
    """Personal data (R5.3, R7.3c cases) comes through the API: never cached, never framed."""
    for r in (api.get("/api/v1/cases", "op1"), api.get("/api/v1/auth/me", "op1"),
              api.client.get("/api/v1/cases"),  # 401
              api.client.post("/api/v1/auth/token", json={"username": "x", "password": "y"}),  # 401
              api.client.get("/api/v1/cases/999999", headers={"Authorization": f"Bearer {api.login('op1')}"}),
              api.client.post("/api/v1/cases", content=b"x" * (300 * 1024),  # 413 from the body limit
                              headers={"Content-Type": "application/json"})):
        csp = _secure(r, no_store=True)
        assert csp.startswith("default-src 'none'"), csp


def test_console_pages_and_assets(api):
    for page in ("/app/login", "/app/desk", "/app/unit", "/app/back"):
        r = api.client.get(page)
        assert r.status_code == 200
        csp = _secure(r, no_store=True)
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        # the console's pages have no inline code for the policy to allow
        assert not re.search(r"<script(?![^>]*\bsrc=)", r.text) and "<style" not in r.text and " style=" not in r.text
    for asset in ("/app/static/console.js", "/app/static/console.css"):
        r = api.client.get(asset)
        assert r.status_code == 200
        _secure(r, no_store=False)  # static code, no personal data: cacheable (revalidated)


def test_public_page_runs_no_script(api):
    r = api.client.get("/public")
    assert r.status_code == 200
    csp = _secure(r, no_store=False)
    assert "default-src 'none'" in csp and "script-src" not in csp  # no script may run at all
    r = api.client.get("/api/v1/public/cases")
    _secure(r, no_store=True)


def test_docs_pages_point_only_at_this_server(api):
    for path, asset in (("/docs", "/docs-assets/swagger-ui-bundle.js"), ("/redoc", "/docs-assets/redoc.standalone.js")):
        r = api.client.get(path)
        assert r.status_code == 200
        _secure(r, no_store=False)
        assert asset in r.text and "cdn" not in r.text.lower()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", r.text), r.text
        assert api.client.get(asset).status_code == 200


# ReDoc's sidebar footer shows Redocly's logo from Redocly's CDN, with no option to turn it off:
# the page's Content-Security-Policy refuses it, so the browser never sends that request.
REDOCLY_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_docs_in_chromium_need_nothing_from_the_internet(seeded, domain, engine, tmp_path):
    """Swagger UI and ReDoc render from the install alone, in a browser that cannot resolve any
    host but 127.0.0.1: every request it sends goes to this server; the one outside request ReDoc
    tries is refused by the page's own CSP before it is sent."""
    from playwright.sync_api import sync_playwright

    from callcenter.api.app import create_app
    from callcenter.settings import Settings

    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine)
    offline = "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1"
    with serve(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=[*CHROMIUM_ARGS, offline])
        try:
            context = browser_context(browser)
            requests: list[str] = []
            blocked: list[tuple[str, str]] = []
            problems: list[str] = []
            context.on("request", lambda req: requests.append(req.url))
            context.on("requestfailed", lambda req: blocked.append((req.url, req.failure)))
            page = context.new_page()
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.on("console", lambda msg: msg.type == "error" and REDOCLY_LOGO not in msg.text
                    and problems.append(msg.text))

            page.goto(f"{base}/docs")
            page.wait_for_selector(".swagger-ui .info .title")
            assert "12345 hotline" in page.inner_text(".swagger-ui .info .title")
            page.wait_for_selector(".swagger-ui .opblock-summary")
            assert "Log in with username and password" in page.inner_text(".swagger-ui")
            assert not page.locator(".swagger-ui .errors-wrapper").count()

            page.goto(f"{base}/redoc")
            page.wait_for_selector("h1:has-text('12345 hotline')")
            page.wait_for_selector("text=Log in with username and password", state="attached")
            page.wait_for_load_state("networkidle")
        finally:
            browser.close()
    outside = [u for u in requests if not u.startswith((f"{base}/", f"blob:{base}/", "data:"))]
    assert outside in ([], [REDOCLY_LOGO]), outside
    assert (REDOCLY_LOGO, "csp") in blocked or not outside  # refused by the CSP, never sent
    assert [u for u, _ in blocked if u != REDOCLY_LOGO] == []
    assert not problems, problems
