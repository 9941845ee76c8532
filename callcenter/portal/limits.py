"""The portal's abuse limits (policy.portal), counted by callcenter/throttle.py: requests sent per
client address (an hour) and per phone (a day); wrong progress checks per address and per case
number (an hour). Refused with 429, Retry-After and a message a citizen understands.

A request counts once it became a case (a form sent back for a typo costs nothing); a progress
check counts when it fails, whatever the reason (unknown number or wrong suffix: the same count, so
the limit tells nothing either). Phones are counted by their SHA-256 (callcenter/throttle.py).
"""
from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from callcenter import throttle
from callcenter.errors import THROTTLED, AppError
from ticketing.policy import PortalPolicy

HOUR, DAY = timedelta(hours=1), timedelta(days=1)
SENT_ADDRESS, SENT_PHONE = "web_sent_addr", "web_sent_phone"
CHECK_ADDRESS, CHECK_CASE = "web_check_addr", "web_check_case"
SCOPES = (SENT_ADDRESS, SENT_PHONE, CHECK_ADDRESS, CHECK_CASE)


class PortalThrottled(AppError):
    """429: a portal limit is used up; `retry_after` seconds until it frees."""

    kind = THROTTLED

    def __init__(self, message: str, retry_after: int):
        super().__init__("portal_limit", message)
        self.headers = {"Retry-After": str(max(1, retry_after))}


def _wait(seconds: int) -> str:
    return f"{(seconds + 59) // 60} 分钟" if seconds < 7200 else f"{(seconds + 3599) // 3600} 小时"


def phone_key(phone: str) -> str:
    return throttle.digest_key("".join(ch for ch in phone if ch.isdigit()))


def _sending(limits: PortalPolicy, address: str, phone: str):
    return ((SENT_ADDRESS, address, limits.submissions_per_address_per_hour, HOUR,
             "此网络地址一小时内提交的诉求已达上限，请 {wait}后再试，或拨打 12345。"),
            (SENT_PHONE, phone_key(phone), limits.submissions_per_phone_per_day, DAY,
             "此手机号一天内提交的诉求已达上限，请 {wait}后再试，或拨打 12345。"))


def _checking(limits: PortalPolicy, address: str, number: str):
    return ((CHECK_ADDRESS, address, limits.failed_checks_per_address_per_hour, HOUR,
             "查询信息输错次数过多，请 {wait}后再试，或拨打 12345 查询。"),
            (CHECK_CASE, number, limits.failed_checks_per_case_per_hour, HOUR,
             "此编号输错次数过多，请 {wait}后再试，或拨打 12345 查询。"))


def _refuse_if_spent(session: Session, counters, now: datetime) -> None:
    for scope, key, limit, window, message in counters:
        retry = throttle.retry_after(session, scope, key, limit=limit, window=window, now=now)
        if retry is not None:
            raise PortalThrottled(message.format(wait=_wait(retry)), retry)


def _count(session: Session, counters, now: datetime) -> None:
    for scope, key, _limit, window, _message in counters:
        throttle.count(session, scope, key, window=window, now=now)


def before_sending(session: Session, limits: PortalPolicy, *, address: str, phone: str, now: datetime) -> None:
    _refuse_if_spent(session, _sending(limits, address, phone), now)


def sent(session: Session, limits: PortalPolicy, *, address: str, phone: str, now: datetime) -> None:
    _count(session, _sending(limits, address, phone), now)
    throttle.forget_stale(session, SCOPES, window=DAY, now=now)


def before_checking(session: Session, limits: PortalPolicy, *, address: str, number: str, now: datetime) -> None:
    _refuse_if_spent(session, _checking(limits, address, number), now)


def check_failed(session: Session, limits: PortalPolicy, *, address: str, number: str, now: datetime) -> None:
    _count(session, _checking(limits, address, number), now)


__all__ = ["PortalThrottled", "before_checking", "before_sending", "check_failed", "phone_key", "sent"]
