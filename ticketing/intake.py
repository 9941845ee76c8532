"""R7.1 intake on a DBAPI cursor: `Workflow.accept` for the voice menu's hot path.

The voice menu creates a case on most calls, on the FastAGI server's event loop (agi/hotline.py).
There the ORM Session's transaction and unit of work cost several times the five statements
themselves (docs/benchmarks.md). This writes the same rows with prebuilt statements
(ticketing.prepared) in the caller's transaction: the rules are `Workflow.new_case`'s, the case
number is `next_case_number`'s upsert, the audit event is `audit.record`'s (same hash chain).
tests/test_intake_cursor.py checks the rows against those `Workflow.accept` writes.
"""
from __future__ import annotations

from typing import Any

from ticketing import audit
from ticketing.audit import Actor
from ticketing.models import Case
from ticketing.numbering import next_case_number
from ticketing.prepared import Statements, on_cursor
from ticketing.rows import cursor_insert, insert_on_cursor
from ticketing.workflow import Workflow


def accept_on_cursor(workflow: Workflow, statements: Statements, cursor: Any, actor: Actor,
                     **request: Any) -> tuple[int, str]:
    """`workflow.accept(actor, **request)` written on `cursor` (its transaction held by the caller);
    returns the new case's id and number. `workflow` supplies the rules, calendar and clock; its
    session is not used."""
    case, event = workflow.new_case(actor, **request)
    case["number"] = next_case_number(on_cursor(statements, cursor), case["accepted_at"].astimezone(workflow.calendar.tz))
    case_id = insert_on_cursor(statements.prepared(cursor_insert(Case)), cursor, Case, case)
    audit.record_on_cursor(statements, cursor, actor, "accept", **workflow.event_on(
        case_id, confidential=case["confidential"], channel=event.pop("channel"), call_id=case["created_by_call_id"],
        data=event))
    return case_id, case["number"]
