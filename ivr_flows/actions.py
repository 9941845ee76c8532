"""The actions flows may call. The application implements each one and hands the engine a
mapping {name: callable}; the callable (sync or async) gets exactly the keyword arguments
the flow's `args` name and returns a dict.  `ivr check` rejects any other action name.
"""
from __future__ import annotations

KNOWN_ACTIONS: dict[str, str] = {
    "caller_open_cases": "(caller) -> {count: int, latest_number: str, latest_status_prompt: str}: open cases of the calling number",
    "in_service_hours": "() -> {open: bool}: whether operators are on duty now",
    "create_case": "(caller, kind: consultation|suggestion|complaint|urgent_help) -> {case_number: str}: open a phone case before queueing",
    "find_case": "(number: 14 digits, no dash) -> {found: bool, status_prompt: str, deadline: ISO date/datetime or null}",
    "leave_message": "(caller, recording: str) -> {case_number: str}: after-hours voice message becomes a case",
    "acknowledge_notice": "() -> {acknowledged: bool}: key 1 on a voice notice, or a citizen's notice heard to its end (the call's own key)",
    "record_satisfaction": "(case_number, value: satisfied|basically_satisfied|unsatisfied) -> {}: callback survey answer",
}

STATUS_PROMPT_PREFIX = "status_"
UNIT_PROMPT_PREFIX = "unit_"  # a member unit's name, rendered from config/units.yaml (callcenter/pbx/prompts.py)
UNKNOWN_STATUS_PROMPT = "status_unknown"


def unit_prompt_name(code: str) -> str:
    """Prompt name that speaks a member unit's name (a citizen's notice says who has the case)."""
    return f"{UNIT_PROMPT_PREFIX}{code}"


def status_prompt_name(status: str, prompts: set[str] | None = None) -> str:
    """Prompt name that speaks a case status (`status_<value>`), for find_case and
    caller_open_cases; falls back to a neutral "being handled" prompt if it is missing."""
    name = f"{STATUS_PROMPT_PREFIX}{status}"
    if prompts is not None and name not in prompts:
        return UNKNOWN_STATUS_PROMPT
    return name
