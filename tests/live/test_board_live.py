"""The live wallboard on the real Asterisk (issue 12 item 4): calls answered fast, answered late,
abandoned in the queue and self-served in the voice menu show on the board's event stream
(/api/v1/board/stream, read over real HTTP) within 2 s of the AMI event that changed them, and in
the day's figures as ticketing.figures.CallFigures counts them.

The operator is a baresip phone (op8002, auto-answer); citizens are originated Local channels put
straight into the queue context (tests/live/test_operators_live.py), the self-served caller goes
through the real voice menu (our FastAGI server, `hotline` fixture: the cross-process port lock) and
looks up a case's progress (menu key 5). "Answered late" is against a service-level threshold of
3 s (Thresholds.answer_within_s, the same definition as 15 s) rather than a real 15 s wait, to keep
the suite short: the late call waits ~5 s for the operator, who is paused meanwhile.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher

import callcenter.auth as auth_module
from callcenter.api.app import create_app
from callcenter.auth import create_user
from callcenter.callcontrol import CallControl
from callcenter.callcontrol.wallboard import day_figures, today
from callcenter.simulate import simulate_call
from tests.conftest import PASSWORD
from tests.live.phones import operator_phones
from ticketing.audit import SYSTEM
from ticketing.enums import CaseKind, Channel
from ticketing.figures import CallFigures, Thresholds
from ticketing.store import session_scope

pytestmark = pytest.mark.live

OPERATOR = "8002"
THRESHOLD_S = 3.0     # the service level's "answered within" for this test (15 s in service)
LATE_WAIT_S = 5.0     # the late caller waits this long for the paused operator
WITHIN_S = 2.0        # issue 12 item 4: the board shows an AMI event within 2 s
CALLERS = {"fast": "13912300001", "late": "13912300002", "gone": "13912300003", "menu": "051087000009"}


class Board:
    """The API with call control on the install's Asterisk, over the hotline fixture's store and clock;
    served by uvicorn (SSE must really stream). Records when each AMI event reached the link and
    when each board event reached the viewer."""

    def __init__(self, hotline, asterisk):
        self.hotline, self.settings = hotline, asterisk
        engine = hotline.sessions.kw["bind"]
        with session_scope(hotline.sessions) as s:
            create_user(s, username="op", password=PASSWORD, role="front_desk", operator_extension=OPERATOR,
                        now=hotline.clock())
            create_user(s, username="sup", password=PASSWORD, role="supervisor", now=hotline.clock())
        self.cc = CallControl.from_settings(asterisk, hotline.sessions, hotline.domain)
        self.cc.board.thresholds = Thresholds.for_policy(hotline.domain.policy, answer_within_s=THRESHOLD_S)
        self.cc.wrapup.seconds = 1.0
        self.app = create_app(asterisk, domain=hotline.domain, engine=engine, callcontrol=self.cc)
        self.ami_seen: list[tuple[float, str, dict]] = []
        self.board_seen: list[tuple[float, dict]] = []
        self.stream_text: list[str] = []
        self.tasks: list[asyncio.Task] = []
        self.cc.link.on_event(self._seen)

    def _seen(self, msg) -> None:
        name = msg.name or ""
        if name.startswith(("QueueCaller", "Agent", "QueueMember")):
            self.ami_seen.append((time.monotonic(), name, {k: msg.get_first(k) for k in
                                                           ("Uniqueid", "Interface", "Paused", "CallerIDNum")}))

    async def start(self) -> None:
        await self.cc.start()
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.server_task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30)
        r = await self.http.post("/api/v1/auth/token", json={"username": "sup", "password": PASSWORD})
        self.headers = {"Authorization": f"Bearer {r.json()['access_token']}"}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async with self.http.stream("GET", "/api/v1/board/stream", headers=self.headers) as response:
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                self.stream_text.append(line)
                if line.startswith("data: "):
                    event = json.loads(line[6:])
                    if event["type"] == "board":
                        self.board_seen.append((time.monotonic(), event["state"]))

    async def shown(self, what, predicate, timeout: float = 20.0) -> dict:
        """The first board state for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            for _, state in self.board_seen:
                if predicate(state):
                    return state
            assert time.monotonic() < deadline, f"the board never showed {what}"
            await asyncio.sleep(0.05)

    def delay(self, ami_predicate, board_predicate) -> float:
        """Seconds from the (first) AMI event to the first board event after it that shows its effect."""
        at = next(t for t, name, fields in self.ami_seen if ami_predicate(name, fields))
        shown = next(t for t, state in self.board_seen if t >= at and board_predicate(state))
        return shown - at

    async def originate(self, caller: str, hold_seconds: int) -> str:
        """A citizen straight into the queue context, hanging up ``hold_seconds`` after an operator answers."""
        base = f"live-{uuid.uuid4().hex[:10]}"
        reply = await self.cc.link.ami.send_action({
            "Action": "Originate", "Channel": "Local/s@hotline-queue", "Application": "Wait",
            "Data": str(hold_seconds), "CallerID": f'"citizen" <{caller}>', "Async": "true",
            "ChannelId": base, "OtherChannelId": f"{base}-2", "Timeout": "30000"})
        assert reply.success, reply
        return f"{base}-2"

    async def close(self) -> None:
        # a call still running (the test failed) is cancelled while the AMI link is up, so it hangs
        # up its channel rather than leaving a citizen queued for the next test
        for task in self.tasks:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader
        link = self.cc.link
        for chan in list(link.channels.values()):
            if chan.linkedid.startswith("live-") and link.connected:
                with contextlib.suppress(Exception):
                    await link.ami.send_action({"Action": "Hangup", "Channel": chan.name})
        if link.connected:
            with contextlib.suppress(Exception):
                await self.cc.queue.logout(OPERATOR)
        await self.http.aclose()
        self.server.should_exit = True
        await self.server_task  # its lifespan stops the call control


