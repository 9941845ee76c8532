"""The citizen's own progress check (国办发〔2020〕53号: citizens look up progress themselves) and
rating (R7.4 by web).

The case number and the last four digits of the phone the request came from open a case. A wrong
suffix, an unknown number and an R7.3c report (never shown outside the discipline commission) all
get the same answer, by the same path: one query by number, one constant-time comparison with a
suffix that is never four digits when there is no case, the same counting of the failure. What is
shown is the procedure (status, units, deadline) and the answer as published (R7.6) or, until
then, the unit's answer with personal data masked (ticketing/privacy.py): never the citizen's name,
phone, address or the words of the request.
"""
from __future__ import annotations

import hmac
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.errors import NOT_FOUND, REFUSED, AppError
from callcenter.portal import limits
from callcenter.portal.forms import ProgressOut
from callcenter.portal.intake import WEB
from ticketing.domain import Domain
from ticketing.enums import CaseStatus, WorkOrderStatus
from ticketing.models import Case
from ticketing.numbering import normalize_case_number
from ticketing.open311 import open311_status
from ticketing.privacy import scrub

GONE = frozenset({WorkOrderStatus.CANCELLED, WorkOrderStatus.RETURNED})  # no longer the case's units
NO_SUFFIX = "none"  # what a missing case is compared with: never four digits
ANSWERED = frozenset({CaseStatus.REPORTED, CaseStatus.AWAITING_CLOSE, CaseStatus.UNSATISFIED, CaseStatus.CLOSED})


class NotShown(AppError):
    kind = NOT_FOUND

    def __init__(self):
        super().__init__("not_found", "编号或手机号后四位不正确，请核对后再试。如需帮助请拨打 12345。")


class NotRateable(AppError):
    kind = REFUSED

    def __init__(self, message: str):
        super().__init__("R7.4", message)


def _suffix(phone: str) -> str:
    digits = "".join(ch for ch in phone if ch.isdigit())
    return digits[-4:] if len(digits) >= 4 else NO_SUFFIX


def open_case(session: Session, domain: Domain, number: str, suffix: str, *, address: str, now: datetime) -> Case:
    """The case the number and suffix open, or NotShown (the failure counted and committed)."""
    rules = domain.policy.portal
    key = normalize_case_number(number) or number
    limits.before_checking(session, rules, address=address, number=key, now=now)
    case = session.execute(select(Case).where(Case.number == key)).scalar_one_or_none()
    expected = _suffix(case.citizen_phone) if case is not None and not case.confidential else NO_SUFFIX
    if not hmac.compare_digest(expected.encode(), suffix.encode()):
        limits.check_failed(session, rules, address=address, number=key, now=now)
        session.commit()
        raise NotShown()
    return case


def may_rate(case: Case) -> bool:
    return case.status == CaseStatus.REPORTED and case.callback_required


def view(case: Case, domain: Domain) -> ProgressOut:
    _state, notes = open311_status(case)
    category = next((c for c in domain.city.categories if c.code == case.category_code), None)
    units = [wo.unit.name for wo in case.work_orders if wo.status not in GONE]
    answer = None
    if CaseStatus(case.status) in ANSWERED and case.answer:
        answer = case.public_answer or scrub(case.answer, names=[case.citizen_name], location=case.location)
    return ProgressOut(
        number=case.number, category=category.name if category else None, status=str(case.status.value),
        status_text=notes, accepted_at=case.accepted_at, units=list(dict.fromkeys(units)),
        deadline_at=case.deadline_at, answer=answer, reported_at=case.reported_at,
        satisfaction=case.satisfaction.value if case.satisfaction else None, may_rate=may_rate(case))


def rate(session: Session, domain: Domain, case: Case, satisfaction: str) -> Case:
    """R7.4 by web, once: the caller commits."""
    if not may_rate(case):
        if case.satisfaction is not None:
            raise NotRateable("本件已评价过，每件只能评价一次。")
        raise NotRateable("承办单位答复后才能评价。")
    return domain.workflow(session).record_web_rating(WEB, case, satisfaction=satisfaction)


__all__ = ["NotShown", "open_case", "rate", "view"]
