"""The Swagger UI (Apache-2.0) and ReDoc (MIT) bundles served at /docs and /redoc (issue 11 §8)
come from the fastapi-offline wheel, which ships no licence for them: the project ships the
licences of the exact versions bundled (callcenter/api/static_licences/) and serves them at
/docs/licences. When fastapi-offline brings other bundles these tests fail until the licences of
the new versions are fetched (`npm pack <package>@<version>`) and bundles.json is updated."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import fastapi_offline
import pytest

from callcenter.api.security import LICENCE_DIR

ASSETS = Path(fastapi_offline.__file__).resolve().parent / "static"
MANIFEST = json.loads((LICENCE_DIR / "bundles.json").read_text(encoding="utf-8"))
BUNDLES = {b["package"]: b for b in MANIFEST["bundles"]}


def _bundled_versions() -> dict[str, str]:
    """The versions the installed bundles say they are (their own build constants)."""
    swagger = (ASSETS / "swagger-ui-bundle.js").read_text(encoding="utf-8")
    redoc = (ASSETS / "redoc.standalone.js").read_text(encoding="utf-8")
    (swagger_version,) = set(re.findall(r'PACKAGE_VERSION:"([0-9][^"]*)"', swagger))
    # ReDoc exports version() returning a constant defined next to its git revision
    (name,) = set(re.findall(r"version:function\(\)\{return (\w+)\}", redoc))
    (redoc_version,) = set(re.findall(rf'\b{name}="([0-9][^"]*)"', redoc))
    return {"swagger-ui-dist": swagger_version, "redoc": redoc_version}


def test_licence_files_name_the_versions_bundled():
    """Each bundle's licence is shipped for the version the installed file is, byte for byte."""
    assert _bundled_versions() == {p: b["version"] for p, b in BUNDLES.items()}
    for bundle in BUNDLES.values():
        for name, digest in bundle["files"].items():
            assert hashlib.sha256((ASSETS / name).read_bytes()).hexdigest() == digest, (name, bundle["version"])
        assert bundle["dir"] == f"{bundle['package']}-{bundle['version']}"
    swagger = LICENCE_DIR / BUNDLES["swagger-ui-dist"]["dir"]
    assert "Apache License" in (swagger / "LICENSE").read_text() and "Version 2.0" in (swagger / "LICENSE").read_text()
    assert "SmartBear" in (swagger / "NOTICE").read_text()
    assert (swagger / "swagger-ui-bundle.js.LICENSE.txt").stat().st_size > 0  # what the bundle's banner points to
    redoc = LICENCE_DIR / BUNDLES["redoc"]["dir"]
    assert "MIT License" in (redoc / "LICENSE").read_text() and "Rebilly" in (redoc / "LICENSE").read_text()
    assert f'Version: "{BUNDLES["redoc"]["version"]}"' in (redoc / "redoc.standalone.js.LICENSE.txt").read_text()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_licences_served_at_docs_licences(api):
    index = api.client.get("/docs/licences")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/plain")
    listed = [line for line in index.text.splitlines() if line.startswith("/docs/licences/")]
    assert {line.split("/")[3] for line in listed} >= {b["dir"] for b in BUNDLES.values()}
    for line in listed:
        r = api.client.get(line)
        assert r.status_code == 200 and r.content == (LICENCE_DIR / line.removeprefix("/docs/licences/")).read_bytes()
    assert api.client.get("/docs/licences/../security.py").status_code == 404
