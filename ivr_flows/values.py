"""Values in a flow: keys as YAML writes them, prompt lists, `$variable` references and dates."""
from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import Any


class FlowError(ValueError):
    """A flow file or a node is malformed (load time or run time)."""


_MISSING = object()


def case_key(value: Any) -> str:
    """Normalise a branch/menu key or a value so YAML `1`, `true`, `null` match 1/"1", True, None."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def prompt_list(node: Mapping[str, Any], key: str = "prompts", single: str = "prompt") -> list[str]:
    """Nodes accept `prompt: name` or `prompts: [names]`."""
    if key in node:
        value = node[key]
    elif single in node:
        value = node[single]
    else:
        return []
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value]


def lookup(variables: Mapping[str, Any], dotted: str, default: Any = _MISSING) -> Any:
    """`x.field.sub` over dicts (or attributes); `$` prefix allowed."""
    name = dotted[1:] if dotted.startswith("$") else dotted
    parts = name.split(".")
    current: Any = variables
    for part in parts:
        if isinstance(current, Mapping) and part in current:
            current = current[part]
        elif not isinstance(current, Mapping) and hasattr(current, part):
            current = getattr(current, part)
        else:
            if default is _MISSING:
                raise FlowError(f"variable ${name} is not set")
            return default
    return current


def resolve(value: Any, variables: Mapping[str, Any]) -> Any:
    """Literal, or "$var.field" reference; "$$x" is the literal "$x"; recurses into lists/dicts."""
    if isinstance(value, str) and value.startswith("$"):
        if value.startswith("$$"):
            return value[1:]
        return lookup(variables, value)
    if isinstance(value, Mapping):
        return {k: resolve(v, variables) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, variables) for v in value]
    return value


def parse_date(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
        return datetime.fromisoformat(text).date()
    except ValueError as exc:
        raise FlowError(f"not an ISO date: {text!r}") from exc
