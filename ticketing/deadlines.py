"""Every deadline of the regulation, counted in one place (T2, T3, T4), and counted again.

A deadline is a `Due`: the moment it falls, what it was counted from, and the steps counted
(working or calendar days). Where a step crossed a year whose holiday arrangement is not published
yet (T1, `WorkCalendar.is_provisional`), the deadline is *provisional*: the row stores its basis in
its `provisional_deadlines` column (column name -> basis) so that, once the arrangement is entered,
`Deadlines.recount` gives the official date from the same start and steps -- the limits of the day
it was set, not whatever the policy says later.

Pure Python: no web, telephony or database imports.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ticketing.calendar import WorkCalendar

__all__ = ["CALENDAR_DAYS", "Deadlines", "Due", "WORKING_DAYS", "met", "read_due", "write_due"]

WORKING_DAYS = "w"
CALENDAR_DAYS = "c"

Step = tuple[str, int]


@dataclass(frozen=True)
class Due:
    """A deadline and how it was counted."""

    at: datetime
    start: datetime
    steps: tuple[Step, ...] = ()
    provisional: bool = False

    @classmethod
    def fixed(cls, at: datetime) -> Due:
        """A moment that is not counted (or counted on official years only): nothing to redo."""
        return cls(at=at, start=at)

    def basis(self) -> dict[str, Any]:
        return {"from": self.start.isoformat(), "steps": [list(step) for step in self.steps]}


def met(done_at: datetime, due_at: datetime) -> bool:
    """Whether a step done at `done_at` kept its deadline: at or before `due_at`. For a report back
    (R8.3) `done_at` is when it reached the center -- in a unit with approval (Article 5 (二) 6),
    when its leader approved it, not when the clerk wrote it."""
    return done_at <= due_at


def read_due(row: Any, column: str) -> Due | None:
    """The deadline in `row.<column>` with its stored basis, if it is provisional."""
    at = getattr(row, column)
    if at is None:
        return None
    basis = (row.provisional_deadlines or {}).get(column)
    if basis is None:
        return Due.fixed(at)
    steps = tuple((kind, int(n)) for kind, n in basis["steps"])
    return Due(at=at, start=datetime.fromisoformat(basis["from"]), steps=steps, provisional=True)


def due_values(marks: dict[str, Any] | None, column: str, due: Due | None) -> dict[str, Any]:
    """The column values that set `column` to `due` on a row whose provisional markers are
    `marks`: the deadline and the markers kept in step (a new dict, so it is written)."""
    marks = dict(marks or {})
    if due is not None and due.provisional:
        marks[column] = due.basis()
    else:
        marks.pop(column, None)
    return {column: None if due is None else due.at, "provisional_deadlines": marks or None}


def write_due(row: Any, column: str, due: Due | None) -> None:
    """Set `row.<column>` and keep its provisional marker in step."""
    for key, value in due_values(row.provisional_deadlines, column, due).items():
        setattr(row, key, value)


class Deadlines:
    """The regulation's deadlines, computed with one policy and one calendar (T3, T4)."""

    def __init__(self, policy: Any, calendar: WorkCalendar) -> None:
        self.policy = policy
        self.calendar = calendar

    # -- counting ---------------------------------------------------------------------------

    def count(self, start: datetime | Due, kind: str, n: int) -> Due:
        """`n` working or calendar days after `start` (a moment or an earlier deadline)."""
        base = start if isinstance(start, Due) else Due.fixed(start)
        at = self._step(base.at, kind, n)
        return Due(at=at, start=base.start, steps=(*base.steps, (kind, n)),
                   provisional=base.provisional or self.calendar.is_provisional(base.at, at))

    def recount(self, due: Due) -> Due:
        """The same deadline counted again from its start, on the calendar as it is now."""
        again = Due.fixed(due.start)
        for kind, n in due.steps:
            again = self.count(again, kind, n)
        return again

    def _step(self, start: datetime, kind: str, n: int) -> datetime:
        if kind == WORKING_DAYS:
            return self.calendar.add_working_days(start, n)
        if kind == CALENDAR_DAYS:
            return self.calendar.add_calendar_days(start, n)
        raise ValueError(f"unknown kind of day {kind!r}")

    # -- the regulation's limits ------------------------------------------------------------

    def notify_due(self, received_at: datetime) -> Due:  # R8.2
        return self.count(received_at, WORKING_DAYS, self.policy.limits.notify_working_days)

    def report_due(self, kind: str, received_at: datetime, *, live: bool = False) -> Due:  # R8.3
        # A three-way call or transfer is answered in the call: due the same office day.
        days = 0 if live else self.policy.limits.report_working_days.for_kind(kind)
        return self.count(received_at, WORKING_DAYS, days)

    def extended(self, report_due: Due, extra_working_days: int) -> Due:  # R8.5
        return self.count(report_due, WORKING_DAYS, extra_working_days)

    def return_due(self, received_at: datetime) -> Due:  # R8.6
        return self.count(received_at, WORKING_DAYS, self.policy.limits.return_working_days)

    def back_office_dispatch_due(self, since: datetime) -> Due:  # R7.3
        return self.count(since, CALENDAR_DAYS, self.policy.limits.back_office_dispatch_days)

    def callback_due(self, deadline: Due) -> Due:  # R7.4
        return self.count(deadline, CALENDAR_DAYS, self.policy.limits.callback_days_after_deadline)

    def close_due(self, deadline: Due) -> Due:  # R7.5
        return self.count(deadline, CALENDAR_DAYS, self.policy.limits.close_days_after_deadline)

    def roster_change_due(self, changed_at: datetime) -> Due:  # R9.1
        return self.count(changed_at, WORKING_DAYS, self.policy.limits.roster_change_working_days)

    def explanation_due(self, asked_at: datetime, working_days: int) -> Due:  # R6.1 inquiry
        # Supervision sets the limit of each inquiry; counted like every other working-day limit (T4).
        return self.count(asked_at, WORKING_DAYS, working_days)
