"""Queue membership shared by the application processes of several Asterisk nodes (docs/scaling.md).

Every node runs the same queue; an operator logs in, pauses or leaves through whichever process the
console reaches, and every node's queue must follow. The wanted membership (who, paused, why) is kept
in the shared database; each process publishes its operators' changes and, every `interval`,
makes its own node's queue match the table (`QueueService.sync_shared`). Which operator is free is
not decided here: the SIP front refuses a second call to a busy operator.

The table is operational state, not the domain's: created on first use like callback/leader.py's.
"""
from __future__ import annotations

import asyncio
import logging

from sqlalchemy import (
    Boolean,
    Column,
    Engine,
    MetaData,
    String,
    Table,
    delete,
    select,
    update,
)

from callcenter.eventloop import cancel

log = logging.getLogger("callcenter.callcontrol.membership")

metadata = MetaData()
membership_table = Table(
    "queue_membership", metadata,
    Column("queue", String(80), primary_key=True),
    Column("extension", String(16), primary_key=True),
    Column("name", String(200), nullable=False, default=""),
    Column("paused", Boolean, nullable=False, default=False),
    Column("reason", String(40), nullable=False, default=""),
)


class SharedMembership:
    """The wanted members of one queue, in the shared database."""

    def __init__(self, engine: Engine, queue: str) -> None:
        self.engine, self.queue = engine, queue
        metadata.create_all(engine, checkfirst=True)

    def put(self, extension: str, name: str, paused: bool, reason: str) -> None:
        t = membership_table
        where = (t.c.queue == self.queue) & (t.c.extension == extension)
        with self.engine.begin() as conn:
            done = conn.execute(update(t).where(where).values(name=name, paused=paused, reason=reason)).rowcount
            if not done:
                conn.execute(t.insert().values(queue=self.queue, extension=extension, name=name, paused=paused,
                                               reason=reason))

    def remove(self, extension: str) -> None:
        t = membership_table
        with self.engine.begin() as conn:
            conn.execute(delete(t).where((t.c.queue == self.queue) & (t.c.extension == extension)))

    def load(self) -> dict[str, tuple[str, bool, str]]:
        """extension -> (name, paused, reason)."""
        t = membership_table
        with self.engine.connect() as conn:
            rows = conn.execute(select(t.c.extension, t.c.name, t.c.paused, t.c.reason).where(t.c.queue == self.queue))
            return {ext: (name, bool(paused), reason) for ext, name, paused, reason in rows}


class MembershipSync:
    """Runs `queue.sync_shared()` every `interval` seconds while started."""

    def __init__(self, queue, interval: float = 1.0) -> None:
        self.queue, self.interval = queue, interval
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="queue-membership-sync")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None

    async def _run(self) -> None:
        while True:
            if self.queue.link.connected:
                try:
                    await self.queue.sync_shared()
                except Exception as exc:  # noqa: BLE001 - the next round tries again; never die
                    log.warning("queue membership sync failed: %s", exc)
            await asyncio.sleep(self.interval)


__all__ = ["MembershipSync", "SharedMembership", "membership_table"]
