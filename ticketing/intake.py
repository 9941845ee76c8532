"""R7.1 intake without an ORM object: `Workflow.accept` for the voice menu's hot path.

The voice menu creates a case on most calls (agi/hotline.py). There a Session's transaction and
unit of work cost several times the statements themselves (docs/benchmarks.md). This writes the
same rows through a statement runner (ticketing.prepared: prepared on a DBAPI cursor, or a Session's
connection), in the caller's transaction: the rules are `Workflow.new_case`'s, the case number
`next_case_number`'s, the audit event `audit.record_now` (same hash chain).
tests/test_intake_cursor.py and tests/test_store_golden.py check the rows against `Workflow.accept`'s.
"""
from __future__ import annotations

from typing import Any

from ticketing import audit
from ticketing.audit import Actor
from ticketing.models import Case
from ticketing.numbering import next_case_number
from ticketing.prepared import Run
from ticketing.rows import insert_row
from ticketing.workflow import Workflow


def accept_on(workflow: Workflow, run: Run, actor: Actor, **request: Any) -> tuple[int, str]:
    """`workflow.accept(actor, **request)` written through `run` (its transaction held by the
    caller); returns the new case's id and number. `workflow` supplies the rules, calendar and
    clock; its session is not used."""
    case, event = workflow.new_case(actor, **request)
    case["number"] = next_case_number(run, case["accepted_at"].astimezone(workflow.calendar.tz))
    case_id = insert_row(run, Case, case)
    audit.record_now(run, actor, "accept", **workflow.event_on(
        case_id, confidential=case["confidential"], channel=event.pop("channel"), call_id=case["created_by_call_id"],
        data=event))
    return case_id, case["number"]
