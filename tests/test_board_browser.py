"""The wallboard page (/app/board, issue 12 item 4) in headless Chromium: it shows what the board's
event stream carries (queue, operators with state and time in state, today's figures, overdue work by
unit), updates when an AMI event changes the queue, counts the time in state itself, its listen /
whisper / barge buttons call the supervise API, and a front-desk operator is turned away (R5.2).

The API runs on a real uvicorn server with the real call link, not connected to an Asterisk: the
AMI events are handed to the link on the server's event loop as Asterisk would send them."""
from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect, sync_playwright

from callcenter.ami.client import AMIClient
from callcenter.ami.protocol import Message
from callcenter.api.app import create_app
from callcenter.callcontrol import CallControl
from callcenter.settings import Settings
from tests.conftest import CONFIG_DIR, PASSWORD
from tests.helpers import actor_named, browser_context, serve
from ticketing import calls
from ticketing.enums import CaseKind, Channel
from ticketing.store import session_scope

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
QUEUE = "hotline-12345"
CALLER = "13912345678"

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def ev(**fields) -> Message:
    return Message(fields.items())


def seed(sessions, domain, clock) -> None:
    """An overdue work order of urban management, and today's two queue calls: one answered after
    5 s, one abandoned (接通率 1/2 = 50.0 %, within 15 s 1/2, abandoned 1)."""
    with session_scope(sessions) as s:
        op = actor_named(s, "op1")
        wf = domain.workflow(s)
        case = wf.accept(op, kind=CaseKind.COMPLAINT, channel=Channel.MOBILE, title="占道经营", description="请处理",
                         citizen_phone=CALLER)
        wf.dispatch(op, case, units=["urban_management"])
    clock.advance(days=30)
    at = clock() - timedelta(minutes=10)
    with session_scope(sessions) as s:
        for uid, kind, data in (("a1", "operator_connected", {"holdtime": 5, "operator": "8001"}),
                                ("a2", "queue_abandoned", {})):
            call = calls.call_row(s, uniqueid=uid, linkedid=uid, caller_number=CALLER, started_at=at)
            calls.add_event(s, call.id, kind="queued", at=at, dedup_key=f"q:{uid}", data={})
            calls.add_event(s, call.id, kind=kind, at=at + timedelta(seconds=5), dedup_key=f"e:{uid}", data=data)


def feed(cc, *events: dict) -> None:
    """AMI events to the link, on the server's loop (where the link lives)."""
    for fields in events:
        cc.board.loop.call_soon_threadsafe(cc.link._on_event, ev(**fields))


def member(ext: str, event: str = "QueueMemberAdded", **fields) -> dict:
    return {"Event": event, "Queue": QUEUE, "Interface": f"PJSIP/op{ext}", "MemberName": f"话务员{ext}",
            "Status": "1", "Paused": "0", "InCall": "0", "CallsTaken": "0", **fields}


@pytest.fixture
def browser_app(seeded, domain, engine, clock, tmp_path):
    cc = CallControl.create(AMIClient("127.0.0.1", 1, "nobody", "nothing"), seeded, domain)
    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine,
                     callcontrol=cc)
    with serve(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield base, browser, cc
        finally:
            browser.close()


def open_board(base, browser, username: str, errors: list):
    context = browser_context(browser, viewport={"width": 1400, "height": 900}, locale="zh-CN",
                              timezone_id="Asia/Shanghai")
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: "Content Security Policy" in msg.text and errors.append(msg.text))
    page.goto(base + "/app/login")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/app/(back|desk)$"))
    page.goto(base + "/app/board")
    return page


def test_r5_2_board_page_shows_the_stream_and_updates(browser_app, seeded, domain, clock):
    base, browser, cc = browser_app
    seed(seeded, domain, clock)
    errors: list[str] = []
    page = open_board(base, browser, "sup1", errors)
    expect(page.locator("body")).to_have_attribute("data-updates", re.compile(r"^[1-9]"))
    expect(page.locator("#answer-rate")).to_have_text("50.0%")
    assert page.locator("#answer-rate").inner_text() == "50.0%"
    assert page.locator("#answer-rate-of").inner_text() == "1/2"
    assert page.locator("#service-level").inner_text() == "50.0%"
    assert page.locator("#abandoned").inner_text() == "1" and page.locator("#offered").inner_text() == "2"
    overdue = page.locator('#overdue tr[data-unit="urban_management"]')
    assert overdue.locator(".report").inner_text() == "1" and overdue.locator(".notify").inner_text() == "1"

    # the queue as Asterisk reports it: two operators (one paused for a meal), one caller waiting
    feed(cc, member("8001"), member("8002", Paused="1", PausedReason="meal"),
         {"Event": "QueueCallerJoin", "Queue": QUEUE, "Uniqueid": "w1", "Linkedid": "w1",
          "Channel": "PJSIP/trunk-w1", "CallerIDNum": CALLER, "Position": "1", "Count": "1"})
    expect(page.locator("#waiting")).to_have_text("1")
    assert page.locator("#free").inner_text() == "1" and page.locator("#paused").inner_text() == "1"
    assert "用餐" in page.locator('tr[data-extension="8002"] .state').inner_text()
    assert page.locator("#callers tbody").inner_text().count("139****5678") == 1

    # the operator takes the call: busy, the caller leaves the queue; listen / whisper / barge appear
    feed(cc, {"Event": "QueueCallerLeave", "Queue": QUEUE, "Uniqueid": "w1", "Count": "0"},
         member("8001", "QueueMemberStatus", Status="2", InCall="1"))
    expect(page.locator("#busy")).to_have_text("1")
    assert page.locator("#waiting").inner_text() == "0"
    row = page.locator('tr[data-extension="8001"]')
    assert row.get_attribute("data-state") == "busy"
    assert [b.inner_text() for b in row.locator("button[data-mode]").all()] == ["监听", "耳语", "强插"]
    assert page.locator('tr[data-extension="8002"] button[data-mode]').count() == 0

    # the time in state counts on in the page, without a new event
    since = row.locator(".since")
    first = since.inner_text()
    assert re.fullmatch(r"\d\d:\d\d", first)
    expect(since).not_to_have_text(first)

    # listen calls the supervise API: sup1 has no phone extension, and the page says what the API said
    before = since.inner_text()
    row.locator('button[data-mode="listen"]').click()
    expect(page.locator("#supervise-status")).to_contain_text("失败")
    assert since.inner_text() >= before  # redrawn after the click, the time in state still counts on
    assert "403" in page.locator("#supervise-status").inner_text()  # NoExtension: no phone to ring

    text = page.content()
    assert CALLER not in text
    page.screenshot(path="/tmp/board.png", full_page=True)
    assert not errors, errors


def test_r5_2_front_desk_is_turned_away_from_the_board(browser_app):
    base, browser, _cc = browser_app
    errors: list[str] = []
    page = open_board(base, browser, "op1", errors)
    page.locator("#board-error", has_text="仅供后台与监察人员").wait_for()
    assert page.locator("#operators tbody tr").count() == 0
    assert not errors, errors
