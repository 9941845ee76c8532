"""Request bodies built from the OpenAPI schema for the write sweep (tests/test_canaries_writes.py):
the required fields (and ``expected_version``) with canary-free sample values chosen by field name,
then enum, then type, so a new write operation gets a body without editing the test."""
from __future__ import annotations

from typing import Any

from tests.conftest import PASSWORD

# by field name: values that pass the field's own checks and leave the accounts usable
BY_NAME: dict[str, Any] = {
    "password": PASSWORD, "current_password": PASSWORD, "new_password": PASSWORD,  # unchanged, so logins still work
    "username": "canary-new-user", "phone": "13700000009", "citizen_phone": "13700000009",
    "unit": "water_supply", "units": ["water_supply"], "lead": "water_supply", "unit_code": "water_supply",
    "category_code": "city_appearance", "effective_from": "2026-03-02T09:00:00+08:00",
    "notified_at": "2026-03-02T09:30:00+08:00", "extra_working_days": 3, "channel": "phone",
    "holidays": [], "workdays": [], "approve": True, "consent": True, "disclaimer_read": True,
}
TEXT = "核实情况说明"


def resolve(spec: dict, schema: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    if "anyOf" in schema:  # Optional[X]: the X
        schema = resolve(spec, next(s for s in schema["anyOf"] if s.get("type") != "null"))
    return schema


def value(spec: dict, name: str, schema: dict, context: dict) -> Any:
    schema = resolve(spec, schema)
    if name == "case_number" and context.get("case_number"):
        return context["case_number"]
    if schema.get("enum"):
        preferred = BY_NAME.get(name)
        return preferred if preferred in schema["enum"] else schema["enum"][0]
    if name in BY_NAME:
        return BY_NAME[name]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        return body(spec, schema, context)
    if kind == "integer":
        return max(schema.get("minimum", 1), 1)
    if kind == "number":
        return 1
    if kind == "boolean":
        return True
    if kind == "array":
        return [value(spec, name, schema.get("items", {}), context)] * schema.get("minItems", 0)
    if schema.get("format") == "date-time":
        return "2026-03-02T09:00:00+08:00"
    return TEXT


def body(spec: dict, schema: dict, context: dict) -> dict:
    """The required fields, plus expected_version from ``context['version']`` when the schema has it."""
    schema = resolve(spec, schema)
    props = schema.get("properties", {})
    out = {name: value(spec, name, props[name], context) for name in schema.get("required", [])}
    if "expected_version" in props and context.get("version") is not None:
        out["expected_version"] = context["version"]
    return out


def request_body(spec: dict, op: dict, context: dict) -> dict | None:
    content = (op.get("requestBody") or {}).get("content", {})
    media = content.get("application/json")
    return None if media is None else body(spec, media["schema"], context)
