"""What the voice menu's survey and notice calls need of the callback side (callback/attempts.py,
callback/notify.py): ports given by the composition root (callcenter/runtime.py), so agi/ imports
no callback code."""
from __future__ import annotations

from typing import Protocol

from sqlalchemy.orm import Session

from ticketing.domain import Domain


class SurveyLedger(Protocol):
    """The callback scheduler's side of the survey (callback/attempts.py), given by callcenter."""

    def record_survey_answer(self, session: Session, domain: Domain, *, key: str, case_number: str, value: str,
                             call_id: int | None = None) -> dict: ...

    def finish_survey(self, session: Session, domain: Domain, *, key: str, satisfaction: str | None,
                      call_id: int | None = None, reason: str = "") -> str | None: ...


class NoticeLedger(Protocol):
    """The notice deliverer's side of a voice notice (callback/notify.py), given by callcenter."""

    def acknowledge(self, session: Session, domain: Domain, key: str, *, call_id: int | None = None) -> bool: ...

    def citizen_facts(self, session: Session, domain: Domain, key: str) -> dict[str, str] | None: ...
