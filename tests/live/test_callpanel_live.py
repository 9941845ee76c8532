"""Call actions from the desk page (issue 17 item 2) on the real Asterisk, in headless Chromium:
the operator logs in to the queue from the page, a queued citizen reaches their phone (baresip op8003,
auto-answer), the page's call panel shows the call; a warm transfer to the water company's duty phone
(baresip unit-a) is completed and rated live (R7.4), then a second citizen's call goes three-way with
the water company and the operator leaves and rejoins, and a third is put through to the convenience
service center after the R7.3f disclaimer and consent — all by clicks, each leg in the call log (A2).
"""
from __future__ import annotations

import asyncio
import contextlib
import uuid
from pathlib import Path

import httpx
import pytest
import uvicorn
from argon2 import PasswordHasher
from sqlalchemy import select

import callcenter.auth as auth_module
from callcenter.api.app import create_app
from callcenter.auth import create_user
from callcenter.callcontrol import CallControl
from tests.conftest import CONFIG_DIR, PASSWORD, FakeClock
from tests.live.conftest import IN_HOURS
from tests.live.helpers import AmiSession, hangup_channels
from tests.live.phones import start_phones, tone_wav
from ticketing.domain import Domain
from ticketing.models import Call, CallEvent
from ticketing.seed import seed_units
from ticketing.store import make_engine, make_session_factory, session_scope, upgrade

pytestmark = pytest.mark.live

