"""Callback, closing and publishing (R7.4, R7.5, R7.6)."""
from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import bindparam, inspect, select, true, tuple_
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.exc import StaleDataError

from ticketing.audit import Actor
from ticketing.enums import CaseStatus, Role, Satisfaction
from ticketing.errors import DomainError, Forbidden, InvalidInput, NotFound
from ticketing.models import Case
from ticketing.privacy import LABELS, find_personal_data, scrub
from ticketing.workflow.base import RATED, WorkflowBase, _require_role
from ticketing.writer import Changes

_CASES = Case.__table__
# mark_callback_manual_many: one read and one UPDATE for the whole batch, each row checked at the
# version read (the ORM's optimistic check) and its version stepped, as a flush of each case would.
_MANUAL_READ = (select(_CASES.c.id, _CASES.c.number, _CASES.c.status, _CASES.c.confidential, _CASES.c.version)
                .where(_CASES.c.id.in_(bindparam("ids", expanding=True))))
_MANUAL_MARK = (_CASES.update()
                # id IN too: SQLite scans the table for a row-value IN alone
                .where(_CASES.c.id.in_(bindparam("ids", expanding=True)),
                       tuple_(_CASES.c.id, _CASES.c.version).in_(bindparam("seen", expanding=True)))
                .values(callback_manual=true(), updated_at=bindparam("now"), version=_CASES.c.version + 1))


