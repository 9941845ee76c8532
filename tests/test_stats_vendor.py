"""The statistics page's chart library (contracts.md 6): Apache ECharts from the npm registry, the
version package-lock.json pins, installed by scripts/setup into callcenter/web/vendor/node_modules
(git-ignored) and served from this server under /app/static/vendor/ with the licences of all it
bundles (ECharts Apache-2.0 with its NOTICE, ZRender BSD-3-Clause, tslib 0BSD, d3 parts BSD-3-Clause),
listed at /app/static/vendor/licences. The page loads nothing else and keeps the console's CSP."""
from __future__ import annotations

import json
import re

import pytest

from callcenter.web import pages, vendor

SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the answers are the app's, not the store's
ROOT = vendor.HERE.parent.parent.parent


def test_the_installed_libraries_are_the_locked_versions():
    lock = json.loads((vendor.HERE / "package-lock.json").read_text(encoding="utf-8"))
    wanted = json.loads((vendor.HERE / "package.json").read_text(encoding="utf-8"))["dependencies"]
    assert all(re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", v) for v in wanted.values()), "pin exact versions"
    for package in vendor.LICENCES:
        assert vendor.installed_version(package) == lock["packages"][f"node_modules/{package}"]["version"], package
    assert lock["packages"]["node_modules/echarts"]["version"] == wanted["echarts"]
    assert "/callcenter/web/vendor/node_modules/" in (ROOT / ".gitignore").read_text().splitlines()
    assert "npm ci" in (ROOT / "scripts" / "setup").read_text()


@SQLITE
def test_echarts_and_its_licences_are_served_from_this_server(api):
    r = api.client.get("/app/static/vendor/echarts.min.js")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/javascript")
    assert r.content == (vendor.MODULES / "echarts" / "dist" / "echarts.min.js").read_bytes()
    assert "Apache License, Version 2.0" in r.text[:2000]
    assert r.headers["x-content-type-options"] == "nosniff" and "no-store" not in r.headers.get("cache-control", "")
    index = api.client.get("/app/static/vendor/licences")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/plain")
    assert f"echarts {vendor.installed_version('echarts')}" in index.text
    listed = [line.strip() for line in index.text.splitlines() if line.strip().startswith("/app/static/vendor/licences/")]
    assert len(listed) == sum(len(files) for files in vendor.LICENCES.values()) == 10
    texts = {path: api.client.get(path) for path in listed}
    assert all(t.status_code == 200 and t.text for t in texts.values())
    assert "Apache License" in texts["/app/static/vendor/licences/echarts/LICENSE"].text
    assert "The Apache Software Foundation" in texts["/app/static/vendor/licences/echarts/NOTICE"].text
    assert "Redistribution and use" in texts["/app/static/vendor/licences/zrender/LICENSE"].text
    assert "Permission to use, copy, modify" in texts["/app/static/vendor/licences/tslib/LICENSE.txt"].text
    assert api.client.get("/app/static/vendor/licences/echarts/package.json").status_code == 404
    assert api.client.get("/app/static/vendor/../vendor/__init__.py").status_code == 404


@SQLITE
def test_not_installed_says_how_to_install(api, monkeypatch, tmp_path):
    monkeypatch.setattr(vendor, "MODULES", tmp_path)
    r = api.client.get("/app/static/vendor/echarts.min.js")
    assert r.status_code == 404 and r.json()["error"] == "not_installed" and "scripts/setup" in r.json()["detail"]
    assert "echarts (not installed)" in api.client.get("/app/static/vendor/licences").text


@SQLITE
def test_the_stats_page_keeps_the_console_policy(api):
    r = api.client.get("/app/stats")
    assert r.status_code == 200 and r.headers["content-security-policy"] == pages.PAGE_HEADERS["Content-Security-Policy"]
    assert "unsafe-inline" not in r.headers["content-security-policy"] and "unsafe-eval" not in r.headers["content-security-policy"]
    assert not re.search(r"<script(?![^>]*\bsrc=)", r.text) and "<style" not in r.text and " style=" not in r.text
    assert re.findall(r'src="([^"]+)"', r.text) == ["/app/static/vendor/echarts.min.js", "/app/static/stats.js"]
    assert api.client.get("/app/static/stats.js").status_code == 200
    assert 'href="/app/stats"' in api.client.get("/app/back").text
