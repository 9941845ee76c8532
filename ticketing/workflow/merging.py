"""Merging a repeated request (重复诉求并单, 国办函〔2025〕66号): the back office closes a duplicate
case into the open case it repeats. What counts as a repeat is `ticketing.repeats`.

The duplicate is closed as merged (no answer of its own, no callback, not assessed) and linked to
the surviving case; its citizen is told the answer with the surviving case (the units handling it
are told a repeated request was merged in). Both cases get an audit event.

The surviving case's callback (R7.4) reaches the citizen of every case merged into it: who is owed
that call is `callback.linked`; the rating they give is kept on their own (merged) case by
`record_merged_callback`, where it counts in no figure of its own (ticketing.figures.cases).
"""
from __future__ import annotations

from sqlalchemy import select

from ticketing.audit import Actor
from ticketing.enums import (
    ACTIVE_WORK_ORDER_STATUSES,
    OPEN_CASE_STATUSES,
    CaseStatus,
    Role,
    Satisfaction,
)
from ticketing.errors import DomainError, InvalidInput
from ticketing.merge_model import CaseMerge
from ticketing.models import Case
from ticketing.repeats import open_repeats
from ticketing.workflow.base import ANSWERING_ROLES, RATED, WorkflowBase, _require_role
from ticketing.writer import Changes

RULE = "repeat_merge"
JUDGED = "judged"  # merged on the back office's judgement, not on a ground of ticketing.repeats
MERGEABLE = frozenset({CaseStatus.NEW, CaseStatus.PENDING_BACK_OFFICE})


def merged_answer(survivor_number: str) -> str:
    return f"重复诉求，已并入{survivor_number}办理"


class MergeSteps(WorkflowBase):
    """并单: merge a duplicate case into the case it repeats."""

    def repeats_of(self, case: Case):
        """The open earlier cases this one repeats (the desk's flag)."""
        return open_repeats(self.session, case, self.policy.repeats.within_days)

    def merge(self, actor: Actor, duplicate: Case, survivor: Case, *, expected_version: int | None = None) -> CaseMerge:
        """R5.2: the back office merges `duplicate` (not yet dispatched) into the open `survivor`."""
        _require_role(actor, {Role.BACK_OFFICE}, "R5.2", "merge repeated requests")
        self._check_version(duplicate, expected_version, required_for="merging a case")
        if duplicate.id == survivor.id:
            raise InvalidInput(RULE, f"case {duplicate.number} cannot be merged into itself")
        if duplicate.confidential or survivor.confidential:
            raise DomainError("R7.3c", "a report to the discipline commission is never merged with another case")
        self._status(duplicate, MERGEABLE, RULE, "merge it into another case (only a case not yet dispatched is merged)")
        self._status(survivor, OPEN_CASE_STATUSES, RULE, f"merge case {duplicate.number} into it (it is no longer open)")
        ground = next((r.ground for r in open_repeats(self.session, duplicate, self.policy.repeats.within_days)
                       if r.case_id == survivor.id), JUDGED)
        now = self.now()
        ch = Changes()
        ch.set(duplicate, status=CaseStatus.CLOSED, closed_at=now, answer=merged_answer(survivor.number),
               callback_required=False, assessed=False)
        self._touch(ch, duplicate)
        link = ch.add(CaseMerge(duplicate_case_id=duplicate.id, surviving_case_id=survivor.id, ground=ground,
                                merged_at=now, merged_by_id=actor.user_id))
        self._log(ch, actor, "merge", duplicate, into=survivor.number, ground=ground)
        self._log(ch, actor, "merged_in", survivor, duplicate=duplicate.number, ground=ground)
        for wo in survivor.work_orders:
            if wo.role in ANSWERING_ROLES and wo.status in ACTIVE_WORK_ORDER_STATUSES:
                ch.add(self._notice(wo.unit_id, "repeat_merged",
                                    f"案件{duplicate.number}为同一诉求，已并入{survivor.number}；答复时请一并告知该市民。",
                                    work_order_id=wo.id, case_id=wo.case_id))
        self._apply(ch)
        return link

    def surviving_case(self, case: Case) -> Case | None:
        """The case `case` was merged into (None: it was not merged)."""
        survivor_id = self.session.execute(select(CaseMerge.surviving_case_id)
                                           .where(CaseMerge.duplicate_case_id == case.id)).scalar_one_or_none()
        return None if survivor_id is None else self.session.get(Case, survivor_id)

    def record_merged_callback(self, actor: Actor, duplicate: Case, *, satisfaction: Satisfaction | str,
                               call_id: int | None = None, note: str = "") -> Case:
        """R7.4 for a linked citizen: the surviving case's callback reached the citizen of a case merged
        into it. The rating is theirs: kept on their merged case (which stays closed and is in no
        satisfaction figure), and written to the surviving case's record; the surviving case's own
        status follows its own citizen's rating only."""
        _require_role(actor, {Role.FRONT_DESK, Role.BACK_OFFICE, Role.SYSTEM}, "R7.4", "record callbacks")
        survivor = self.surviving_case(duplicate)
        if survivor is None:
            raise DomainError(RULE, f"case {duplicate.number} was not merged into another case")
        satisfaction = Satisfaction(satisfaction)
        if satisfaction not in RATED:
            raise InvalidInput("R7.4", "a callback result is satisfied, basically satisfied or unsatisfied")
        ch = Changes()
        ch.set(duplicate, satisfaction=satisfaction, satisfaction_source="callback", callback_done_at=self.now())
        self._touch(ch, duplicate)
        self._log(ch, actor, "callback", duplicate, call_id=call_id, satisfaction=satisfaction.value,
                  survivor=survivor.number, note=note)
        self._log(ch, actor, "merged_callback", survivor, call_id=call_id, satisfaction=satisfaction.value,
                  duplicate=duplicate.number)
        self._apply(ch)
        return duplicate
