"""Closed vocabularies of the domain, named after the glossary in REQUIREMENTS.md."""
from __future__ import annotations

from enum import StrEnum


class CaseKind(StrEnum):
    """R2.1: the four kinds of case."""

    CONSULTATION = "consultation"
    SUGGESTION = "suggestion"
    COMPLAINT = "complaint"
    URGENT_HELP = "urgent_help"


class Channel(StrEnum):
    """R2.2: every channel lands in the same case store."""

    LANDLINE = "landline"
    MOBILE = "mobile"
    WEB = "web"
    FAX = "fax"
    SMS = "sms"


class RejectReason(StrEnum):
    """R3.1: the seven grounds for not accepting a request."""

    OUTSIDE_JURISDICTION = "outside_jurisdiction"          # (1)
    MILITARY_OR_POLICE = "military_or_police"              # (2)
    LEGAL_PROCEEDINGS = "legal_proceedings"                # (3)
    SECRETS_OR_PRIVACY = "secrets_or_privacy"              # (4)
    UNLAWFUL_OR_IMMORAL = "unlawful_or_immoral"            # (5)
    UNIT_NOT_JOINED = "unit_not_joined"                    # (6)
    CANNOT_BE_HANDLED = "cannot_be_handled"                # (7)


class CaseStatus(StrEnum):
    NEW = "new"                              # accepted, owner set, not yet answered or dispatched
    REJECTED = "rejected"                    # not accepted (R3.1), referral recorded (R3.2)
    PENDING_BACK_OFFICE = "pending_back_office"  # the back office must dispatch (R7.3, R8.6)
    DISPATCHED = "dispatched"                # work orders out to units
    REPORTED = "reported"                    # answer reported back, callback due (R7.4)
    AWAITING_CLOSE = "awaiting_close"        # rated satisfied or basically satisfied
    UNSATISFIED = "unsatisfied"              # on the back office's list (R7.5)
    CLOSED = "closed"


OPEN_CASE_STATUSES = frozenset(
    {
        CaseStatus.NEW,
        CaseStatus.PENDING_BACK_OFFICE,
        CaseStatus.DISPATCHED,
        CaseStatus.REPORTED,
        CaseStatus.AWAITING_CLOSE,
        CaseStatus.UNSATISFIED,
    }
)


class DispatchMode(StrEnum):
    WORK_ORDER = "work_order"
    THREE_WAY = "three_way"
    TRANSFER = "transfer"


class WorkOrderRole(StrEnum):
    SOLE = "sole"            # the only unit
    LEAD = "lead"            # R7.3h lead unit answers for the case
    CO_UNIT = "co_unit"      # R7.3h reports to the lead
    INDEPENDENT = "independent"  # R7.3h no lead: each unit answers


class WorkOrderStatus(StrEnum):
    DISPATCHED = "dispatched"
    RECEIVED = "received"
    NOTIFIED = "notified"
    REPORTED = "reported"
    RETURN_REQUESTED = "return_requested"
    RETURNED = "returned"
    CANCELLED = "cancelled"


ACTIVE_WORK_ORDER_STATUSES = frozenset(
    {
        WorkOrderStatus.DISPATCHED,
        WorkOrderStatus.RECEIVED,
        WorkOrderStatus.NOTIFIED,
        WorkOrderStatus.RETURN_REQUESTED,
    }
)


class Satisfaction(StrEnum):
    SATISFIED = "satisfied"
    BASICALLY_SATISFIED = "basically_satisfied"
    UNSATISFIED = "unsatisfied"
    NOT_RATED = "not_rated"


class Role(StrEnum):
    FRONT_DESK = "front_desk"
    BACK_OFFICE = "back_office"
    UNIT_STAFF = "unit_staff"
    DISCIPLINE = "discipline"
    SUPERVISOR = "supervisor"
    ADMIN = "admin"
    SYSTEM = "system"  # the IVR, the scheduler


class UnitType(StrEnum):
    DEPARTMENT = "department"
    TOWN = "town"
    ENTERPRISE = "enterprise"
    DISCIPLINE = "discipline"
    CONVENIENCE = "convenience"
    EMERGENCY = "emergency"


class Duty(StrEnum):
    """R5.3: one leader and A/B duty staff."""

    LEADER = "leader"
    A = "A"
    B = "B"


class ApprovalState(StrEnum):
    """Article 5 (二) 6 (呈批, 审结): a clerk's report back waiting for, or decided by, the unit's leader."""

    PENDING = "pending"
    APPROVED = "approved"
    SENT_BACK = "sent_back"


class RequestState(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"


class InquiryReason(StrEnum):
    """R6.1: why supervision (监察局) opens an inquiry (调查, Article 6 (二) 3)."""

    OVERDUE = "overdue"              # work not done within its limit (R8.2, R8.3)
    UNTRUE_REPORT = "untrue_report"  # a report back that was not true (R8.4)
    STAFF_CONDUCT = "staff_conduct"  # a complaint about staff conduct (R7.3d)


class InquiryStatus(StrEnum):
    ASKED = "asked"          # the unit owes its explanation (说明)
    EXPLAINED = "explained"  # explained; supervision's findings are due
    CLOSED = "closed"        # findings and the accountability decision recorded


class AccountabilityDecision(StrEnum):
    """过错问责 (Article 4; Article 6 (二) 3): what supervision decides. The 2011 measures name
    the duty, not the measures; these are the usual graded ones."""

    NONE = "none"            # 不予问责: no fault found
    CRITICISM = "criticism"  # 批评教育
    NOTICE = "notice"        # 通报批评
    REFERRAL = "referral"    # 移送纪检监察机关处理