class ClosingSteps(WorkflowBase):
    """Intake: accept, refuse, own, answer directly."""

    # ---- callback and closing (R7.4, R7.5) -----------------------------------------------
    def record_callback(self, actor: Actor, case: Case, *, satisfaction: Satisfaction | str,
                        call_id: int | None = None, note: str = "", expected_version: int | None = None) -> Case:
        """R7.4: the center called the citizen back and asked whether they are satisfied."""
        _require_role(actor, {Role.FRONT_DESK, Role.BACK_OFFICE, Role.SYSTEM}, "R7.4", "record callbacks")
        self._check_version(case, expected_version)
        ch = Changes()
        self._rated(ch, case, satisfaction, source="callback")
        self._log(ch, actor, "callback", case, call_id=call_id, satisfaction=ch.value(case, "satisfaction").value,
                  met=ch.value(case, "callback_met"), note=note)
        self._apply(ch)
        return case

    def record_web_rating(self, actor: Actor, case: Case, *, satisfaction: Satisfaction | str,
                          expected_version: int | None = None) -> Case:
        """R7.4 by web: the citizen rates the reported answer on the web portal, once. It is the
        callback's question answered before the center asked it: the case leaves the callback list
        and goes on as after a callback (R7.5)."""
        _require_role(actor, {Role.SYSTEM}, "R7.4", "record a citizen's own rating")
        self._check_version(case, expected_version)
        ch = Changes()
        self._rated(ch, case, satisfaction, source="web")
        self._log(ch, actor, "web_rating", case, satisfaction=ch.value(case, "satisfaction").value,
                  met=ch.value(case, "callback_met"))
        self._apply(ch)
        return case

    def _rated(self, ch: Changes, case: Case, satisfaction: Satisfaction | str, *, source: str) -> None:
        """R7.4: a reported case's satisfaction, asked once (the case then leaves REPORTED)."""
        self._status(case, {CaseStatus.REPORTED}, "R7.4", "record a callback")
        if not case.callback_required:
            rule = "R7.3c" if case.confidential else "R7.4"
            raise DomainError(rule, f"case {case.number} gets no callback")
        satisfaction = Satisfaction(satisfaction)
        if satisfaction not in RATED:
            raise InvalidInput("R7.4", "a callback result is satisfied, basically satisfied or unsatisfied")
        now = self.now()
        ch.set(case, satisfaction=satisfaction, satisfaction_source=source, callback_done_at=now,
               callback_met=case.callback_due_at is None or now <= case.callback_due_at, callback_manual=False,
               status=CaseStatus.UNSATISFIED if satisfaction == Satisfaction.UNSATISFIED else CaseStatus.AWAITING_CLOSE)
        self._touch(ch, case)

    def mark_callback_manual(self, actor: Actor, case: Case, *, reason: str) -> Case:
        """Automatic callbacks failed: the case goes on the front desk's manual-callback list."""
        self._status(case, {CaseStatus.REPORTED}, "R7.4", "queue a manual callback")
        ch = Changes()
        ch.set(case, callback_manual=True)
        self._touch(ch, case)
        self._log(ch, actor, "callback_manual", case, reason=reason)
        self._apply(ch)
        return case

    def mark_callback_manual_many(self, actor: Actor, reasons: Mapping[int, str]) -> list[int]:
        """`mark_callback_manual` for several cases (case id -> reason) with one read and one UPDATE
        instead of loading and flushing each case: the same R7.4 check (every case `reported`, else
        nothing is marked), version bump and one `callback_manual` audit event per case, in case id
        order. Returns the ids marked. A case changed by someone else since the read: `StaleDataError`,
        as the ORM's flush raises it."""
        ids = sorted(reasons)
        if not ids:
            return []
        self.session.flush()  # ORM changes to these cases go first (their version is then the one read)
        conn = self.session.connection()
        rows = {row[0]: row for row in conn.execute(_MANUAL_READ, {"ids": ids})}
        for case_id in ids:
            row = rows.get(case_id)
            if row is None:
                raise NotFound("case", case_id)
            if row[2] != CaseStatus.REPORTED:
                raise DomainError("R7.4", f"cannot queue a manual callback: case {row[1]} is {row[2]}")
        now = self.now()
        res = conn.execute(_MANUAL_MARK, {"ids": ids, "seen": [(case_id, rows[case_id][4]) for case_id in ids],
                                         "now": now})
        if res.rowcount != len(ids):
            raise StaleDataError(f"manual callback for {len(ids)} cases matched {res.rowcount} rows: "
                                 "changed by someone else")
        identity, mapper = self.session.identity_map, inspect(Case)
        ch = Changes()
        for case_id in ids:
            _id, _number, _status, confidential, seen = rows[case_id]
            case = identity.get(mapper.identity_key_from_primary_key((case_id,)))
            if case is not None:  # the session's object says what the row now says
                set_committed_value(case, "callback_manual", True)
                set_committed_value(case, "updated_at", now)
                set_committed_value(case, "version", seen + 1)
            # R7.3c: event_on keeps a confidential case's reason out of the shared log
            event = self.event_on(case_id, confidential=confidential, data={"reason": reasons[case_id]})
            ch.event(actor, "callback_manual", {**event, "at": now})  # the time written on the case
        self._apply(ch)
        return ids

    def close(self, actor: Actor, case: Case, *, provisional: bool = False, note: str = "",
              expected_version: int | None = None, version_required: bool = False) -> Case:
        """R7.5: satisfied cases are closed and archived; unsatisfied ones only by the back office.
        ``version_required``: the API's clients name the version they closed (issue 11 §7); the
        callback survey closes what it just rated, under its attempt's idempotency key."""
        _require_role(actor, {Role.FRONT_DESK, Role.BACK_OFFICE, Role.SYSTEM}, "R7.5", "close cases")
        self._check_version(case, expected_version, required_for="closing" if version_required else None)
        if actor.role == Role.SYSTEM and not (case.status == CaseStatus.AWAITING_CLOSE
                                              and case.satisfaction_source == "callback" and not provisional):
            # R7.5: the callback survey closes what the citizen rated satisfied in it; nothing else.
            raise Forbidden("R7.5", "the system closes only cases rated satisfied in the callback survey")
        if case.status == CaseStatus.UNSATISFIED:
            if actor.role != Role.BACK_OFFICE:
                raise Forbidden("R7.5", "an unsatisfied case goes to the back office, which closes it provisionally or dispatches again")
            if not provisional:
                raise DomainError("R7.5", "an unsatisfied case can only be closed provisionally")
        elif case.status == CaseStatus.AWAITING_CLOSE:
            self._check_owner(actor, case, "close it")
            if provisional:
                raise DomainError("R7.5", "only an unsatisfied case is closed provisionally")
        elif case.status == CaseStatus.REPORTED and not case.callback_required:
            # R7.3c discipline cases and convenience transfers: no callback, close on report;
            # still by the first-contact operator (R4.1).
            self._check_owner(actor, case, "close it")
        elif case.status == CaseStatus.REPORTED:
            raise DomainError("R7.4", f"case {case.number} waits for its callback before it can be closed")
        else:
            raise DomainError("R7.5", f"cannot close case {case.number}: it is {case.status}")
        now = self.now()
        close_met = case.close_due_at is None or now <= case.close_due_at
        ch = Changes()
        ch.set(case, status=CaseStatus.CLOSED, closed_at=now, closed_provisionally=provisional, close_met=close_met)
        self._touch(ch, case)
        self._log(ch, actor, "close", case, provisional=provisional, met=close_met, note=note)
        self._apply(ch)
        return case

    # ---- publishing (R7.6) ---------------------------------------------------------------
    def publication(self, case: Case) -> dict:
        """R7.6: what publishing would show by default -- the summary (from the request) and the
        answer with every personal datum found replaced -- and what was found in the originals."""
        if case.confidential:
            raise DomainError("R7.3c", "reports to the discipline commission are kept for counting only and never published")
        names, place = [case.citizen_name], case.location
        out: dict = {"findings": []}
        for field, text in (("summary", case.description), ("answer", case.answer or "")):
            out[field] = scrub(text, names=names, location=place)
            out["findings"] += [{"field": field, "kind": kind, "label": LABELS[kind]}
                                for _s, _e, kind in find_personal_data(text, names=names, location=place)]
        return out

    def publish(self, actor: Actor, case: Case, *, public_summary: str | None = None,
                public_answer: str | None = None) -> Case:
        """R7.6: handled cases go online without personal data; R7.3c cases never. What goes public
        is the back office's reviewed summary and answer (by default the redacted ones of
        `publication`); text that still holds personal data is refused."""
        _require_role(actor, {Role.BACK_OFFICE}, "R5.2", "publish cases")
        if case.confidential:
            raise DomainError("R7.3c", "reports to the discipline commission are kept for counting only and never published")
        self._status(case, {CaseStatus.CLOSED}, "R7.6", "publish")
        if case.reject_reason is not None:
            raise DomainError("R7.6", "a request that was not accepted is not published as a handled case")
        suggested = self.publication(case)
        texts = {"summary": suggested["summary"] if public_summary is None else public_summary.strip(),
                 "answer": suggested["answer"] if public_answer is None else public_answer.strip()}
        left = [f"{'摘要' if field == 'summary' else '答复'}中的{LABELS[kind]}"
                for field, text in texts.items()
                for _s, _e, kind in find_personal_data(text, names=[case.citizen_name], location=case.location)]
        if left:
            raise InvalidInput("R7.6", "the text to publish still holds personal data (" + "、".join(left)
                               + "); remove or rewrite it, or publish the suggested redacted text")
        ch = Changes()
        ch.set(case, public_summary=texts["summary"], public_answer=texts["answer"], published_at=self.now())
        self._touch(ch, case)
        self._log(ch, actor, "publish", case)
        self._apply(ch)
        return case
