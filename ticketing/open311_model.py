"""Open311 GeoReport v2 (issue 14 item 2): the registered clients and what each request brought
that a case has no column for.

Its own module because models.py is full; models.py imports it at its end, so the tables are in
`Base.metadata` whichever of the two is imported first. The case itself is an ordinary case made by
the intake workflow (R2.2: every channel lands in the same case store); the web layer is in
`callcenter/open311/`, the pure rules in `ticketing/open311.py`.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ticketing.models import Base, Case


class Open311Client(Base):
    """An application allowed to POST requests: its api_key is kept only as a SHA-256 (a random
    key of 256 bits, like the bearer tokens of callcenter/auth.py), so the store never holds it.
    `window_start` / `window_count`: its requests in the current minute (rate limit)."""

    __tablename__ = "open311_clients"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    key_digest: Mapped[str] = mapped_column(String(64), unique=True)
    rate_limit_per_minute: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    window_start: Mapped[datetime | None]
    window_count: Mapped[int] = mapped_column(Integer, default=0)


class Open311Request(Base):
    """What an Open311 POST brought beside the case: the client, the service and its attributes,
    the place as sent, the submitter's contact fields the case has no column for. Personal data
    (email, device and account ids) stay here and are never returned by the Open311 API."""

    __tablename__ = "open311_requests"
    __table_args__ = (Index("ix_open311_requests_client", "client_id", "requested_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("cases.id"), unique=True)
    client_id: Mapped[int] = mapped_column(ForeignKey("open311_clients.id"))
    service_code: Mapped[str] = mapped_column(String(64))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    lat: Mapped[float | None] = mapped_column(Float)
    long: Mapped[float | None] = mapped_column(Float)
    address_string: Mapped[str] = mapped_column(String(200), default="")
    address_id: Mapped[str] = mapped_column(String(64), default="")
    email: Mapped[str] = mapped_column(String(200), default="")
    device_id: Mapped[str] = mapped_column(String(100), default="")
    account_id: Mapped[str] = mapped_column(String(100), default="")
    media_url: Mapped[str] = mapped_column(String(500), default="")
    requested_at: Mapped[datetime]

    case: Mapped[Case] = relationship()
    client: Mapped[Open311Client] = relationship()
