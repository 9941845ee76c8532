"""Provisional deadlines counted again once a year's holiday arrangement is known (T1, T3, A1).

A deadline counted over a year with no published arrangement carries its basis
(`ticketing.deadlines`). When the arrangement arrives -- an override entered, or a `chinesecalendar`
that knows the year -- every such deadline is counted again from the same start and steps: the
new date is stored, whether it was met is judged again where the step it limits already happened,
the change is audited with the old and new dates, the marker goes once no unknown year is left in
the count, and a unit whose open deadline moved earlier is told.

Pure Python: no web, telephony or database imports besides the store's own models.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, union

from ticketing import audit
from ticketing.audit import Actor
from ticketing.deadlines import met as kept, read_due
from ticketing.enums import ACTIVE_WORK_ORDER_STATUSES, CaseStatus, RequestState
from ticketing.inquiry_model import Inquiry
from ticketing.models import Case, WorkOrder
from ticketing.writer import Changes

__all__ = ["DeadlineMove", "correct_deadlines_if_calendar_changed", "correct_provisional_deadlines", "marked_case_ids"]

log = logging.getLogger("ticketing.deadline_correction")

# deadline column -> (the moment the step it limits happened, whether it was in time)
_WORK_ORDER_STEPS = {
    "notify_due_at": ("notified_at", "notify_met"),   # R8.2
    "report_due_at": ("reported_at", "report_met"),   # R8.3
    "return_due_at": (None, None),                    # R8.6: a limit on asking, nothing judged
}
_CASE_STEPS = {
    "dispatch_due_at": ("dispatched_at", "dispatch_met"),  # R7.3
    "deadline_at": (None, None),                           # the latest report limit, judged per order
    "callback_due_at": ("callback_done_at", "callback_met"),  # R7.4
    "close_due_at": ("closed_at", "close_met"),               # R7.5
}
_INQUIRY_STEPS = {"explanation_due_at": ("explained_at", "explanation_met")}  # R6.1
# What a unit's clerk reads in the notice.
_LABELS = {"notify_due_at": "告知时限", "report_due_at": "办结时限", "return_due_at": "退回时限"}


@dataclass(frozen=True)
class DeadlineMove:
    """One deadline counted again."""

    case_number: str
    work_order_id: int | None
    column: str
    old: datetime
    new: datetime
    still_provisional: bool


def marked_case_ids(session) -> list[int]:
    """Cases with a provisional deadline on the case or on one of its work orders."""
    marked = union(select(Case.id).where(Case.provisional_deadlines.is_not(None)),
                   select(WorkOrder.case_id).where(WorkOrder.provisional_deadlines.is_not(None)))
    return sorted(session.execute(marked).scalars())


def correct_provisional_deadlines(workflow: Any, actor: Actor = audit.SYSTEM) -> list[DeadlineMove]:
    """Count every provisional deadline again on the workflow's calendar; returns what changed.

    Deadlines whose count still crosses an unknown year and lands on the same date are left alone
    (nothing was learnt about them). The caller commits.
    """
    moves: list[DeadlineMove] = []
    for case_id in marked_case_ids(workflow.session):
        moves.extend(_correct_case(workflow, workflow.get_case(case_id), actor))
    marked = select(Inquiry).where(Inquiry.provisional_deadlines.is_not(None)).order_by(Inquiry.id)
    for inquiry in workflow.session.execute(marked).scalars().all():
        moves.extend(_correct_inquiry(workflow, inquiry, actor))
    return moves


def _correct_inquiry(wf: Any, inquiry: Inquiry, actor: Actor) -> list[DeadlineMove]:
    """An inquiry's explanation limit (R6.1); one on a unit alone is named by its number."""
    ch = Changes()
    changes = _recount(wf, ch, inquiry, _INQUIRY_STEPS)
    if not changes:
        return []
    wf._log_inquiry(ch, actor, "deadline_corrected", inquiry, **_event_data(changes, ch.view(inquiry), _INQUIRY_STEPS))
    wf._apply(ch)
    label = inquiry.case.number if inquiry.case is not None else f"inquiry-{inquiry.id}"
    return [DeadlineMove(label, inquiry.work_order_id, column, old, new, still)
            for column, (old, new, still) in changes.items()]


