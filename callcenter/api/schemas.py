"""Typed request and response bodies. Every input is bounded, so bad input is a clear 422."""
from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, field_serializer

from ticketing.enums import (
    ApprovalState,
    CaseKind,
    CaseStatus,
    Channel,
    DispatchMode,
    Duty,
    RejectReason,
    RequestState,
    Role,
    Satisfaction,
    WorkOrderRole,
    WorkOrderStatus,
)


def _storable(value: str) -> str:
    # PostgreSQL text cannot hold NUL: refuse it here with a clear 422 instead of a driver error.
    if "\x00" in value:
        raise ValueError("text may not contain NUL (\\u0000) characters")
    return value


Storable = AfterValidator(_storable)
Text = Annotated[str, StringConstraints(strip_whitespace=True, max_length=5000), Storable]
ShortText = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200), Storable]
RequiredShort = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200), Storable]
RequiredText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=5000), Storable]
Phone = Annotated[str, StringConstraints(strip_whitespace=True, max_length=40, pattern=r"^[0-9+\-() ]*$")]
Code = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64, pattern=r"^[a-z0-9_\-]+$")]


class Out(BaseModel):
    """Response bodies: every time in UTC (ISO 8601, "Z"), however it was computed."""

    @field_serializer("*", mode="wrap")
    def _utc(self, value, handler):
        if isinstance(value, datetime) and value.tzinfo is not None:
            value = value.astimezone(UTC)
        return handler(value)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorOut(BaseModel):
    """Every refusal: the rule (or the application's code) and why; a few add a field (T1: the year)."""
    model_config = ConfigDict(extra="allow")
    error: str
    detail: str


class LoginIn(Strict):
    username: RequiredShort
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class TokenOut(Out):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime
    username: str
    role: Role
    unit_code: str | None = None
    unit_leader: bool = False  # approves the unit's reports back (Article 5 (二) 6)


class RejectIn(Strict):
    reason: RejectReason
    referral: RequiredText = Field(description="R3.2: the competent body, its contact, where the citizen was sent")
    expected_version: int | None = None


class CaseIn(Strict):
    kind: CaseKind
    channel: Channel
    title: RequiredShort
    description: RequiredText
    category_code: Code | None = None
    citizen_name: ShortText = ""
    citizen_phone: Phone = ""
    citizen_id_number: Annotated[str, StringConstraints(max_length=18, pattern=r"^[0-9Xx]*$")] = ""
    location: ShortText = ""
    reject: RejectIn | None = Field(default=None, description="refuse at intake (R3.1) in the same step")
    dispatch: DispatchIn | None = Field(default=None, description="dispatch in the same step (R7.3: the "
                                        "front desk dispatches the day it accepts); {} follows the category's routing")


class Versioned(Strict):
    expected_version: int | None = Field(default=None, description="the version you saw; 409 if the case moved on")


class IntakeIn(Versioned):
    """A new case completed by the front desk (a fax arrives with only its PDF): the whole request."""

    kind: CaseKind
    title: RequiredShort
    description: RequiredText
    category_code: Code | None = None
    citizen_name: ShortText = ""
    citizen_phone: Phone = ""
    location: ShortText = ""


class AnswerIn(Versioned):
    answer: RequiredText
    satisfaction: Satisfaction
    knowledge_entry_id: int | None = None


class EscalateIn(Versioned):
    note: Text = ""


class ConsentIn(Strict):
    disclaimer_read: bool
    consent: bool


class DispatchIn(Versioned):
    units: list[Code] | None = Field(default=None, max_length=20,
                                     description="unit codes; omitted: the category's routing rule")
    mode: DispatchMode | None = None
    lead: Code | None = None
    instructions: Text = ""


class LiveOutcomeIn(Versioned):
    answer: RequiredText
    satisfaction: Satisfaction


class CallbackIn(Versioned):
    satisfaction: Satisfaction
    note: Text = ""


class RequiredVersion(Strict):
    # Checked by the workflow (one rule for re-dispatch, close, report): missing is a 422 naming it.
    expected_version: int | None = Field(default=None, description="required: the case version you acted on; "
                                         "422 when missing, 409 if the case moved on (issue 11 §7)")


class CloseIn(RequiredVersion):
    provisional: bool = False
    note: Text = ""


class PublishIn(Strict):
    public_summary: Text | None = Field(default=None, description="reviewed summary; omitted: the suggested redacted one")
    public_answer: Text | None = Field(default=None, description="reviewed answer; omitted: the suggested redacted one")


class PublicationOut(Out):
    summary: str
    answer: str
    findings: list[dict] = Field(description="personal data found in the case's own texts: field, kind, label")


class NotifyIn(Strict):
    channel: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32), Storable]
    notified_at: datetime | None = None
    note: Text = ""


class ReportIn(RequiredVersion):
    """``expected_version``: the version of the work order's case (GET /cases/{number})."""

    answer: RequiredText
    satisfaction: Satisfaction | None = None


class ExtensionIn(Strict):
    legal_basis: RequiredText
    extra_working_days: int = Field(ge=1, le=60)


class DecisionIn(Strict):
    approve: bool
    note: Text = ""


class ReturnIn(Strict):
    reason: RequiredText


class UrgeIn(Strict):
    note: Text = ""


class ReportApprovalOut(Out):
    """Article 5 (二) 6: a report back put to the unit's leader (the latest one on a work order),
    and the leader's decision; a sent-back one keeps its text for the clerk to edit."""

    id: int
    work_order_id: int
    case_number: str
    case_version: int = Field(description="the case version to send as expected_version when deciding")
    unit_code: str
    state: ApprovalState
    answer: str
    satisfaction: Satisfaction | None
    submitted_at: datetime
    submitted_by: str | None
    decided_at: datetime | None
    note: str | None = Field(description="why the leader sent it back")
    report_due_at: datetime
    overdue: bool