OPERATOR = "8003"
OUR_CHANNELS = r"^(Local/([0-9]+@unit-phones|s@hotline-queue)-|PJSIP/(op8003|unit-a|unit-b)-)"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture
async def desk(asterisk, tmp_path, monkeypatch):
    """The API (uvicorn, real HTTP for the browser) with call control on the install's Asterisk over a
    fresh SQLite store; user `op` at extension 8003; a logged-in desk page."""
    monkeypatch.setattr(auth_module, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    from playwright.async_api import async_playwright

    url = f"sqlite:///{tmp_path / 'live.db'}"
    upgrade(url)
    clock = FakeClock(IN_HOURS)
    base = Domain.load(CONFIG_DIR)
    domain = Domain(policy=base.policy, calendar=base.calendar, city=base.city, clock=clock)
    engine = make_engine(url)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as s:
        seed_units(s, domain.city, clock())
        create_user(s, username="op", password=PASSWORD, role="front_desk", operator_extension=OPERATOR, now=clock())
    cc = CallControl.from_settings(asterisk, sessions, domain)
    app = create_app(asterisk, domain=domain, engine=engine, callcontrol=cc)
    await cc.start()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on"))
    serving = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    base_url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    verify = AmiSession(asterisk)
    Path(tmp_path / "phones").mkdir()
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = await browser.new_page()
        page.set_default_timeout(30_000)
        await page.goto(f"{base_url}/app/login")
        await page.fill("input[name=username]", "op")
        await page.fill("input[name=password]", PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/app/desk")
        await page.wait_for_selector("body[data-inited='1']", state="attached")
        await page.wait_for_selector("#call-actions[data-inited='1']", state="attached")

        class Desk:
            pass

        d = Desk()
        d.page, d.cc, d.sessions, d.verify, d.settings, d.base_url = page, cc, sessions, verify, asterisk, base_url
        d.http = httpx.AsyncClient(base_url=base_url, timeout=30)
        token = (await d.http.post("/api/v1/auth/token", json={"username": "op", "password": PASSWORD})).json()
        d.headers = {"Authorization": f"Bearer {token['access_token']}"}
        try:
            yield d
        finally:
            with contextlib.suppress(Exception):
                hangup_channels(verify, OUR_CHANNELS)
            with contextlib.suppress(Exception):
                await cc.queue.logout(OPERATOR)
            verify.close()
            await d.http.aclose()
            await browser.close()
            server.should_exit = True
            await serving  # its lifespan stops the call control
            engine.dispose()


async def new_case(d) -> str:
    r = await d.http.post("/api/v1/cases", headers=d.headers, json={
        "kind": "urgent_help", "channel": "mobile", "title": "自来水管爆裂", "description": "小区主水管爆裂",
        "citizen_phone": "13812345678"})
    assert r.status_code == 201, r.text
    return r.json()["number"]


async def citizen_queued(d, caller: str) -> str:
    """A citizen (Local channel, silence) straight into the queue context; their uniqueid."""
    base = f"live-{uuid.uuid4().hex[:10]}"
    reply = await d.cc.link.ami.send_action({
        "Action": "Originate", "Channel": "Local/s@hotline-queue", "Application": "Wait", "Data": "120",
        "CallerID": f'"citizen" <{caller}>', "Async": "true", "ChannelId": base, "OtherChannelId": f"{base}-2",
        "Timeout": "30000"})
    assert reply.success, reply
    return f"{base}-2"


def call_kinds(d, uniqueid: str) -> list[str]:
    """The steps the page asked for, as the call log has them (the API's own entries, beside the
    legs and bridges the AMI link logs)."""
    with session_scope(d.sessions) as s:
        call = s.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one()
        return [e.kind for e in s.execute(select(CallEvent).where(CallEvent.call_id == call.id)
                                          .order_by(CallEvent.id)).scalars() if e.dedup_key.startswith("cc:")]


async def test_transfer_completed_and_rated_then_three_way_left_and_rejoined_by_clicks(desk, tmp_path):
    d, page = desk, desk.page
    panel = page.locator("#call-actions")
    state = panel.locator(".call-state")
    with start_phones(d.settings, tmp_path / "phones", [f"op{OPERATOR}", "unit-a"],
                      audio_wav=tone_wav(tmp_path / "long.wav", 90)):
        await page.get_by_role("button", name="签入队列").click()
        await page.locator("#phone-status", has_text="已签入队列：空闲").wait_for()
        assert await panel.is_hidden()  # no call, no panel

        # 1. a warm transfer, completed, then the citizen's satisfaction recorded live (R7.4)
        number = await new_case(d)
        first = await citizen_queued(d, "13912340011")
        await state.filter(has_text="通话中").wait_for()
        assert await panel.locator(".caller").inner_text() == "13912340011"
        await panel.locator("input[name=call-case]").fill(number)
        await panel.locator("select[name=call-unit]").select_option("water_supply")
        await panel.get_by_role("button", name="转接单位（先 A 岗后 B 岗）").click()
        await state.filter(has_text="已接通单位").wait_for()
        assert "A 岗" in await state.inner_text()
        await panel.get_by_role("button", name="完成转接").click()
        await state.filter(has_text="已转接单位").wait_for()
        outcome = panel.locator(".outcome")
        await outcome.locator("textarea[name=oc-answer]").fill("水务集团已派人抢修")
        await outcome.locator("select[name=oc-satisfaction]").select_option("satisfied")
        await outcome.get_by_role("button", name="记录通话结果").click()
        await state.filter(has_text="已记录通话结果：满意").wait_for()
        assert await outcome.is_hidden()
        assert call_kinds(d, first) == ["hold", "unit_dial", "unit_dial_result", "consult", "transfer_completed",
                                        "live_outcome"]
        case = (await d.http.get(f"/api/v1/cases/{number}", headers=d.headers)).json()
        assert [(w["unit_code"], w["mode"]) for w in case["work_orders"]] == [("water_supply", "transfer")]

        # 2. the next citizen: a three-way call with the water company, the operator leaves and comes back
        hangup_channels(d.verify, r"^(Local/[0-9]+@unit-phones-|PJSIP/unit-a-)")
        second_case = await new_case(d)
        second = await citizen_queued(d, "13912340012")
        await page.locator("#call-actions .caller", has_text="13912340012").wait_for()
        await state.filter(has_text="通话中").wait_for()
        await panel.locator("input[name=call-case]").fill(second_case)
        await panel.locator("select[name=call-unit]").select_option("water_supply")
        await panel.get_by_role("button", name="三方通话").click()
        await asyncio.sleep(8)
        print("DEBUG", await state.inner_text(), await panel.locator(".error").inner_text())
        await state.filter(has_text="三方通话中").wait_for()
        await panel.get_by_role("button", name="离开三方通话").click()
        await state.filter(has_text="您已离开三方通话").wait_for()
        await panel.get_by_role("button", name="重新加入三方通话").click()
        await state.filter(has_text="三方通话中").wait_for()
        assert call_kinds(d, second) == ["conference_started", "unit_dial", "unit_dial_result", "conference_join",
                                         "conference_leave", "conference_join"]

        # 3. a convenience service (R7.3f): the disclaimer read, the citizen agrees, the call goes to the center
        hangup_channels(d.verify, OUR_CHANNELS)
        third_case = await new_case(d)
        third = await citizen_queued(d, "13912340013")
        await page.locator("#call-actions .caller", has_text="13912340013").wait_for()
        await state.filter(has_text="通话中").wait_for()
        await panel.locator("input[name=call-case]").fill(third_case)
        convenience = panel.locator(".convenience")
        assert "R7.3f" in await convenience.locator(".cv-text").inner_text()
        await convenience.locator("input[name=cv-read]").check()
        await convenience.locator("input[name=cv-consent]").check()
        await convenience.get_by_role("button", name="记录并转接便民服务中心").click()
        await state.filter(has_text="已转接便民服务中心").wait_for()
        assert call_kinds(d, third) == ["convenience_consent", "transfer_blind"]
        await page.screenshot(path="/tmp/desk-call-panel.png", full_page=True)
