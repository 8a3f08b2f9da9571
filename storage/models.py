"""The tables. Every timestamp is UTC-aware; personal data is stored encrypted (see crypto.py).

Enum-valued columns hold the stable code names of ``storage.enums`` as plain strings, so the
schema does not change when a label does.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, Text, TypeDecorator, UniqueConstraint
from sqlmodel import Field, SQLModel


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class UTCDateTime(TypeDecorator):
    """Timezone-aware datetimes on every backend (SQLite hands back naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(dt.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def _ts(*, index: bool = False, nullable: bool = False, default: bool = True) -> Any:
    kwargs: dict[str, Any] = {"sa_type": UTCDateTime, "index": index, "nullable": nullable}
    if default:
        kwargs["default_factory"] = utcnow
    else:
        kwargs["default"] = None
    return Field(**kwargs)


class Region(SQLModel, table=True):
    """A node of the county → township → village tree. ``path`` is ``/1/4/9/`` (ids from the root)."""

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=64)
    level: str = Field(max_length=16)
    parent_id: int | None = Field(default=None, foreign_key="region.id", index=True)
    path: str = Field(default="", max_length=255, index=True)
    __table_args__ = (UniqueConstraint("parent_id", "name", name="uq_region_parent_name"),)


class Household(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    head_name: str = Field(max_length=32)
    id_number_enc: str | None = Field(default=None, max_length=255)
    id_number_idx: str | None = Field(default=None, max_length=64, index=True)
    phone_enc: str | None = Field(default=None, max_length=255)
    phone_idx: str | None = Field(default=None, max_length=64, index=True)
    village_id: int = Field(foreign_key="region.id", index=True)
    group_name: str = Field(default="", max_length=32)
    address: str = Field(default="", max_length=255)
    category: str = Field(default="ordinary", max_length=16)
    members: int = Field(default=1)
    #: Households without labour capacity stay monitored: 风险消除 is not for them.
    has_labor_capacity: bool = Field(default=True)
    #: Random token behind the household's WeChat QR code (一户一码).
    bind_token: str | None = Field(default=None, max_length=64, unique=True)
    created_at: dt.datetime = _ts()


class WeChatUser(SQLModel, table=True):
    """One WeChat identity (official account or mini-program openid), optionally bound to a household."""

    id: int | None = Field(default=None, primary_key=True)
    app: str = Field(default="oa", max_length=8)  # "oa" official account, "mp" mini-program
    openid: str = Field(max_length=64)
    unionid: str | None = Field(default=None, max_length=64, index=True)
    household_id: int | None = Field(default=None, foreign_key="household.id", index=True)
    name: str = Field(default="", max_length=32)
    phone_enc: str | None = Field(default=None, max_length=255)
    village_id: int | None = Field(default=None, foreign_key="region.id")
    consented_at: dt.datetime | None = _ts(nullable=True, default=False)
    subscribed: bool = Field(default=True)
    created_at: dt.datetime = _ts()
    __table_args__ = (UniqueConstraint("app", "openid", name="uq_wechatuser_app_openid"),)


class StaffUser(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    username: str = Field(max_length=64, unique=True)
    display_name: str = Field(default="", max_length=64)
    password_hash: str = Field(max_length=255)
    role: str = Field(max_length=16)
    region_id: int = Field(foreign_key="region.id", index=True)
    active: bool = Field(default=True)
    failed_logins: int = Field(default=0)
    locked_until: dt.datetime | None = _ts(nullable=True, default=False)
    #: Official-account openid of the staff member, for template notifications.
    wechat_openid: str | None = Field(default=None, max_length=64)
    created_at: dt.datetime = _ts()


class Case(SQLModel, table=True):
    """One report of risk (申报 / 线索), from any channel."""

    id: int | None = Field(default=None, primary_key=True)
    ref: str = Field(max_length=32, unique=True)
    #: Channel-specific idempotency key (``wechat:<openid>:<msgid>``, ``mp:<user>:<key>`` …).
    inbound_key: str | None = Field(default=None, max_length=160, unique=True)
    channel: str = Field(max_length=16)
    household_id: int | None = Field(default=None, foreign_key="household.id", index=True)
    reporter_id: int | None = Field(default=None, foreign_key="wechatuser.id", index=True)
    reporter_name: str = Field(default="", max_length=32)
    reporter_phone_enc: str | None = Field(default=None, max_length=255)
    reporter_phone_idx: str | None = Field(default=None, max_length=64, index=True)
    reporter_id_number_enc: str | None = Field(default=None, max_length=255)
    village_id: int | None = Field(default=None, foreign_key="region.id", index=True)
    #: Copy of the village's Region.path, so staff scoping is one indexed prefix match.
    region_path: str = Field(default="", max_length=255)
    risk_types: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    #: ",illness,housing," for indexed-free filtering with LIKE on every backend.
    risk_codes: str = Field(default=",", max_length=255)
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    urgent: bool = Field(default=False)
    urgent_reasons: str = Field(default="", max_length=500)
    step: str = Field(default="warning", max_length=16, index=True)
    outcome: str | None = Field(default=None, max_length=16, index=True)
    monitoring_type: str | None = Field(default=None, max_length=16)
    outcome_reason: str = Field(default="", max_length=500)
    merged_into_id: int | None = Field(default=None, foreign_key="case.id")
    possible_duplicate_of_id: int | None = Field(default=None, foreign_key="case.id")
    first_aid_at: dt.datetime | None = _ts(nullable=True, default=False)
    assigned_to_id: int | None = Field(default=None, foreign_key="staffuser.id", index=True)
    step_started_at: dt.datetime = _ts()
    due_at: dt.datetime | None = _ts(nullable=True, default=False)
    created_at: dt.datetime = _ts(index=True)
    updated_at: dt.datetime = _ts()
    closed_at: dt.datetime | None = _ts(nullable=True, default=False)
    __table_args__ = (
        # The queue order: urgent first, then by due date; scoped by region prefix.
        Index("ix_case_queue", "closed_at", "urgent", "due_at"),
        Index("ix_case_region_path", "region_path", "urgent", "due_at"),
        # Covers the console's counts per step (open cases of a region): an index-only scan.
        Index("ix_case_counts", "closed_at", "region_path", "step", "urgent", "due_at", "risk_codes"),
    )


class CaseEvent(SQLModel, table=True):
    """The timeline of a case: who did what, when, with which evidence."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    at: dt.datetime = _ts()
    actor_kind: str = Field(max_length=16)  # villager / staff / system
    actor_id: int | None = Field(default=None)
    actor_name: str = Field(default="", max_length=64)
    action: str = Field(max_length=32)
    step: str | None = Field(default=None, max_length=16)
    note: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class Attachment(SQLModel, table=True):
    """Evidence on a case: a WeChat media id (photo, voice) or a stored upload."""

    id: int | None = Field(default=None, primary_key=True)
    case_id: int = Field(foreign_key="case.id", index=True)
    kind: str = Field(max_length=16)  # image / voice / file
    media_id: str | None = Field(default=None, max_length=255)
    url: str | None = Field(default=None, max_length=1024)
    path: str | None = Field(default=None, max_length=512)
    content_type: str | None = Field(default=None, max_length=64)
    size: int | None = Field(default=None)
    created_at: dt.datetime = _ts()


class InboundMessage(SQLModel, table=True):
    """Every WeChat message/event received, unique per (sender, dedupe key); holds the reply for retries."""

    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=64)
    dedupe_key: str = Field(max_length=200)
    msg_type: str = Field(default="", max_length=32)
    received_at: dt.datetime = _ts()
    reply: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    case_id: int | None = Field(default=None, foreign_key="case.id")
    __table_args__ = (UniqueConstraint("source", "dedupe_key", name="uq_inbound_source_key"),)


class Outbox(SQLModel, table=True):
    """A message to send later (customer-service or template), delivered by ``huinong worker``."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=32)
    recipient: str = Field(max_length=64)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    status: str = Field(default="pending", max_length=16)  # pending / sending / sent / failed
    attempts: int = Field(default=0)
    next_attempt_at: dt.datetime = _ts()
    last_error: str = Field(default="", max_length=500)
    dedupe_key: str | None = Field(default=None, max_length=200, unique=True)
    case_id: int | None = Field(default=None, foreign_key="case.id")
    locked_by: str | None = Field(default=None, max_length=64)
    locked_at: dt.datetime | None = _ts(nullable=True, default=False)
    created_at: dt.datetime = _ts()
    sent_at: dt.datetime | None = _ts(nullable=True, default=False)
    __table_args__ = (Index("ix_outbox_due", "status", "next_attempt_at"),)


class AuditLog(SQLModel, table=True):
    """Append-only record of logins, views of unmasked data, steps, merges and exports."""

    id: int | None = Field(default=None, primary_key=True)
    at: dt.datetime = _ts(index=True)
    actor_id: int | None = Field(default=None, index=True)
    actor_name: str = Field(default="", max_length=64)
    action: str = Field(max_length=32)
    target: str = Field(default="", max_length=128)
    detail: str = Field(default="", max_length=1000)
    ip: str = Field(default="", max_length=64)


class KeyValue(SQLModel, table=True):
    """Short-lived shared state (dialogue state, tokens) when no Redis is configured."""

    key: str = Field(primary_key=True, max_length=200)
    value: str = Field(sa_column=Column(Text, nullable=False))
    expires_at: dt.datetime | None = _ts(nullable=True, default=False)


class DeadlineRule(SQLModel, table=True):
    """Working days allowed for a step; ``region_id`` None is the default for every region."""

    id: int | None = Field(default=None, primary_key=True)
    region_id: int | None = Field(default=None, foreign_key="region.id")
    step: str = Field(max_length=16)
    working_days: int
    __table_args__ = (UniqueConstraint("region_id", "step", name="uq_deadline_region_step"),)


class RefCounter(SQLModel, table=True):
    """Per-day sequence behind reference numbers such as ``SB20261122-0007``."""

    day: str = Field(primary_key=True, max_length=8)
    last: int = Field(default=0)


class ApiSession(SQLModel, table=True):
    """Mini-program session tokens: only a hash of the token is stored."""

    token_hash: str = Field(primary_key=True, max_length=64)
    user_id: int = Field(foreign_key="wechatuser.id", index=True)
    created_at: dt.datetime = _ts()
    expires_at: dt.datetime = _ts()
    revoked: bool = Field(default=False)
    #: WeChat's session_key; never leaves the server.
    session_key_enc: str | None = Field(default=None, max_length=255)


class IdempotencyRecord(SQLModel, table=True):
    """The first response to an ``Idempotency-Key`` from one user, and a hash of its request body."""

    id: int | None = Field(default=None, primary_key=True)
    user_id: int = Field(foreign_key="wechatuser.id")
    key: str = Field(max_length=128)
    request_hash: str = Field(max_length=64)
    case_id: int | None = Field(default=None, foreign_key="case.id")
    created_at: dt.datetime = _ts()
    __table_args__ = (UniqueConstraint("user_id", "key", name="uq_idem_user_key"),)
