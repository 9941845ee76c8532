"""The node's heartbeat and the sweep of lost nodes' calls (ticketing/nodes.py, docs/scaling.md).

Runs beside the API of a cluster node's `callcenter run` (system_name set): every `interval_s`,
while its AMI link to its own Asterisk is up, it heartbeats the node's name with the moment that
Asterisk started; then, linked or not, it sweeps: every process does, since a sweep is idempotent
and locks the node it sweeps, so the sweep goes on whichever nodes are left.
"""
from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from callcenter.eventloop import cancel

log = logging.getLogger("callcenter.liveness")


def _now() -> datetime:
    return datetime.now(UTC)


class NodeLiveness:
    """A background service (async start()/stop(), as the app's lifespan runs them)."""

    def __init__(self, node: str, ami, engine, *, interval_s: float = 5.0, grace_s: float = 60.0,
                 clock=_now, holder: str = "") -> None:
        from ticketing.store import make_session_factory

        self.node, self.ami, self.interval_s, self.grace = node, ami, interval_s, timedelta(seconds=grace_s)
        self.sessions = make_session_factory(engine)
        self.clock, self.holder = clock, holder
        self.booted_at: datetime | None = None  # this connection's Asterisk start, once asked
        self.beats = self.swept = 0
        self._fresh = True  # a new AMI connection: Asterisk may have started again
        self._task: asyncio.Task | None = None
        ami.on_connected(self._on_connected)

    @classmethod
    def from_settings(cls, settings, ami, engine) -> NodeLiveness:
        from callback.leader import default_holder

        return cls(settings.system_name, ami, engine, interval_s=settings.node_heartbeat_s,
                   grace_s=settings.node_lost_after_s, holder=default_holder())

    async def _on_connected(self, _ami, _first: bool) -> None:
        self._fresh = True  # ask its uptime before the next beat

    async def _boot_time(self) -> datetime | None:
        """When this node's Asterisk started, from its uptime (asked once per connection). A value
        within a few seconds of the known one is the same start, rounded differently."""
        if not self._fresh and self.booted_at is not None:
            return self.booted_at
        try:
            lines = await self.ami.command("core show uptime seconds", timeout=5)
            uptime = next(int(line.split(":")[1]) for line in lines if "System uptime:" in line)
        except Exception as exc:  # noqa: BLE001 - beat without it; asked again next round
            log.warning("node %s: could not read Asterisk's uptime: %s", self.node, exc)
            return self.booted_at
        booted = self.clock() - timedelta(seconds=uptime + 1)  # +1: the uptime is rounded down
        if self.booted_at is None or abs(booted - self.booted_at) > timedelta(seconds=3):
            self.booted_at = booted
        self._fresh = False
        return self.booted_at

    def _beat(self, booted_at: datetime | None) -> None:
        from ticketing.nodes import heartbeat
        from ticketing.store import session_scope

        with session_scope(self.sessions) as s:
            heartbeat(s, self.node, now=self.clock(), booted_at=booted_at, holder=self.holder)

    def sweep_once(self) -> int:
        from ticketing.nodes import sweep
        from ticketing.store import session_scope

        with session_scope(self.sessions) as s:
            closed = sweep(s, now=self.clock(), grace=self.grace)
        for c in closed:
            # as the call log's other gap closings: what was closed, never whose call it was
            log.warning("node %s lost (%s): %d open call records closed as node_lost", c.node, c.cause,
                        len(c.call_ids))
        return sum(len(c.call_ids) for c in closed)

    async def _run(self) -> None:
        while True:
            try:
                if self.ami.connected:
                    await asyncio.to_thread(self._beat, await self._boot_time())
                    self.beats += 1
                self.swept += await asyncio.to_thread(self.sweep_once)
            except Exception as exc:  # noqa: BLE001 - the store away: the next round tries again
                log.warning("node liveness round failed: %s", exc)
            await asyncio.sleep(self.interval_s)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="node-liveness")

    async def stop(self) -> None:
        await cancel(self._task)
        self._task = None


__all__ = ["NodeLiveness"]
