"""GET services / services/{code}: the city's case categories (config/categories.yaml) as
GeoReport v2 services, and the checking of a POST's `attribute[code]` values against them.

A service is a category offered to Open311 clients (`ticketing.open311.offered_kinds`); its one
attribute is the case's kind (R2.1) when the category takes more than one, a singlevaluelist the
client must answer (`metadata` true); a category of one kind has no attribute. Every service is
`realtime`: the case is accepted through the intake workflow in the request (R7.1) and its number
is the service_request_id at once, so no token is ever handed out.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from callcenter.api.routers.public import KIND_NAMES
from callcenter.open311.formats import echo, refuse
from ticketing.domain import Domain
from ticketing.open311 import offered_kinds

KIND_ATTRIBUTE = "kind"
_KEYWORD_SPLIT = re.compile(r"[、，,；;\s]+")


@dataclass(frozen=True)
class Attribute:
    code: str
    datatype: str  # string number datetime text singlevaluelist multivaluelist (the spec's)
    required: bool
    description: str
    order: int
    values: tuple[tuple[str, str], ...] = ()
    datatype_description: str = ""


@dataclass(frozen=True)
class Service:
    code: str
    name: str
    description: str
    keywords: str | None
    group: str | None
    kinds: tuple[str, ...]
    attributes: tuple[Attribute, ...]

    def row(self) -> dict:
        """One item of GET services (the spec's field order)."""
        return {"service_code": self.code, "service_name": self.name, "description": self.description,
                "metadata": bool(self.attributes), "type": "realtime", "keywords": self.keywords,
                "group": self.group}

    def definition(self) -> dict:
        """GET services/{code}: the service definition."""
        return {"service_code": self.code, "attributes": [
            {"variable": True, "code": a.code, "datatype": a.datatype, "required": a.required,
             "datatype_description": a.datatype_description, "order": a.order, "description": a.description,
             "values": [{"key": key, "name": name} for key, name in a.values]} for a in self.attributes]}


def _service(domain: Domain, category) -> Service | None:
    kinds = offered_kinds(category)
    if not kinds:
        return None
    attributes: tuple[Attribute, ...] = ()
    if len(kinds) > 1:
        attributes = (Attribute(KIND_ATTRIBUTE, "singlevaluelist", True, "诉求类型", 1,
                                tuple((k, KIND_NAMES[k]) for k in kinds), "选择一项"),)
    route = category.route
    # the group: the unit that answers, where there is one (the lead, or the only unit)
    first = route.lead or (route.units[0] if len(route.units) == 1 else None)
    group = domain.city.unit(first).name if first else None
    keywords = ", ".join(w for w in _KEYWORD_SPLIT.split(category.description) if w) or None
    return Service(category.code, category.name, category.description or category.name, keywords, group, kinds,
                   attributes)


def catalogue(domain: Domain) -> dict[str, Service]:
    """The offered services by code, in the order of categories.yaml."""
    out = {}
    for category in domain.city.categories:
        service = _service(domain, category)
        if service is not None:
            out[service.code] = service
    return out


def service_named(domain: Domain, code: str | None) -> Service:
    """The spec's errors: 400 when no service_code was given, 404 when it is not one of ours."""
    if not code:
        raise refuse(400, "service_code was not provided")
    service = catalogue(domain).get(code)
    if service is None:
        raise refuse(404, f"service_code '{echo(code)}' was not found")
    return service


_ATTRIBUTE_KEY = re.compile(r"^attributes?\[([^\[\]]{1,64})\](\[\])?$")


def submitted_attributes(form: list[tuple[str, str]]) -> dict[str, list[str]]:
    """`attribute[code]=v` (and `attribute[code][]=v1&…` for a multivaluelist) by code. The
    spec's name is `attribute`; `attributes[code]` is taken too."""
    out: dict[str, list[str]] = {}
    for key, value in form:
        m = _ATTRIBUTE_KEY.match(key)
        if m:
            out.setdefault(m.group(1), []).append(value)
    return out


def check_attributes(service: Service, submitted: dict[str, list[str]]) -> tuple[dict[str, object], list[tuple[int, str]]]:
    """(the values by code, the errors as (code, description)) of a POST's attributes."""
    known = {a.code: a for a in service.attributes}
    values: dict[str, object] = {}
    errors: list[tuple[int, str]] = [
        (400, f"service {service.code} has no attribute '{echo(code)}'") for code in submitted if code not in known]
    for a in service.attributes:
        given = [v for v in submitted.get(a.code, []) if v != ""]
        if not given:
            if a.required:
                errors.append((400, f"attribute[{a.code}] is required ({a.description})"))
            continue
        keys = {key for key, _ in a.values}
        if a.datatype == "singlevaluelist":
            if len(given) != 1 or given[0] not in keys:
                errors.append((400, f"attribute[{a.code}] takes one of: {', '.join(sorted(keys))}"))
            else:
                values[a.code] = given[0]
        else:  # multivaluelist (no other datatype is declared today)
            if any(v not in keys for v in given):
                errors.append((400, f"attribute[{a.code}] takes values from: {', '.join(sorted(keys))}"))
            else:
                values[a.code] = given
    return values, errors


def kind_of(service: Service, values: dict[str, object]) -> str:
    return str(values.get(KIND_ATTRIBUTE, service.kinds[0]))


__all__ = ["Attribute", "Service", "catalogue", "check_attributes", "kind_of", "service_named",
           "submitted_attributes"]
