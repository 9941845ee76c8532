"""The heartbeat row of each node of a cluster (ticketing/nodes.py; migration 0026). Its own module
so models.py can import it at its end (ticketing/nodes.py needs the audit log, which needs models)."""
from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ticketing.models import Base


class NodeHeartbeat(Base):
    """One row per node that has ever heartbeaten (migration 0026)."""

    __tablename__ = "node_heartbeats"

    node: Mapped[str] = mapped_column(String(40), primary_key=True)
    beat_at: Mapped[datetime]  # the process's last sign of life, linked to its Asterisk
    booted_at: Mapped[datetime | None]  # when that Asterisk started (from its uptime)
    holder: Mapped[str] = mapped_column(String(200), default="")  # host:pid of the process, for people
    swept_at: Mapped[datetime | None]  # the beat_at whose silence was swept (a lost node is swept once)
    boot_swept_at: Mapped[datetime | None]  # the booted_at whose earlier life was swept
