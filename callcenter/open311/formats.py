"""GeoReport v2's two formats and its error body (spec: wiki.open311.org/GeoReport_v2, the
"Format Support" and "Errors" sections), written once for every route.

- The format is the resource's suffix: `services.xml`, `services/water_supply.json`. XML is the
  required format, JSON optional (we serve both); an unknown suffix is answered in XML.
- XML: UTF-8 with the declaration, schemaless, no namespace; a list is an element holding one
  element per item (`<services><service>…`). JSON: the same data mapped by the Spark convention
  (a list is a JSON array, the wrapper element disappears).
- Content-Type `text/xml; charset=utf-8` and `application/json; charset=utf-8`.
- Errors: HTTP 404 for a resource that does not exist, 403 for a wrong or missing api_key, 400 for
  anything else the request cannot be fulfilled for; the body is a list of {code, description}
  (`<errors><error><code/><description/></error></errors>`), several at once when several things
  are wrong. 429 (not in the spec) when a client's rate limit is used up, in the same body.
- Times are ISO 8601 with the zone (w3 note subset): the city's local time and offset.
"""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any
from xml.etree import ElementTree as ET

from fastapi.responses import Response

JSON, XML = "json", "xml"
MEDIA = {JSON: "application/json; charset=utf-8", XML: "text/xml; charset=utf-8"}
# The element of each item of a list, by the list's own element (the spec's response tables).
ITEM = {"services": "service", "service_requests": "request", "attributes": "attribute", "values": "value",
        "endpoints": "endpoint", "formats": "format", "errors": "error"}


class Open311Error(Exception):
    """A refusal in the spec's shape: the HTTP status and one or more (code, description)."""

    def __init__(self, status: int, *errors: tuple[int | str, str], headers: dict[str, str] | None = None):
        super().__init__(errors[0][1] if errors else "")
        self.status = status
        self.errors = list(errors) or [(status, "the request could not be fulfilled")]
        self.headers = headers or {}


def refuse(status: int, description: str, code: int | str | None = None, **kw) -> Open311Error:
    return Open311Error(status, (status if code is None else code, description), **kw)


def w3(moment: datetime | None, tz) -> str | None:
    """ISO 8601 with the zone's offset, to the second (the spec's w3 note format)."""
    return None if moment is None else moment.astimezone(tz).replace(microsecond=0).isoformat()


# Characters XML 1.0 cannot carry (control characters but tab and line breaks, non-characters).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def echo(text: str, limit: int = 64) -> str:
    """A client's own value quoted back in an error: printable, bounded."""
    return "".join(ch for ch in text[:limit] if ch.isprintable())


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return _NOT_XML.sub("\ufffd", str(value))


def _element(tag: str, value: Any) -> ET.Element:
    el = ET.Element(tag)
    if isinstance(value, dict):
        for key, item in value.items():
            el.append(_element(key, item))
    elif isinstance(value, (list, tuple)):
        for item in value:
            el.append(_element(ITEM[tag], item))
    else:
        el.text = _text(value)
    return el


def to_xml(root: str, value: Any) -> bytes:
    # the declaration written out: the spec asks for encoding="UTF-8" before the root element
    return b'<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(_element(root, value), encoding="unicode").encode()


def render(fmt: str, root: str, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """`value` (a list for list resources, a dict otherwise) as `fmt`; `root` is the XML root."""
    if fmt == JSON:
        body = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    else:
        body = to_xml(root, value)
    return Response(body, status_code=status, media_type=MEDIA[fmt], headers=headers)


def render_error(fmt: str, exc: Open311Error) -> Response:
    body = [{"code": code, "description": description} for code, description in exc.errors]
    return render(fmt if fmt in MEDIA else XML, "errors", body, exc.status, exc.headers)


def parse_format(fmt: str) -> str:
    """The format named by a resource's suffix; anything else is the spec's 400 (answered in XML)."""
    if fmt not in MEDIA:
        raise refuse(400, "unknown format: end the resource with .xml or .json")
    return fmt


# OpenAPI: what every Open311 answer may be (tests/test_api_fuzz.py holds the routes to it).
ERRORS_SCHEMA = {"type": "array", "items": {"type": "object", "required": ["code", "description"], "properties": {
    "code": {"type": ["integer", "string"]}, "description": {"type": "string"}}}}
WHY = {400: "Invalid request (GeoReport v2 errors body)", 403: "Missing or invalid api_key",
       404: "No such service, request or token", 429: "The client's rate limit is used up; see Retry-After"}


def openapi_responses(ok: dict, *statuses: int) -> dict:
    """`responses=` of a route: 200 as `ok` (a JSON schema) or XML, and the spec's errors."""
    both = lambda schema: {"application/json": {"schema": schema}, "text/xml": {"schema": {"type": "string"}}}
    out: dict = {200: {"description": "GeoReport v2 answer (.json or .xml)", "content": both(ok)}}
    for status in (400, 404, *statuses):
        out[status] = {"description": WHY[status], "content": both(ERRORS_SCHEMA)}
    return out


__all__ = [
    "ERRORS_SCHEMA",
    "JSON",
    "MEDIA",
    "XML",
    "Open311Error",
    "echo",
    "openapi_responses",
    "parse_format",
    "refuse",
    "render",
    "render_error",
    "to_xml",
    "w3",
]