class ApproveIn(RequiredVersion):
    """``expected_version``: the version of the work order's case (approving applies the report)."""


class SendBackIn(Strict):
    note: RequiredText
    expected_version: int | None = None


class WorkOrderOut(Out):
    id: int
    case_number: str
    unit_code: str
    unit_name: str
    mode: DispatchMode
    role: WorkOrderRole
    status: WorkOrderStatus
    round: int
    instructions: str
    dispatched_at: datetime
    received_at: datetime | None
    notify_due_at: datetime
    notified_at: datetime | None
    notify_channel: str | None
    notify_met: bool | None
    report_due_at: datetime
    reported_at: datetime | None
    report_met: bool | None
    answer: str | None
    reported_satisfaction: Satisfaction | None
    return_due_at: datetime
    return_reason: str | None
    urge_count: int
    overdue: bool
    pending_extension_id: int | None = None
    approval: ReportApprovalOut | None = Field(
        default=None, description="in a unit with approval (Article 5 (二) 6): its latest report put to the leader")
    provisional_deadlines: list[str] = Field(
        default_factory=list,
        description="T1: the deadlines here counted over a year whose holiday arrangement is not published yet "
                    "(暂定); they are corrected when it is entered")


class CaseOut(Out):
    number: str
    version: int
    kind: CaseKind
    channel: Channel
    status: CaseStatus
    category_code: str | None
    title: str
    description: str
    location: str
    citizen_name: str
    citizen_phone: str
    owner: str | None
    accepted_at: datetime
    confidential: bool
    callback_required: bool
    assessed: bool
    reject_reason: RejectReason | None
    referral: str | None
    answer: str | None
    answered_directly: bool
    satisfaction: Satisfaction | None
    satisfaction_source: str | None
    dispatch_due_at: datetime | None
    dispatch_met: bool | None
    deadline_at: datetime | None
    reported_at: datetime | None
    callback_due_at: datetime | None
    callback_met: bool | None
    callback_manual: bool
    close_due_at: datetime | None
    closed_at: datetime | None
    close_met: bool | None
    closed_provisionally: bool
    published_at: datetime | None
    convenience_consent: bool
    overdue: bool
    provisional_deadlines: list[str] = Field(
        default_factory=list,
        description="T1: the deadlines here counted over a year whose holiday arrangement is not published yet "
                    "(暂定); they are corrected when it is entered")
    work_orders: list[WorkOrderOut]
    operator_message: str | None = Field(default=None, description="text the operator reads to the citizen")


class ExtensionOut(Out):
    id: int
    work_order_id: int
    legal_basis: str
    extra_working_days: int
    state: RequestState
    requested_at: datetime
    decided_at: datetime | None
    decision_note: str | None
    old_due_at: datetime
    new_due_at: datetime | None


class EventOut(Out):
    id: int
    at: datetime
    actor: str
    role: str
    action: str
    work_order_id: int | None
    channel: str | None
    call_id: int | None
    data: dict


class RosterIn(Strict):
    duty: Duty
    name: RequiredShort
    phone: Annotated[Phone, StringConstraints(min_length=3)]
    effective_from: AwareDatetime


class RosterOut(Out):
    duty: Duty
    name: str
    phone: str
    valid_from: datetime
    valid_to: datetime | None
    reported_at: datetime
    report_due_at: datetime
    reported_late: bool


class UnitOut(Out):
    code: str
    name: str
    type: str
    joined: bool
    phone: str
    on_duty: list[RosterOut] = []


class CategoryOut(Out):
    code: str
    name: str
    kinds: list[str]
    mode: str
    units: list[str]
    lead: str | None


class UserIn(Strict):
    username: Annotated[str, StringConstraints(strip_whitespace=True, min_length=2, max_length=64, pattern=r"^[A-Za-z0-9_.\-]+$")]
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]  # rules: callcenter.passwords
    role: Role
    display_name: ShortText = ""
    unit_code: Code | None = None
    operator_extension: Annotated[str, StringConstraints(pattern=r"^[0-9]{3,8}$")] | None = None
    unit_leader: bool = False  # approves the unit's reports back (Article 5 (二) 6)


class PasswordIn(Strict):
    """A new password (rules: policy `accounts.password_min_length`, not the user name, not common)."""
    password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class OwnPasswordIn(Strict):
    current_password: Annotated[str, StringConstraints(min_length=1, max_length=200)]
    new_password: Annotated[str, StringConstraints(min_length=1, max_length=200)]


class UnlockIn(Strict):
    """Also lift the lock of a client address (optional)."""
    address: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)] | None = None


class RoleIn(Strict):
    role: Role
    unit_code: Code | None = None
    unit_leader: bool = False


class RevokedOut(Out):
    username: str
    tokens_revoked: int


class UserOut(Out):
    id: int
    username: str
    display_name: str
    role: Role
    unit_code: str | None
    active: bool
    operator_extension: str | None
    unit_leader: bool = False


class VerifyOut(Out):
    ok: bool
    checked: int
    problems: list[str]


class PublicCaseOut(Out):
    number: str
    kind: CaseKind
    category: str | None
    title: str
    summary: str
    accepted_at: datetime
    notified_at: datetime | None
    answer: str | None
    satisfaction: Satisfaction | None
    closed_at: datetime | None
    published_at: datetime