def _correct_case(wf: Any, case: Case, actor: Actor) -> list[DeadlineMove]:
    moves: list[DeadlineMove] = []
    ch = Changes()
    for wo in case.work_orders:
        changes = _recount(wf, ch, wo, _WORK_ORDER_STEPS)
        if not changes:
            continue
        _follow_extension(ch, wo, changes)
        for column, (old, new, _still) in changes.items():
            moves.append(DeadlineMove(case.number, wo.id, column, old, new, _still))
            if new < old and wo.status in ACTIVE_WORK_ORDER_STATUSES and _open(wo, column):
                local = new.astimezone(wf.calendar.tz)
                ch.add(wf._notice(wo.unit_id, "deadline_moved",
                                  f"【12345】工单{case.number}/{wo.id}的{_LABELS[column]}按节假日安排更正为"
                                  f"{local:%Y-%m-%d %H:%M}，比原定提前，请按新时限办理",
                                  work_order_id=wo.id, case_id=wo.case_id))
        wf._log(ch, actor, "deadline_corrected", case, wo, **_event_data(changes, ch.view(wo), _WORK_ORDER_STEPS))
    changes = _recount(wf, ch, case, _CASE_STEPS)
    if changes:
        for column, (old, new, still) in changes.items():
            moves.append(DeadlineMove(case.number, None, column, old, new, still))
        wf._log(ch, actor, "deadline_corrected", case, **_event_data(changes, ch.view(case), _CASE_STEPS))
    if moves:
        wf._touch(ch, case)
        wf._apply(ch)
    return moves


def _recount(wf: Any, ch: Changes, row: Any, steps: dict[str, tuple[str | None, str | None]]) -> dict[str, tuple]:
    """column -> (old, new, still provisional) for each marked deadline whose count changed."""
    changes: dict[str, tuple] = {}
    for column in sorted(row.provisional_deadlines or ()):
        old = read_due(row, column)
        new = wf.deadlines.recount(old)
        if new.provisional and new.at == old.at:
            continue
        wf._due(ch, row, column, new)
        changes[column] = (old.at, new.at, new.provisional)
        done_at, met = steps.get(column, (None, None))
        if met is not None and _judged(row, column) and getattr(row, done_at) is not None:
            ch.set(row, **{met: kept(getattr(row, done_at), new.at)})
    return changes


def _judged(row: Any, column: str) -> bool:
    # A case waiting for the back office again has a new dispatch limit; its dispatched_at is the
    # previous dispatch's and says nothing about the new one.
    return not (column == "dispatch_due_at" and row.status == CaseStatus.PENDING_BACK_OFFICE)


def _open(wo: WorkOrder, column: str) -> bool:
    done_at = _WORK_ORDER_STEPS[column][0]
    return done_at is None or getattr(wo, done_at) is None


def _follow_extension(ch: Changes, wo: WorkOrder, changes: dict[str, tuple]) -> None:
    """The approved extension that set the old report limit shows the new one."""
    if "report_due_at" not in changes:
        return
    old, new, _still = changes["report_due_at"]
    for ext in reversed(wo.extensions):
        if ext.state == RequestState.APPROVED:
            if ext.new_due_at == old:
                ch.set(ext, new_due_at=new)
            return


def _event_data(changes: dict[str, tuple], row: Any, steps: dict) -> dict[str, Any]:
    data: dict[str, Any] = {"changes": {
        column: {"from": old.isoformat(), "to": new.isoformat(), "provisional": still}
        for column, (old, new, still) in changes.items()}}
    judged = {steps[c][1]: getattr(row, steps[c][1]) for c in changes
              if steps.get(c, (None, None))[1] is not None and getattr(row, steps[c][1]) is not None}
    if judged:
        data["met"] = judged
    return data


def correct_deadlines_if_calendar_changed(session: Any, domain: Any, actor: Actor = audit.SYSTEM) -> int:
    """Count provisional deadlines again when the calendar may know more than when they were set:
    once after start, and after the override file changed. Returns how many moved."""
    try:
        changed = domain.reload_calendar()
    except ValueError as exc:  # a bad override file: keep the calendar in use, say why
        log.error("calendar overrides not reloaded: %s", exc)
        changed = False
    if not changed and domain.corrected_revision == domain.calendar.revision:
        return 0
    moves = correct_provisional_deadlines(domain.workflow(session), actor)
    session.flush()
    domain.corrected_revision = domain.calendar.revision
    if moves:
        log.info("calendar: %d provisional deadlines counted again", len(moves))
    return len(moves)
