"""What a simulated call did, in words: the answer of `callcenter call simulate`.

Read from the call's record (A2: path, keys, outcome, case) as the hotline wrote it, the AGI
commands Asterisk reported, and the policy's own service-hours rule applied at the call's start.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.simulate import SimulatedCall
from ticketing.models import Call, Case
from ticketing.policy import Policy
from ticketing.privacy import mask_phone

# Why the menu handed the caller to the queue (the `reason` of main.yaml's end nodes).
QUEUE_REASONS = {
    "consultation": "a consultation case was opened for an operator to take",
    "suggestion": "a suggestion case was opened for an operator to take",
    "complaint": "a complaint case was opened for an operator to take",
    "urgent_help": "an urgent-help case was opened for an operator to take",
    "operator": "the caller asked for an operator, or chose nothing in time",
    "invalid_input": "no valid key after the allowed retries",
    "not_found": "the case number entered was not found, twice",
    "error": "the menu failed (see the hotline's log) and handed the caller to a person",
    "loop": "the menu went round in a loop and handed the caller to a person",
}
OUTCOMES = {
    "self_served": "served by the menu, no operator needed",
    "queued": "queued for an operator",
    "message_left": "left a message (after hours)",
    "abandoned": "the call ended in the menu",
    "failed": "the call failed",
}
_PROMPT = re.compile(r"^(?:STREAM FILE|GET DATA|CONTROL STREAM FILE) +\"?[\w-]+/([\w-]+)")
_READ = re.compile(r"^EXEC +Read +\"?[^,]*,([^,]*)")
_SAY = re.compile(r"^SAY (NUMBER|DIGITS) +\"?(\d+)")


@dataclass
class CallRecordView:
    outcome: str | None
    reason: str | None
    flow_path: list[str]
    digits: list[dict]
    started_at: datetime
    case_number: str | None = None
    case_kind: str | None = None
    case_created: bool = False


def load_record(session: Session, uniqueid: str) -> CallRecordView | None:
    call = session.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one_or_none()
    if call is None:
        return None
    view = CallRecordView(call.outcome, call.outcome_reason, list(call.flow_path or []), list(call.digits or []),
                          call.started_at if call.started_at.tzinfo else call.started_at.replace(tzinfo=UTC))
    if call.case_id is not None:
        case = session.get(Case, call.case_id)
        view.case_number, view.case_kind = case.number, str(getattr(case.kind, "value", case.kind))
        view.case_created = case.created_by_call_id == call.id
    return view


def prompts_heard(commands: list[str]) -> list[str]:
    """The prompts the menu started playing, in order (a key may have cut one short); numbers
    and digits said as '#<number>'."""
    heard: list[str] = []
    for command in commands:
        if m := _PROMPT.match(command):
            heard.append(m.group(1))
        elif m := _READ.match(command):
            heard += [name.rsplit("/", 1)[-1] for name in m.group(1).split("&") if name]
        elif m := _SAY.match(command):
            heard.append(f"#{m.group(2)}")
    return heard


def describe(sim: SimulatedCall, record: CallRecordView | None, policy: Policy) -> list[str]:
    """The lines `call simulate` prints."""
    lines = [f"call {sim.uniqueid} from {mask_phone(sim.caller)} ({sim.seconds:.1f} s)"]
    if record is None:
        lines.append("  no call record in the store: is the hotline (`callcenter run`) using this database?")
        lines.append(f"  menu asked for input at: {', '.join(sim.prompts_for_input) or '-'}")
        lines.append(f"  keys sent: {''.join(sim.keys_sent) or '-'}")
        queued = f"yes ({sim.queue_reason or '?'})" if sim.queued else "no"
        lines.append(f"  queued for an operator: {queued}")
        return lines
    outcome = OUTCOMES.get(record.outcome or "", record.outcome or "still in progress")
    if record.outcome == "queued":
        why = QUEUE_REASONS.get(record.reason or "", "")
        outcome += f", reason {record.reason}" + (f": {why}" if why else "")
    elif record.reason == "hangup":
        outcome += " (the caller hung up)"
    lines.append(f"  outcome: {outcome}")
    if "hours_check" in record.flow_path:
        hours = policy.ivr_hours_at(record.started_at)
        branch = "main menu" if hours.open else "after-hours branch"
        lines.append(f"  {branch}: {hours.explain()}")
    if record.case_number:
        verb = "case created" if record.case_created else "case looked up"
        lines.append(f"  {verb}: {record.case_number} ({record.case_kind})")
    lines.append(f"  path: {' → '.join(record.flow_path) or '-'}")
    heard = prompts_heard(sim.commands)
    lines.append(f"  prompts heard: {', '.join(heard) or '-'}")
    keys = [f"{d.get('digits') or '(silence)'} at {d.get('node')}" for d in record.digits]
    lines.append(f"  keys: {'; '.join(keys) or '-'}")
    return lines
