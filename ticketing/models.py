"""Persistent domain entities (SQLAlchemy 2 typed mappings).

The workflow rules live in `ticketing.workflow`; these classes only hold state. Datetimes are
stored in UTC and always come back timezone-aware, on SQLite as on PostgreSQL.
"""
from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from ticketing.enums import (
    CaseKind,
    CaseStatus,
    Channel,
    DispatchMode,
    Duty,
    RejectReason,
    RequestState,
    Role,
    Satisfaction,
    UnitType,
    WorkOrderRole,
    WorkOrderStatus,
)

if TYPE_CHECKING:  # defined in its own module, imported at the end of this one
    from ticketing.approval_model import ReportSubmission


class UTCDateTime(TypeDecorator):
    """Aware datetimes in, aware UTC datetimes out (SQLite drops the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use an aware datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class StrEnumType(TypeDecorator):
    """Stored as a plain string (adding a value needs no enum migration), read back as the enum."""

    impl = String(32)
    cache_ok = True

    def __init__(self, enum_cls, length: int = 32):
        super().__init__(length)
        self.enum_cls = enum_cls

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        return self.enum_cls(value).value

    def process_result_value(self, value, dialect):
        return None if value is None else self.enum_cls(value)


def _enum(enum_cls, length: int = 32) -> StrEnumType:
    return StrEnumType(enum_cls, length)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime, dict[str, Any]: JSON, list[Any]: JSON}


class MemberUnit(Base):
    __tablename__ = "member_units"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    type: Mapped[UnitType] = mapped_column(_enum(UnitType))
    joined: Mapped[bool] = mapped_column(Boolean, default=True)
    phone: Mapped[str] = mapped_column(String(40), default="")
    # Article 5 (二) 6: its reports back go to its leader for approval first (config/units.yaml)
    report_approval: Mapped[bool] = mapped_column(Boolean, default=False)

    roster: Mapped[list[RosterEntry]] = relationship(back_populates="unit", order_by="RosterEntry.valid_from")


class RosterEntry(Base):
    """R9.1: who held a duty (leader, A, B) at a unit, and when the change was reported."""

    __tablename__ = "roster_entries"
    __table_args__ = (Index("ix_roster_unit_duty", "unit_id", "duty", "valid_from"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("member_units.id"))
    duty: Mapped[Duty] = mapped_column(_enum(Duty, 8))
    name: Mapped[str] = mapped_column(String(100))
    phone: Mapped[str] = mapped_column(String(40))
    valid_from: Mapped[datetime]
    valid_to: Mapped[datetime | None]
    reported_at: Mapped[datetime]
    report_due_at: Mapped[datetime]
    reported_late: Mapped[bool] = mapped_column(Boolean, default=False)

    unit: Mapped[MemberUnit] = relationship(back_populates="roster")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(_enum(Role))
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("member_units.id"))
    password_hash: Mapped[str] = mapped_column(String(200))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    operator_extension: Mapped[str | None] = mapped_column(String(20))
    # Article 5 (二) 6: the unit's leader, who approves its reports back (unit-bound roles only)
    is_unit_leader: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime]

    unit: Mapped[MemberUnit | None] = relationship()


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)

    user: Mapped[User] = relationship()

    # every token of a user is revoked at once (password change, disable)
    __table_args__ = (Index("ix_api_tokens_user", "user_id"),)


class LoginThrottle(Base):
    """Failed logins counted per account name or per client address; a key over the policy's
    limit is locked until `locked_until` (callcenter/accounts.py)."""

    __tablename__ = "login_throttle"
    __table_args__ = (UniqueConstraint("scope", "key", name="uq_login_throttle_scope_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    scope: Mapped[str] = mapped_column(String(16))  # 'account' | 'address'
    key: Mapped[str] = mapped_column(String(200))
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[datetime]
    locked_until: Mapped[datetime | None]


class CaseCounter(Base):
    """Per-day sequence behind human-readable case numbers (20261125-000123)."""

    __tablename__ = "case_counters"

    day: Mapped[str] = mapped_column(String(8), primary_key=True)
    last: Mapped[int] = mapped_column(Integer)


# Rows holding a provisional deadline (migration 0005): the correction reads only these.
PROVISIONAL_SQL = "provisional_deadlines IS NOT NULL"


class Case(Base):
    __tablename__ = "cases"
    __table_args__ = (
        Index("ix_cases_status_deadline", "status", "deadline_at"),
        Index("ix_cases_status_callback_due", "status", "callback_due_at"),
        Index("ix_cases_status_dispatch_due", "status", "dispatch_due_at"),
        Index("ix_cases_caller", "citizen_phone", "status"),
        Index("ix_cases_provisional", "id", postgresql_where=text(PROVISIONAL_SQL), sqlite_where=text(PROVISIONAL_SQL)),
        # figures by period (ticketing.figures, migration 0008)
        Index("ix_cases_accepted_at", "accepted_at"),
        Index("ix_cases_closed_at", "closed_at"),
        Index("ix_cases_dispatch_due_at", "dispatch_due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(20), unique=True)
    kind: Mapped[CaseKind] = mapped_column(_enum(CaseKind))
    channel: Mapped[Channel] = mapped_column(_enum(Channel))
    status: Mapped[CaseStatus] = mapped_column(_enum(CaseStatus))
    category_code: Mapped[str | None] = mapped_column(String(64))

    citizen_name: Mapped[str] = mapped_column(String(100), default="")
    citizen_phone: Mapped[str] = mapped_column(String(40), default="")
    citizen_id_number: Mapped[str] = mapped_column(String(40), default="")
    title: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text)
    location: Mapped[str] = mapped_column(String(200), default="")

    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # R4.1 first-contact operator
    accepted_at: Mapped[datetime]
    created_by_call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", use_alter=True))

    # R3.1 / R3.2
    reject_reason: Mapped[RejectReason | None] = mapped_column(_enum(RejectReason))
    referral: Mapped[str | None] = mapped_column(Text)

    # R7.3c: kept for counting only; content for the discipline commission alone
    confidential: Mapped[bool] = mapped_column(Boolean, default=False)
    callback_required: Mapped[bool] = mapped_column(Boolean, default=True)
    assessed: Mapped[bool] = mapped_column(Boolean, default=True)
    # R7.3f: disclaimer read and consent given before a convenience-service transfer
    convenience_consent_at: Mapped[datetime | None]

    answer: Mapped[str | None] = mapped_column(Text)
    answered_directly: Mapped[bool] = mapped_column(Boolean, default=False)
    satisfaction: Mapped[Satisfaction | None] = mapped_column(_enum(Satisfaction))
    satisfaction_source: Mapped[str | None] = mapped_column(String(32))  # direct, live_call, callback

    # T3: every deadline and whether it was met
    dispatch_due_at: Mapped[datetime | None]   # R7.3 back office, 3 days
    dispatched_at: Mapped[datetime | None]
    dispatch_met: Mapped[bool | None]
    deadline_at: Mapped[datetime | None]        # R8.3 answer due (latest work order)
    reported_at: Mapped[datetime | None]
    callback_due_at: Mapped[datetime | None]    # R7.4
    callback_done_at: Mapped[datetime | None]
    callback_met: Mapped[bool | None]
    callback_manual: Mapped[bool] = mapped_column(Boolean, default=False)
    close_due_at: Mapped[datetime | None]       # R7.5
    closed_at: Mapped[datetime | None]
    close_met: Mapped[bool | None]
    closed_provisionally: Mapped[bool] = mapped_column(Boolean, default=False)
    # T1: deadlines counted over a year with no published arrangement (ticketing.deadlines)
    provisional_deadlines: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    published_at: Mapped[datetime | None]       # R7.6
    public_summary: Mapped[str | None] = mapped_column(Text)
    public_answer: Mapped[str | None] = mapped_column(Text)  # reviewed, without personal data

    updated_at: Mapped[datetime]
    version: Mapped[int] = mapped_column(Integer, nullable=False)

    __mapper_args__ = {"version_id_col": version}

    work_orders: Mapped[list[WorkOrder]] = relationship(
        back_populates="case", order_by="WorkOrder.id", foreign_keys="WorkOrder.case_id"
    )
    owner: Mapped[User | None] = relationship(foreign_keys=[owner_id])


# Work orders still waiting for their report (ticketing.queries.NOT_REPORTED, as literals).
OPEN_WORK_ORDER_SQL = "status IN ('dispatched', 'received', 'notified', 'return_requested')"


class WorkOrder(Base):
    """One dispatch of a case to one member unit (电子工单)."""

    __tablename__ = "work_orders"
    __table_args__ = (
        Index("ix_wo_status_notify_due", "status", "notify_due_at"),
        Index("ix_wo_status_report_due", "status", "report_due_at"),
        Index("ix_wo_unit_status", "unit_id", "status"),
        # T3 "overdue, first 100": only open work orders, already in deadline order, so the page
        # is read straight off the index instead of sorting every overdue one (which grows with
        # the archive). Migration 0002.
        Index("ix_wo_open_report_due", "report_due_at", "id",
              postgresql_where=text(OPEN_WORK_ORDER_SQL), sqlite_where=text(OPEN_WORK_ORDER_SQL)),
        # The same page for one unit (R8.1: what a unit sees every working day).
        Index("ix_wo_unit_open_report_due", "unit_id", "report_due_at", "id",
              postgresql_where=text(OPEN_WORK_ORDER_SQL), sqlite_where=text(OPEN_WORK_ORDER_SQL)),
        Index("ix_work_orders_provisional", "id",
              postgresql_where=text(PROVISIONAL_SQL), sqlite_where=text(PROVISIONAL_SQL)),
        # a case's work orders; figures by period (ticketing.figures, migration 0008)
        Index("ix_wo_case", "case_id"),
        Index("ix_wo_dispatched_at", "dispatched_at"),
        Index("ix_wo_notify_due_at", "notify_due_at"),
        Index("ix_wo_report_due_at", "report_due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("member_units.id"))
    mode: Mapped[DispatchMode] = mapped_column(_enum(DispatchMode))
    role: Mapped[WorkOrderRole] = mapped_column(_enum(WorkOrderRole))
    status: Mapped[WorkOrderStatus] = mapped_column(_enum(WorkOrderStatus))
    round: Mapped[int] = mapped_column(Integer, default=1)  # re-dispatch count (R7.5, R7.7, R8.6)
    instructions: Mapped[str] = mapped_column(Text, default="")

    dispatched_at: Mapped[datetime]
    dispatched_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    received_at: Mapped[datetime | None]
    notify_due_at: Mapped[datetime]
    notified_at: Mapped[datetime | None]
    notify_channel: Mapped[str | None] = mapped_column(String(32))
    notify_met: Mapped[bool | None]
    report_due_at: Mapped[datetime]
    reported_at: Mapped[datetime | None]
    report_met: Mapped[bool | None]
    answer: Mapped[str | None] = mapped_column(Text)
    reported_satisfaction: Mapped[Satisfaction | None] = mapped_column(_enum(Satisfaction))
    return_due_at: Mapped[datetime]
    return_reason: Mapped[str | None] = mapped_column(Text)
    urge_count: Mapped[int] = mapped_column(Integer, default=0)
    last_urged_at: Mapped[datetime | None]
    # thresholds already urged for (deadline keeping urges once per threshold)
    urged_thresholds: Mapped[list[Any]] = mapped_column(JSON, default=list)
    # T1: deadlines counted over a year with no published arrangement (ticketing.deadlines)
    provisional_deadlines: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))

    case: Mapped[Case] = relationship(back_populates="work_orders", foreign_keys=[case_id])
    unit: Mapped[MemberUnit] = relationship()
    extensions: Mapped[list[ExtensionRequest]] = relationship(back_populates="work_order", order_by="ExtensionRequest.id")
    submissions: Mapped[list[ReportSubmission]] = relationship(back_populates="work_order", order_by="ReportSubmission.id")


class ExtensionRequest(Base):
    """R8.5: a unit asks for a longer limit, citing the rule that allows it."""

    __tablename__ = "extension_requests"
    __table_args__ = (Index("ix_extension_requests_wo", "work_order_id"),)  # migration 0008

    id: Mapped[int] = mapped_column(primary_key=True)
    work_order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id"))
    legal_basis: Mapped[str] = mapped_column(Text)
    extra_working_days: Mapped[int] = mapped_column(Integer)
    state: Mapped[RequestState] = mapped_column(_enum(RequestState))
    requested_at: Mapped[datetime]
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None]
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    decision_note: Mapped[str | None] = mapped_column(Text)
    old_due_at: Mapped[datetime]
    new_due_at: Mapped[datetime | None]

    work_order: Mapped[WorkOrder] = relationship(back_populates="extensions")


class AuditEvent(Base):
    """A1: append-only, hash-chained record of every action."""

    __tablename__ = "audit_events"
    __table_args__ = (Index("ix_audit_case", "case_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime]
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_orders.id"))
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    actor_name: Mapped[str] = mapped_column(String(100))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    channel: Mapped[str | None] = mapped_column(String(32))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id", use_alter=True))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHead(Base):
    """One row: the chain's last event. Locked while appending so the chain stays linear."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_id: Mapped[int] = mapped_column(Integer, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))
    count: Mapped[int] = mapped_column(Integer, default=0)


