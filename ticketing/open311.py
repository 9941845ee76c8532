"""Open311 GeoReport v2 (issue 14 item 2): the rules that say what of the procedure an Open311
client may use and see. The web layer (formats, routes, clients) is `callcenter/open311/`.

- Which categories are offered as services, and for which kinds: not urgent help (handled live in a
  call with the unit, R7.3e-g; R8.3 gives it no working days), and not the discipline commission's
  reports on officials (R7.3c: the operator tells the citizen about 12388, and the case is never
  shown to anyone else, so a public API can neither take nor show it).
- Which cases the public API lists (R7.3c: never a confidential one) and how a case's workflow
  status reads there: GeoReport v2 knows only `open` and `closed`; `status_notes` say where in the
  procedure (Articles 3, 7, 8) the case is, in words and without content.
"""
from __future__ import annotations

from typing import Any

from sqlalchemy import Select

from ticketing.enums import CaseKind, CaseStatus, RejectReason
from ticketing.models import Case

# R2.1 kinds a web request can be (urgent help needs the live call, R7.3e-g).
OFFERED_KINDS = (CaseKind.CONSULTATION, CaseKind.SUGGESTION, CaseKind.COMPLAINT)
CLOSED_STATUSES = frozenset({CaseStatus.CLOSED, CaseStatus.REJECTED})

STATUS_NOTES = {
    CaseStatus.NEW: "已受理，等待派单",                       # R7.1, R7.3 the front desk dispatches the same day
    CaseStatus.PENDING_BACK_OFFICE: "已受理，由后台派单",      # R7.3 within 3 days
    CaseStatus.DISPATCHED: "已交办承办单位办理",               # R8.2, R8.3
    CaseStatus.REPORTED: "承办单位已答复，等待回访",            # R7.4
    CaseStatus.AWAITING_CLOSE: "已答复，等待办结",             # R7.5
    CaseStatus.UNSATISFIED: "已答复，诉求人不满意，后台复核中",  # R7.5
    CaseStatus.CLOSED: "已办结",
    CaseStatus.REJECTED: "不予受理",                          # R3.1
}
REJECT_REASONS = {  # R3.1 (1)-(7), as the regulation words them
    RejectReason.OUTSIDE_JURISDICTION: "不属于本市管辖",
    RejectReason.MILITARY_OR_POLICE: "涉军涉警或属110报警事项",
    RejectReason.LEGAL_PROCEEDINGS: "已进入诉讼、仲裁、行政审批或复议程序",
    RejectReason.SECRETS_OR_PRIVACY: "涉及国家秘密、商业秘密或个人隐私",
    RejectReason.UNLAWFUL_OR_IMMORAL: "违反法律法规或社会公德",
    RejectReason.UNIT_NOT_JOINED: "承办单位未加入平台",
    RejectReason.CANNOT_BE_HANDLED: "无法办理或答复",
}


def offered_kinds(category: Any) -> tuple[str, ...]:
    """The kinds an Open311 request of `category` (ticketing.cityconfig.Category) may be; empty
    when the category is not offered at all."""
    if category.route.mode == "discipline":  # R7.3c
        return ()
    return tuple(k for k in category.kinds if k in {kind.value for kind in OFFERED_KINDS})


def listed_cases(stmt: Select) -> Select:
    """A case query narrowed to what the public API lists. R7.3c: a confidential case is never
    listed nor found by its number."""
    return stmt.where(Case.confidential.is_(False))


def open311_status(case: Any) -> tuple[str, str]:
    """(`open` | `closed`, status notes) of a case: where it is in the procedure, no content."""
    status = CaseStatus(case.status)
    notes = STATUS_NOTES[status]
    if status == CaseStatus.REJECTED and case.reject_reason is not None:
        notes = f"{notes}：{REJECT_REASONS[RejectReason(case.reject_reason)]}"
    if status == CaseStatus.CLOSED and case.closed_provisionally:
        notes = "已暂结"  # R7.5: the back office closed it provisionally
    return ("closed" if status in CLOSED_STATUSES else "open"), notes


__all__ = ["CLOSED_STATUSES", "OFFERED_KINDS", "listed_cases", "offered_kinds", "open311_status"]