@pytest.fixture
async def board(hotline, asterisk, monkeypatch):
    monkeypatch.setattr(auth_module, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    # today, 10:00 in Shanghai: the menu is open, and the menu's call (stamped by this clock) and the
    # queue's (stamped by Asterisk) fall on the same local day
    local_today = datetime.now(ZoneInfo("Asia/Shanghai")).date()
    hotline.clock.set(f"{local_today.isoformat()}T10:00")
    b = Board(hotline, asterisk)
    await b.start()
    try:
        yield b
    finally:
        await b.close()


def op(state: dict) -> dict | None:
    return next((o for o in state["operators"]["list"] if o["extension"] == OPERATOR), None)


def waiting(state: dict, caller: str) -> bool:
    masked = caller[:3] + "****" + caller[-4:]
    return any(c["caller_number"] == masked for c in state["queue"]["callers"])


async def test_calls_answered_fast_late_abandoned_and_self_served_on_the_board_and_in_the_figures(
        board, hotline, tmp_path):
    cc = board.cc
    with session_scope(hotline.sessions) as s:
        wf = hotline.domain.workflow(s)
        known = wf.accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE, title="社保卡补办",
                          description="咨询社保卡补办", citizen_phone="13800000099")
        known_number = known.number
    with operator_phones(board.settings, tmp_path, [OPERATOR]):
        await cc.queue.login(OPERATOR, "话务员")
        await board.shown("the operator free", lambda s: (op(s) or {}).get("state") == "free")

        # the self-served caller runs through the voice menu meanwhile (20-30 s of prompts)
        menu_call = asyncio.create_task(simulate_call(
            hotline.ami, ["5", known_number.replace("-", "") + "#", ""], caller=CALLERS["menu"],
            hang_up_when_queued=True, timeout=120))
        board.tasks.append(menu_call)  # cancelled (its call hung up) if the test fails before it ends

        # 1. answered at once by the free operator; the citizen hangs up after a few seconds' talk
        fast = await board.originate(CALLERS["fast"], hold_seconds=4)
        # waited for from now: on a loaded machine the 4 s call may be over before the board shows it
        fast_over = asyncio.ensure_future(cc.link.wait_for(
            lambda m: m.name == "AgentComplete" and m.get_first("Uniqueid") == fast, 60))
        await board.shown("the operator busy", lambda s: (op(s) or {}).get("state") == "busy")
        await fast_over
        # after-call work (issue 17 item 3): a second's wrap-up on the board, then free again
        await board.shown("the operator wrapping up", lambda s: (op(s) or {}).get("wrap_up_until") is not None)
        await board.shown("the operator free again", lambda s: (op(s) or {}).get("state") == "free")

        # 2. and 3. the operator pauses: one caller gives up after 2 s, the other waits until unpaused
        await cc.queue.pause(OPERATOR, "after_call_work")
        gone = await board.originate(CALLERS["gone"], hold_seconds=30)
        late = await board.originate(CALLERS["late"], hold_seconds=30)
        await board.shown("both callers waiting", lambda s: waiting(s, CALLERS["late"]) and waiting(s, CALLERS["gone"]))
        await asyncio.sleep(2)  # a duration to wait out: how long the caller who gives up waited
        # (the queue does not answer a waiting caller, so the Wait of the originate never starts: hang up)
        abandoned = asyncio.ensure_future(cc.link.wait_for(
            lambda m: m.name == "QueueCallerAbandon" and m.get_first("Uniqueid") == gone, 10))
        await cc.link.ami.send_action({"Action": "Hangup", "Channel": cc.link.channels[gone].name})
        await abandoned
        await asyncio.sleep(LATE_WAIT_S - 2)  # a duration to wait out: the late caller's wait
        # both waiters before the unpause: on a slow machine the call may end before we look
        connected = asyncio.ensure_future(cc.link.wait_for(
            lambda m: m.name == "AgentConnect" and m.get_first("Uniqueid") == late, 30))
        # the call's end: AgentComplete, or the caller's Hangup where the queue's event is missed
        completed = asyncio.ensure_future(cc.link.wait_for(
            lambda m: m.name in ("AgentComplete", "Hangup") and m.get_first("Uniqueid") == late, 60))
        await asyncio.sleep(0)
        await cc.queue.unpause(OPERATOR)
        await connected
        await asyncio.sleep(1)
        # the caller hangs up, named by its uniqueid (Asterisk finds a channel by name or uniqueid),
        # not by the link's view of it, which a loaded machine may not have caught up with
        if not completed.done():
            await cc.link.ami.send_action({"Action": "Hangup", "Channel": late})
        await completed

        menu = await menu_call
        assert menu.hung_up and not menu.queued, menu

        # the day's figures, once the call log has the calls' ends and the menu its outcome
        expected = {"offered": 3, "answered": 2, "abandoned": 1, "self_served": 1}
        state = await board.shown("the day's figures", lambda s: s["today"] is not None and all(
            s["today"][k] == v for k, v in expected.items()))

    # within 2 s of the AMI event: a caller joining, the operator answering, a caller abandoning,
    # the operator pausing with a reason
    delays = {
        "join": board.delay(lambda n, f: n == "QueueCallerJoin" and f["Uniqueid"] == late,
                            lambda s: waiting(s, CALLERS["late"])),
        # the queue takes the caller off (QueueCallerLeave) as it connects them (AgentConnect)
        "answered": board.delay(lambda n, f: n in ("QueueCallerLeave", "AgentConnect") and f["Uniqueid"] == fast,
                                lambda s: (op(s) or {}).get("state") == "busy" and not waiting(s, CALLERS["fast"])),
        "abandoned": board.delay(lambda n, f: n in ("QueueCallerLeave", "QueueCallerAbandon") and f["Uniqueid"] == gone,
                                 lambda s: not waiting(s, CALLERS["gone"])),
        "paused": board.delay(lambda n, f: n == "QueueMemberPause" and f["Paused"] == "1",
                              lambda s: (op(s) or {}).get("paused_reason") == "after_call_work"),
    }
    assert all(d <= WITHIN_S for d in delays.values()), delays

    # by hand: fast answered within 3 s, late after ~5 s, one abandoned: 接通率 2/3, service level 1/3;
    # the menu call and the three queue calls are the day's 4 inbound calls, 1 self-served
    today_shown = state["today"]
    assert today_shown["answer_rate"] == {"numerator": 2, "denominator": 3, "rate": 2 / 3}
    assert today_shown["answered_within"] == {"numerator": 1, "denominator": 3, "rate": 1 / 3}
    assert (today_shown["inbound"], today_shown["answer_within_s"]) == (4, THRESHOLD_S)
    with session_scope(hotline.sessions) as s:
        period = today(hotline.clock(), board.cc.board.thresholds)
        assert today_shown == day_figures(s, period, board.cc.board.thresholds)
        rows = {r.call_id: r for r in CallFigures(s, board.cc.board.thresholds).queue_calls(period)}
    waits = sorted(r.wait_s for r in rows.values() if r.answered)
    assert waits[0] <= THRESHOLD_S < LATE_WAIT_S - 1 <= waits[1], waits

    # no caller's number in clear anywhere on the stream
    text = "\n".join(board.stream_text)
    assert not [c for c in CALLERS.values() if c in text]
    assert "139****0002" in text

