"""Browser libraries from the npm registry (contracts.md 6): package.json and package-lock.json here
name them, `scripts/setup` installs them with `npm ci` into node_modules/ (git-ignored), and this
router serves the files the pages load under /app/static/vendor/ with the licences of everything
those files bundle under /app/static/vendor/licences/ (index: /app/static/vendor/licences).
Nothing is loaded from the internet at run time.

Apache ECharts' dist/echarts.min.js bundles ZRender (BSD-3-Clause), tslib's helpers (0BSD) and
parts of d3 (BSD-3-Clause, echarts/licenses/LICENSE-d3): their licences are served beside it.
JsSIP's dist/jssip.min.js (the desk page's browser phone, MIT) bundles debug (MIT), ms (MIT), events
(MIT) and sdp-transform (MIT): their licences are served beside it.
A library another page needs: add it to package.json (`npm install --package-lock-only NAME@VERSION`),
its file to FILES and its licences to LICENCES. devDependencies (axe-core, the accessibility rules
tests/test_portal_browser.py runs) are installed by the same `npm ci` and never served.
"""
from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, PlainTextResponse

from callcenter.errors import NOT_FOUND, AppError

HERE = Path(__file__).resolve().parent
MODULES = HERE / "node_modules"
PREFIX = "/app/static/vendor"
# served name -> (package, file inside it, media type)
FILES = {"echarts.min.js": ("echarts", "dist/echarts.min.js", "text/javascript"),
         "jssip.min.js": ("jssip", "dist/jssip.min.js", "text/javascript")}
# package -> its licence files (package-relative), served as /app/static/vendor/licences/<package>/<file>
LICENCES = {"echarts": ("LICENSE", "NOTICE", "licenses/LICENSE-d3"), "zrender": ("LICENSE",),
            "tslib": ("LICENSE.txt",), "jssip": ("LICENSE",), "debug": ("LICENSE",), "ms": ("license.md",),
            "events": ("LICENSE",), "sdp-transform": ("LICENSE",)}
HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter()


class NotInstalled(AppError):
    """The libraries were not installed (scripts/setup runs npm ci): a 404 that says how to fix it."""

    kind = NOT_FOUND

    def __init__(self, package: str):
        super().__init__("not_installed", f"{package} is not installed here: run scripts/setup (npm ci in "
                                          f"callcenter/web/vendor)")


def installed_version(package: str) -> str | None:
    manifest = MODULES / package / "package.json"
    if not manifest.is_file():
        return None
    return json.loads(manifest.read_text(encoding="utf-8"))["version"]


def _file(package: str, relative: str) -> Path:
    path = MODULES / package / relative
    if not path.is_file():
        raise NotInstalled(package)
    return path


def _asset(name: str):
    package, relative, media = FILES[name]

    def serve() -> FileResponse:
        return FileResponse(_file(package, relative), media_type=f"{media}; charset=utf-8", headers=HEADERS)

    serve.__name__ = "vendor_" + name.replace(".", "_")
    return serve


for _name in FILES:
    router.add_api_route(f"{PREFIX}/{_name}", _asset(_name), methods=["GET"], include_in_schema=False)


def _licence(package: str, relative: str):
    def serve() -> FileResponse:
        return FileResponse(_file(package, relative), media_type="text/plain; charset=utf-8", headers=HEADERS)

    serve.__name__ = "vendor_licence_" + f"{package}_{relative}".replace(".", "_").replace("/", "_").replace("-", "_")
    return serve


for _package, _files in LICENCES.items():
    for _relative in _files:
        router.add_api_route(f"{PREFIX}/licences/{_package}/{_relative}", _licence(_package, _relative),
                             methods=["GET"], include_in_schema=False)


@router.get(f"{PREFIX}/licences", include_in_schema=False)
def vendor_licences() -> PlainTextResponse:
    """Which library is served, in which version, under which licence files."""
    lines = ["Browser libraries served under /app/static/vendor/ (installed from the npm registry by scripts/setup):"]
    for package, files in LICENCES.items():
        lines.append(f"{package} {installed_version(package) or '(not installed)'}")
        lines += [f"  {PREFIX}/licences/{package}/{f}" for f in files]
    return PlainTextResponse("\n".join(lines) + "\n", headers=HEADERS)
