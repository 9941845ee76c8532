"""Health and metrics on the real Asterisk (issue 19 item 2): with citizens waiting in the 12345
queue, /metrics' queue figures are Asterisk's own (QueueSummary); when the AMI link drops, /readyz
says 503 naming it within 5 s, and 200 again once the link is back.

The link is dropped with a small TCP relay between our AMI client and Asterisk: cutting the relay
closes the client's connection the way a dead Asterisk or network does, and refusing new ones
keeps it down until the relay listens again, without disturbing other sessions on the shared PBX
(a `manager reload` would drop theirs too).
"""
from __future__ import annotations

import asyncio
import contextlib
import socket
import time
import uuid
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from callback.leader import leadership_for
from callcenter.api.app import create_app
from callcenter.callcontrol import CallControl
from callcenter.callcontrol.state import QUEUE
from tests.conftest import CONFIG_DIR, FakeClock
from ticketing.domain import Domain
from ticketing.seed import seed_units
from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

pytestmark = pytest.mark.live

NOW = datetime(2026, 3, 4, 2, 0, tzinfo=UTC)  # Wednesday 10:00 Shanghai


class Relay:
    """TCP relay 127.0.0.1:port -> Asterisk's AMI; ``cut()`` drops every connection and refuses new
    ones, ``resume()`` listens again on the same port."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.server: asyncio.base_events.Server | None = None
        self.writers: list[asyncio.StreamWriter] = []
        self.tasks: set[asyncio.Task] = set()

    async def resume(self) -> None:
        self.server = await asyncio.start_server(self._accept, "127.0.0.1", self.port, reuse_address=True)
        self.port = self.server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        task = asyncio.current_task()
        self.tasks.add(task)
        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self.tasks.discard(task)

    async def cut(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()


@pytest.fixture
async def stack(asterisk, tmp_path):
    """The API with call control on the install's Asterisk (through the relay), over a fresh store
    whose scheduler lease another process holds, and a socket where the settings say FastAGI is."""
    url = f"sqlite:///{tmp_path / 'health.db'}"
    upgrade(url)
    base = Domain.load(CONFIG_DIR)
    domain = Domain(policy=base.policy, calendar=base.calendar, city=base.city, clock=FakeClock(NOW))
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        seed_units(s, domain.city, domain.clock())
    leadership = leadership_for(engine, "elsewhere:1")
    assert leadership.try_acquire()
    agi = socket.socket()
    agi.bind(("127.0.0.1", 0))
    agi.listen()
    relay = Relay(asterisk.ami_host, asterisk.ami_port)
    await relay.resume()
    settings = asterisk.model_copy(update={"ami_port": relay.port, "agi_port": agi.getsockname()[1],
                                           "recordings_min_free_mb": 1, "state_dir": tmp_path})
    cc = CallControl.from_settings(settings, sessions, domain)
    app = create_app(settings, domain=domain, engine=engine, callcontrol=cc)
    await cc.start()
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 40000)),
                             base_url="http://hotline")
    try:
        yield app, cc, relay, http
    finally:
        await http.aclose()
        for chan in list(cc.link.channels.values()):  # our citizens only: the PBX is shared
            if chan.linkedid.startswith("live-health-") and cc.link.connected:
                with contextlib.suppress(Exception):
                    await cc.ami.send_action({"Action": "Hangup", "Channel": chan.name})
        await cc.stop()
        await relay.cut()
        agi.close()
        leadership.release()
        engine.dispose()


def metric(text: str, name: str, **labels) -> float:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
                return s.value
    raise AssertionError(f"{name} {labels} not in /metrics")


async def poll(check, timeout: float):
    """Await ``check()`` until it returns something true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.1)


async def test_metrics_match_asterisk_queue_and_readyz_follows_the_ami_link(stack):
    """Issue 19 done-when: /metrics' queue figures equal Asterisk's own with callers waiting; /readyz
    turns 503 (naming the AMI link) within 5 s of the link dropping and 200 after it returns."""
    app, cc, relay, http = stack
    assert (await http.get("/readyz")).status_code == 200
    tag = uuid.uuid4().hex[:8]
    ours = [f"live-health-{tag}-{i}" for i in range(3)]
    for base in ours:  # citizens straight into the queue context (the menu already ran)
        reply = await cc.ami.send_action({
            "Action": "Originate", "Channel": "Local/s@hotline-queue", "Application": "Wait", "Data": "30",
            "CallerID": '"citizen" <13900000000>', "Async": "true", "ChannelId": base,
            "OtherChannelId": f"{base}-2", "Timeout": "30000"})
        assert reply.success, reply
    await poll(lambda: asyncio.sleep(0, all(f"{b}-2" in cc.link.queue.callers for b in ours)), 10)

    async def same_as_asterisk():
        # Other sessions share this PBX: compare a scrape with the summary read right after it,
        # until the two were taken with no caller joining or leaving between them.
        text = (await http.get("/metrics")).text
        _, items = await cc.ami.send_action_list({"Action": "QueueSummary", "Queue": QUEUE})
        summary = items[0]
        ours_now = {
            "callers": metric(text, "callcenter_queue_callers"),
            "logged_in": sum(metric(text, "callcenter_queue_operators", state=s)
                             for s in ("free", "busy", "paused", "unavailable")),
            "available": metric(text, "callcenter_queue_operators", state="free"),
        }
        theirs = {"callers": float(summary.get_first("Callers")), "logged_in": float(summary.get_first("LoggedIn")),
                  "available": float(summary.get_first("Available"))}
        longest = (metric(text, "callcenter_queue_longest_wait_seconds"), float(summary.get_first("LongestHoldTime")))
        # and until Asterisk counts a wait of a second or more, so the longest wait is compared too
        return (ours_now, theirs, longest) if ours_now == theirs and longest[1] >= 1 else None

    ours_now, theirs, (our_longest, their_longest) = await poll(same_as_asterisk, 10)
    assert theirs["callers"] >= 3
    assert abs(our_longest - their_longest) <= 1.5  # Asterisk reports whole seconds, read a moment apart

    await relay.cut()  # the AMI link drops (and cannot come back yet)
    dropped = time.monotonic()

    async def unready():
        r = await http.get("/readyz")
        return r if r.status_code == 503 else None

    r = await poll(unready, 5)
    assert r.json()["failing"] == ["ami"] and time.monotonic() - dropped < 5
    assert metric((await http.get("/metrics")).text, "callcenter_ami_link_up", link="callcontrol") == 0

    await relay.resume()

    async def ready():
        r = await http.get("/readyz")
        return r if r.status_code == 200 else None

    await poll(ready, 10)
    text = (await http.get("/metrics")).text
    assert metric(text, "callcenter_ami_link_up", link="callcontrol") == 1
    assert metric(text, "callcenter_ami_reconnects_total", link="callcontrol") == 1