class Call(Base):
    """A2: one call (inbound to 12345, operator leg, or outbound callback)."""

    __tablename__ = "calls"
    __table_args__ = (
        Index("ix_calls_linkedid", "linkedid"),
        Index("ix_calls_caller", "caller_number", "started_at"),
        Index("ix_calls_started_at", "started_at"),  # figures by period (migration 0008)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    uniqueid: Mapped[str] = mapped_column(String(64), unique=True)
    linkedid: Mapped[str] = mapped_column(String(64), default="")
    direction: Mapped[str] = mapped_column(String(16))  # inbound, outbound, internal
    purpose: Mapped[str] = mapped_column(String(32), default="hotline")  # hotline, callback, transfer, conference
    caller_number: Mapped[str] = mapped_column(String(40), default="")
    callee_number: Mapped[str] = mapped_column(String(40), default="")
    started_at: Mapped[datetime]
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    outcome: Mapped[str | None] = mapped_column(String(32))  # self_served, queued, message_left, abandoned, failed, ...
    outcome_reason: Mapped[str | None] = mapped_column(String(64))
    flow_path: Mapped[list[Any]] = mapped_column(JSON, default=list)
    digits: Mapped[list[Any]] = mapped_column(JSON, default=list)
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    operator_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    recording_path: Mapped[str | None] = mapped_column(String(500))
    carrier: Mapped[str] = mapped_column(String(16), default="asterisk", server_default="asterisk")  # its driver

    events: Mapped[list[CallEvent]] = relationship(back_populates="call", order_by="CallEvent.id")


class CallEvent(Base):
    """A2: legs, holds, transfers and conference joins/leaves of a call, each exactly once."""

    __tablename__ = "call_events"
    __table_args__ = (UniqueConstraint("dedup_key", name="uq_call_event_dedup"),
                      Index("ix_call_events_kind_at", "kind", "at"))  # migration 0004

    id: Mapped[int] = mapped_column(primary_key=True)
    call_id: Mapped[int] = mapped_column(ForeignKey("calls.id"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(40))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    dedup_key: Mapped[str] = mapped_column(String(200))

    call: Mapped[Call] = relationship(back_populates="events")


class CallbackAttempt(Base):
    """R7.4: one try at a 回访 call; the intent is written before the call is placed."""

    __tablename__ = "callback_attempts"
    __table_args__ = (Index("ix_callback_state_due", "state", "scheduled_for"),
                      Index("ix_callback_case_state", "case_id", "state"),  # migration 0003
                      # figures: a period's attempts, read from the index alone (0008, 0027)
                      Index("ix_callback_finished_cover", "finished_at", "state", "case_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"))
    attempt_no: Mapped[int] = mapped_column(Integer)
    idempotency_key: Mapped[str] = mapped_column(String(80), unique=True)
    state: Mapped[str] = mapped_column(String(20))  # scheduled, dialing, answered, no_answer, busy, failed, done
    scheduled_for: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    result: Mapped[Satisfaction | None] = mapped_column(_enum(Satisfaction))
    call_id: Mapped[int | None] = mapped_column(ForeignKey("calls.id"))
    detail: Mapped[str | None] = mapped_column(Text)


class UnitNotification(Base):
    """Urges and other notices to a unit's duty staff (delivery by SMS or call can come later)."""

    __tablename__ = "unit_notifications"
    __table_args__ = (Index("ix_unit_notifications_kind_at", "kind", "at"),)  # urges by period (0008)

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("member_units.id"))
    work_order_id: Mapped[int | None] = mapped_column(ForeignKey("work_orders.id"))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))
    at: Mapped[datetime]
    kind: Mapped[str] = mapped_column(String(40))
    recipient_name: Mapped[str] = mapped_column(String(100), default="")
    recipient_phone: Mapped[str] = mapped_column(String(40), default="")
    message: Mapped[str] = mapped_column(Text)
    delivered: Mapped[bool] = mapped_column(Boolean, default=False)


# Models in modules of their own (this one is at its size limit), imported here so their tables are
# always in Base.metadata whichever module is imported first. KnowledgeEntry was defined here before 0015.
from ticketing import (  # noqa: E402,F401,I001
    approval_model, attachment_model, carrier_model, figure_days_model, hot_topic_model, inquiry_model,
    merge_model, missed_call_model, node_model, notification_model, open311_model, queue_days_model, queue_entries)
from ticketing.knowledge_model import KnowledgeEntry  # noqa: E402,F401
