"""The staff console (/app) in a real browser: the front desk, a member unit and the back office
work a case through the pages alone, each sees only what the API lets them see (R5.3, R7.3c), and
a refusal of the API is shown next to the action that caused it with the input kept.

Headless Debian Chromium driven by Playwright, against the app on a real uvicorn server (as in
test_public_page_browser.py). Screenshots go to /tmp/console-*.png."""
from __future__ import annotations

import re
from contextlib import contextmanager
from datetime import datetime

import httpx
import pytest
from sqlalchemy import select

from ticketing.audit import SYSTEM
from ticketing.models import Case, WorkOrder
from ticketing.store import session_scope

from .conftest import CONFIG_DIR, PASSWORD
from tests.helpers import PATIENCE_S, SH, actor_named, browser_context, serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
HIDDEN = "【纪检监察件：内容仅纪委监察局可见】"

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def shown(iso: str) -> str:
    """A time as the pages show it: Shanghai local, to the minute."""
    return datetime.fromisoformat(iso).astimezone(SH).strftime("%Y-%m-%d %H:%M")



class Console:
    """One browser; each person logs in in a context of their own (their own sessionStorage)."""

    def __init__(self, base: str, browser):
        self.base = base
        self.browser = browser
        self.errors: list[str] = []

    def open(self, path: str = "/app/login"):
        context = browser_context(self.browser, viewport={"width": 1280, "height": 900}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai")
        page = context.new_page()
        page.on("pageerror", lambda exc: self.errors.append(f"{page.url}: {exc}"))
        page.on("console", lambda msg: "Content Security Policy" in msg.text and self.errors.append(msg.text))
        page.goto(self.base + path)
        return page

    def login(self, username: str, expect: str | None = None):
        page = self.open()
        page.fill("input[name=username]", username)
        page.fill("input[name=password]", PASSWORD)
        page.click("#login-form button[type=submit]")
        if expect:
            page.wait_for_url(f"**{expect}")
            if expect in ("/app/desk", "/app/unit", "/app/back"):  # console.js pages: handlers in place
                page.wait_for_selector("body[data-inited='1']", state="attached")
        return page

    def token(self, username: str) -> str:
        r = httpx.post(f"{self.base}/api/v1/auth/token", json={"username": username, "password": PASSWORD},
                       timeout=PATIENCE_S)
        r.raise_for_status()
        return r.json()["access_token"]

    def api(self, method: str, path: str, username: str, **kw):
        return httpx.request(method, f"{self.base}/api/v1{path}",
                             headers={"Authorization": f"Bearer {self.token(username)}"}, timeout=PATIENCE_S, **kw)


@contextmanager
def running(domain, engine, tmp_path, callcontrol=None):
    from playwright.sync_api import sync_playwright

    from callcenter.api.app import create_app
    from callcenter.settings import Settings

    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine,
                     callcontrol=callcontrol)
    with serve(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        c = Console(base, browser)
        try:
            yield c
        finally:
            browser.close()
        assert not c.errors, c.errors  # no script error on any page


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with running(domain, engine, tmp_path) as c:
        yield c


@contextmanager
def workflow(sessions, domain):
    with session_scope(sessions) as s:
        yield domain.workflow(s), (lambda name: actor_named(s, name)), s


def fill_case(page, *, kind="consultation", category, title, description, name="王小明", phone="13912340000",
              location="宜城街道人民路1号", channel="mobile"):
    page.select_option("#case-form select[name=kind]", kind)
    page.select_option("#case-form select[name=channel]", channel)
    page.select_option("#case-form select[name=category_code]", category)
    page.fill("#case-form input[name=title]", title)
    page.fill("#case-form textarea[name=description]", description)
    page.fill("#case-form input[name=citizen_name]", name)
    page.fill("#case-form input[name=citizen_phone]", phone)
    page.fill("#case-form input[name=location]", location)


def submit_case(page) -> str:
    page.click("#case-form button[type=submit]")
    page.locator("#case-result .case-card").wait_for()
    return page.locator("#case-result .case-card").get_attribute("data-number")


def test_r7_3a_r8_1_r8_2_r8_4_t3_a_consultation_lives_through_the_pages(console, sessions):
    """Operator accepts and dispatches by the category's routing; the unit clerk sees only their own
    order with its deadlines, receives, notifies, reports; the operator and back office see it reported;
    another unit's clerk never sees it."""
    desk = console.login("op1", expect="/app/desk")
    assert desk.title() == "12345热线 前台受理"
    # without Asterisk the page says so and everything else works
    desk.locator("#phone-status", has_text="电话系统未连接").wait_for()

    fill_case(desk, category="water_supply", title="人民路小区水压低", description="人民路小区三楼以上水压低，已持续一周。")
    assert "电子工单 → 宜兴市自来水公司" in desk.inner_text("#routing")
    number = submit_case(desk)
    assert "已受理并交办" in desk.inner_text("#case-result")
    row = desk.locator(f"#my-cases tr[data-number='{number}']")
    row.wait_for()
    case = console.api("GET", f"/cases/{number}", "op1").json()
    (wo,) = case["work_orders"]
    assert wo["unit_code"] == "water_supply" and wo["mode"] == "work_order"
    assert "已交办" in row.inner_text() and shown(case["deadline_at"]) in row.inner_text()
    assert shown(case["deadline_at"]) == "2026-03-09 17:30"  # 5 working days (R8.3, T4)
    # the form was emptied for the next call, the case is not lost
    assert desk.input_value("#case-form input[name=title]") == ""
    desk.screenshot(path="/tmp/console-desk.png", full_page=True)

    # the unit clerk's inbox: their order, both deadlines shown (T3)
    unit = console.login("water1", expect="/app/unit")
    order = unit.locator(f"#inbox tr[data-number='{number}']")
    order.wait_for()
    assert "人民路小区水压低" in order.inner_text() and "待签收" in order.inner_text()
    assert shown(wo["notify_due_at"]) == "2026-03-04 17:30"
    assert shown(wo["notify_due_at"]) in order.locator(".notify-due").inner_text()
    assert shown(wo["report_due_at"]) in order.locator(".report-due").inner_text()

    # another unit's clerk does not see it (R5.3)
    other = console.login("urban1", expect="/app/unit")
    other.locator("#inbox .empty").wait_for(state="visible")
    assert number not in other.content() and "人民路小区水压低" not in other.content()

    order.get_by_role("button", name="办理").click()
    detail = unit.locator("#order-detail")
    detail.locator("h2", has_text="待签收").wait_for()
    assert "人民路小区三楼以上水压低" in detail.inner_text() and "13912340000" in detail.inner_text()
    detail.locator("form.receive button").click()
    detail.locator("h2", has_text="已签收").wait_for()
    detail.locator("form.notify select[name=channel]").select_option("phone")
    detail.locator("form.notify button").click()
    detail.locator("h2", has_text="已告知").wait_for()
    detail.locator("form.report textarea[name=answer]").fill("已派员检修加压泵，三楼以上水压恢复正常。")
    detail.locator("form.report select[name=satisfaction]").select_option("satisfied")
    detail.locator("form.report button").click()
    detail.locator("h2", has_text="已报结").wait_for()
    unit.locator(f"#done tr[data-number='{number}']").wait_for()
    assert unit.locator(f"#inbox tr[data-number='{number}']").count() == 0
    unit.screenshot(path="/tmp/console-unit.png", full_page=True)

    after = console.api("GET", f"/work-orders/{wo['id']}", "water1").json()
    assert after["status"] == "reported" and after["notify_channel"] == "phone" and after["notify_met"] is True
    assert after["reported_satisfaction"] == "satisfied"

    # the operator sees it reported, waiting for the callback (R7.4)
    desk.locator("#my-cases .refresh").click()
    desk.locator(f"#my-cases tr[data-number='{number}'] .status", has_text="已报结").wait_for()
    # and the back office finds it with the unit's answer
    back = console.login("bo1", expect="/app/back")
    back.fill("#lookup-form input[name=number]", number)
    back.click("#lookup-form button")
    card = back.locator(f"#lookup-result .case-card[data-number='{number}']")
    card.wait_for()
    assert "已报结" in card.inner_text() and "已派员检修加压泵" in card.inner_text()
    back.screenshot(path="/tmp/console-back.png", full_page=True)


def test_r7_3c_report_content_hidden_from_other_unit_and_supervisor_pages(console, sessions):
    desk = console.login("op1", expect="/app/desk")
    fill_case(desk, kind="complaint", category="discipline_economic", title="反映某局长收受红包",
              description="某局长在项目审批中收受红包两万元", name="李四", phone="13700001111")
    # the message to read aloud is shown before and after dispatch
    assert "12388" in desk.inner_text("#category-read-aloud")
    number = submit_case(desk)
    result = desk.inner_text("#case-result")
    assert "请向诉求人宣读" in result and "12388" in result
    # the front desk itself may not read it back (the API hides it: the page shows what it is given)
    assert HIDDEN in result and "红包" not in result and "李四" not in result

    # the discipline commission reads it
    disc = console.login("disc1", expect="/app/unit")
    disc.locator(f"#inbox tr[data-number='{number}']", has_text="红包").wait_for()

    # another unit's clerk: not listed, and opening it directly is refused
    other = console.login("urban1", expect="/app/unit")
    other.locator("#inbox .empty").wait_for(state="visible")
    for leak in (number, "红包", "局长", "李四", "13700001111"):
        assert leak not in other.content(), leak
    refused = console.api("GET", f"/cases/{number}", "urban1")
    assert refused.status_code == 403

    # the supervisor looks it up: counted and findable, content hidden
    sup = console.login("sup1", expect="/app/back")
    sup.locator(".notice", has_text="只读").wait_for()
    sup.fill("#lookup-form input[name=number]", number)
    sup.click("#lookup-form button")
    card = sup.locator(f"#lookup-result .case-card[data-number='{number}']")
    card.wait_for()
    assert HIDDEN in card.inner_text() and "纪检监察件" in card.inner_text()
    html = sup.content()
    for leak in ("红包", "局长", "李四", "13700001111"):
        assert leak not in html, leak
    sup.screenshot(path="/tmp/console-supervisor.png", full_page=True)


def test_r8_1_r8_5_refusals_shown_next_to_the_action_and_the_input_is_kept(console, sessions, domain):
    with workflow(sessions, domain) as (wf, a, _s):
        case = wf.accept(a("op1"), kind="complaint", channel="landline", title="自来水发黄",
                         description="家中自来水发黄有异味", category_code="water_supply")
        (wo,) = wf.dispatch(a("op1"), case, units=["water_supply"])
        wo_id = wo.id
    unit = console.login("water1", expect="/app/unit")
    unit.locator(f"#inbox tr[data-wo='{wo_id}']").get_by_role("button", name="办理").click()
    detail = unit.locator("#order-detail")
    detail.locator("form.receive").wait_for()
    # meanwhile a colleague receives it: this page is stale and the API answers 409
    assert console.api("POST", f"/work-orders/{wo_id}/receive", "water1").status_code == 200
    detail.locator("form.receive button").click()
    error = detail.locator("form.receive .error")
    error.wait_for(state="visible")
    assert "当前状态不允许此操作" in error.inner_text() and "R8.1" in error.inner_text()

    # an extension without a proper legal basis: 422 with the rule, the text stays in the form
    ext = detail.locator("form.extension")
    ext.locator("textarea[name=legal_basis]").fill("依据")
    ext.locator("button").click()
    ext.locator(".error").wait_for(state="visible")
    assert "输入有误" in ext.locator(".error").inner_text() and "R8.5" in ext.locator(".error").inner_text()
    assert ext.locator("textarea[name=legal_basis]").input_value() == "依据"
    unit.screenshot(path="/tmp/console-unit-error.png", full_page=True)

    # on the desk: a phone number the API refuses (422): shown in plain words, nothing typed is lost
    desk = console.login("op1", expect="/app/desk")
    fill_case(desk, category="water_supply", title="水费咨询", description="想了解阶梯水价", phone="138-abc")
    desk.click("#case-form button[type=submit]")
    error = desk.locator("#case-form > .error")
    error.wait_for(state="visible")
    assert "输入有误" in error.inner_text() and "联系电话" in error.inner_text()
    assert desk.input_value("#case-form input[name=title]") == "水费咨询"
    assert desk.input_value("#case-form textarea[name=description]") == "想了解阶梯水价"
    with session_scope(sessions) as s:
        assert s.execute(select(Case).where(Case.title == "水费咨询")).first() is None  # all or nothing


def test_r7_2_r7_5_r7_6_direct_answer_from_the_knowledge_base_closed_and_published(console, sessions):
    r = console.api("POST", "/units/water_supply/knowledge", "water1",
                    json={"question": "居民阶梯水价怎么算？", "answer": "居民生活用水实行三级阶梯水价，第一级每户每年180立方米以内。",
                          "keywords": "水费 阶梯水价", "category_code": "water_supply"})
    assert r.status_code == 201, r.text
    assert console.api("POST", f"/knowledge/{r.json()['id']}/submit", "water1").status_code == 200
    assert console.api("POST", f"/knowledge/{r.json()['id']}/review", "bo1", json={"decision": "publish"}).status_code == 200
    desk = console.login("op1", expect="/app/desk")
    desk.fill("#kb-form input[name=q]", "阶梯水价")
    desk.click("#kb-form button")
    desk.locator("#kb-results li", has_text="居民阶梯水价怎么算").get_by_role("button", name="用此答复").click()
    fill_case(desk, category="water_supply", title="阶梯水价咨询", description="询问阶梯水价标准")
    assert desk.locator("input[name=handling][value=answer]").is_checked()
    assert "三级阶梯水价" in desk.input_value("#case-form textarea[name=answer]")
    desk.select_option("#case-form select[name=satisfaction]", "satisfied")
    number = submit_case(desk)
    assert "已直接答复" in desk.inner_text("#case-result") and "满意" in desk.inner_text("#case-result")
    case = console.api("GET", f"/cases/{number}", "op1").json()
    assert case["answered_directly"] and case["satisfaction"] == "satisfied" and case["status"] == "awaiting_close"
    assert case["work_orders"] == []

    # close it from the operator's own list (R7.5)
    desk.locator(f"#my-cases tr[data-number='{number}']").get_by_role("button", name="处理").click()
    close = desk.locator("#case-detail form.action", has_text="办结")
    close.locator("button").click()
    desk.locator(f"#my-cases tr[data-number='{number}']").wait_for(state="detached")
    assert console.api("GET", f"/cases/{number}", "op1").json()["status"] == "closed"

    # the back office publishes it (R7.6)
    back = console.login("bo1", expect="/app/back")
    item = back.locator("#publishable .item", has=back.locator(f".case-card[data-number='{number}']"))
    item.locator("textarea[name=public_summary]").fill("市民咨询居民阶梯水价标准。")
    item.get_by_role("button", name="公开").click()
    back.locator("#publishable .empty").wait_for()
    public = httpx.get(f"{console.base}/api/v1/public/cases").json()
    assert [p["number"] for p in public] == [number] and public[0]["summary"] == "市民咨询居民阶梯水价标准。"


def test_r7_3f_convenience_transfer_only_after_disclaimer_and_consent(console, sessions):
    desk = console.login("op1", expect="/app/desk")
    fill_case(desk, kind="urgent_help", category="life_service", title="家门钥匙丢失需开锁", description="钥匙丢失，需要开锁服务")
    consent = desk.locator("#case-form .consent")
    assert consent.is_visible() and "可能收费" in consent.inner_text()
    # not read: the API refuses; the case is accepted once and the next submit continues it
    desk.click("#case-form button[type=submit]")
    error = desk.locator("#case-form > .error")
    error.wait_for(state="visible")
    assert "R7.3f" in error.inner_text() and "不会重复受理" in error.inner_text()
    desk.check("#case-form input[name=disclaimer_read]")
    desk.check("#case-form input[name=consent]")
    number = submit_case(desk)
    assert "已转接便民服务中心" in desk.inner_text("#case-result")
    with session_scope(sessions) as s:
        assert s.execute(select(Case).where(Case.title == "家门钥匙丢失需开锁")).scalars().all().__len__() == 1
    case = console.api("GET", f"/cases/{number}", "op1").json()
    assert case["convenience_consent"] and case["status"] == "dispatched"
    assert [(w["unit_code"], w["mode"]) for w in case["work_orders"]] == [("convenience_center", "transfer")]
    # after the call the operator records the outcome (R7.4: no callback for convenience services)
    desk.locator(f"#my-cases tr[data-number='{number}']").get_by_role("button", name="处理").click()
    live = desk.locator("#case-detail form.action", has_text="记录通话结果")
    live.locator("textarea[name=answer]").fill("已转接便民服务中心，开锁师傅30分钟内上门。")
    live.locator("select[name=satisfaction]").select_option("not_rated")
    live.locator("button").click()
    desk.locator("#case-detail .case-card > p.meta > .status", has_text="已报结").wait_for()
    case = console.api("GET", f"/cases/{number}", "op1").json()
    assert case["status"] == "reported" and not case["callback_required"]


def test_t3_r7_7_due_soon_and_overdue_marked_and_urged(console, sessions, domain, clock):
    with workflow(sessions, domain) as (wf, a, _s):
        early = wf.accept(a("op1"), kind="consultation", channel="landline", title="早派的工单", description="甲",
                          category_code="water_supply")
        (wo_a,) = wf.dispatch(a("op1"), early, units=["water_supply"])
    clock.set("2026-03-03T09:00")
    with workflow(sessions, domain) as (wf, a, _s):
        later = wf.accept(a("op1"), kind="consultation", channel="landline", title="后派的工单", description="乙",
                          category_code="water_supply")
        (wo_b,) = wf.dispatch(a("op1"), later, units=["water_supply"])
    clock.set("2026-03-05T10:00")  # A's notification limit (03-04 17:30) passed, B's (03-05 17:30) near
    unit = console.login("water1", expect="/app/unit")
    row_a, row_b = (unit.locator(f"#inbox tr[data-wo='{wo.id}']") for wo in (wo_a, wo_b))
    row_a.wait_for()
    assert "已超期" in row_a.locator(".notify-due").inner_text() and "overdue" in row_a.get_attribute("class")
    assert "即将到期" in row_b.locator(".notify-due").inner_text()
    assert "已超期" not in row_b.inner_text()
    unit.screenshot(path="/tmp/console-unit-marks.png", full_page=True)

    clock.set("2026-03-10T10:00")  # A's report limit (03-09 17:30) passed: the back office urges (R7.7)
    back = console.login("bo1", expect="/app/back")
    item = back.locator("#overdue .item", has=back.locator(f".case-card[data-wo='{wo_a.id}']"))
    item.locator("input[name=note]").fill("请今日内报结")
    item.get_by_role("button", name="催办").click()
    back.locator(f"#overdue .case-card[data-wo='{wo_a.id}']", has_text="已催办1次").wait_for()
    unit = console.login("water1", expect="/app/unit")
    unit.locator(f"#inbox tr[data-wo='{wo_a.id}']", has_text="催办1次").wait_for()
    assert "已超期" in unit.locator(f"#inbox tr[data-wo='{wo_a.id}'] .report-due").inner_text()


def test_r7_5_r8_5_r8_6_r7_3h_back_office_decides_from_its_lists(console, sessions, domain):
    with workflow(sessions, domain) as (wf, a, s):
        unhappy = wf.accept(a("op1"), kind="complaint", channel="landline", title="路灯不亮", description="人民路路灯不亮",
                            category_code="city_appearance")
        (wo,) = wf.dispatch(a("op1"), unhappy, units=["urban_management"])
        wf.notify(a("urban1"), wo, channel="phone")
        wf.report(a("urban1"), wo, answer="已报修")
        wf.record_callback(a("op1"), unhappy, satisfaction="unsatisfied")
        pending = wf.accept(a("op1"), kind="complaint", channel="landline", title="小区违章搭建",
                            description="楼顶搭建彩钢房", category_code="illegal_construction")
        wf.escalate(a("op1"), pending, note="多单位，请后台派单")
        ext_case = wf.accept(a("op1"), kind="complaint", channel="landline", title="欠薪投诉", description="欠薪三个月",
                             category_code="social_insurance")
        (ext_wo,) = wf.dispatch(a("op1"), ext_case, units=["human_resources"])
        ext = wf.request_extension(a("hr1"), ext_wo, legal_basis="《劳动保障监察条例》第十七条", extra_working_days=10)
        ret_case = wf.accept(a("op1"), kind="complaint", channel="landline", title="电费异常", description="电费突增",
                             category_code="water_supply")
        (ret_wo,) = wf.dispatch(a("op1"), ret_case, units=["water_supply"])
        wf.request_return(a("water1"), ret_wo, reason="电费属供电公司职责")
        manual = wf.accept(a("op1"), kind="consultation", channel="landline", title="水表更换咨询", description="问水表更换",
                           category_code="water_supply")
        (man_wo,) = wf.dispatch(a("op1"), manual, units=["water_supply"])
        wf.notify(a("water1"), man_wo, channel="phone")
        wf.report(a("water1"), man_wo, answer="已告知更换流程")
        wf.mark_callback_manual(SYSTEM, manual, reason="three automatic attempts unanswered")
        numbers = {"unhappy": unhappy.number, "pending": pending.number, "manual": manual.number}
        ext_id, ret_id = ext.id, ret_wo.id

    back = console.login("bo1", expect="/app/back")
    back.locator("#returns .item").wait_for()
    back.locator("#extensions .item").wait_for()
    back.screenshot(path="/tmp/console-back-lists.png", full_page=True)
    # R7.5: the unsatisfied case is closed provisionally
    item = back.locator("#unsatisfied .item", has=back.locator(f".case-card[data-number='{numbers['unhappy']}']"))
    item.locator("form.action", has_text="暂结").get_by_role("button", name="暂结").click()
    back.locator("#unsatisfied .empty").wait_for()
    closed = console.api("GET", f"/cases/{numbers['unhappy']}", "bo1").json()
    assert closed["status"] == "closed" and closed["closed_provisionally"]

    # R7.3h: the escalated case goes to two units with the lead preselected from the routing
    item = back.locator("#pending-dispatch .item", has=back.locator(f".case-card[data-number='{numbers['pending']}']"))
    assert item.locator("select[name=lead]").input_value() == "urban_management"
    assert "已选：宜兴市自然资源和规划局、宜兴市城市管理局" in item.locator(".chosen").inner_text()
    item.get_by_role("button", name="交办").click()
    back.locator("#pending-dispatch .empty").wait_for()
    case = console.api("GET", f"/cases/{numbers['pending']}", "bo1").json()
    assert sorted((w["unit_code"], w["role"]) for w in case["work_orders"]) == [
        ("natural_resources", "co_unit"), ("urban_management", "lead")]

    # R7.4: the callback the automatic survey could not make is done by hand (once the lists the
    # last action reloads have all arrived: a late one would replace the form being filled)
    back.wait_for_load_state("networkidle")
    item = back.locator("#manual-callbacks .item", has=back.locator(f".case-card[data-number='{numbers['manual']}']"))
    item.locator("select[name=satisfaction]").select_option("basically_satisfied")
    item.get_by_role("button", name="提交").click()
    back.locator("#manual-callbacks .empty").wait_for()
    called = console.api("GET", f"/cases/{numbers['manual']}", "bo1").json()
    assert called["status"] == "awaiting_close" and called["satisfaction"] == "basically_satisfied"

    # R8.5: the extension is approved and the deadline moves
    item = back.locator("#extensions .item", has_text="劳动保障监察条例")
    item.get_by_role("button", name="批准", exact=True).click()
    back.locator("#extensions .empty").wait_for()
    (decided,) = console.api("GET", "/extensions?state=approved", "bo1").json()
    assert decided["id"] == ext_id
    assert datetime.fromisoformat(decided["new_due_at"]) > datetime.fromisoformat(decided["old_due_at"])

    # R8.6: the return is denied; the unit keeps the work order
    item = back.locator("#returns .item", has_text="电费属供电公司职责")
    item.locator("input[name=note]").fill("请先核实后再退回")
    item.get_by_role("button", name="不批准").click()
    back.locator("#returns .empty").wait_for()
    assert console.api("GET", f"/work-orders/{ret_id}", "bo1").json()["status"] == "dispatched"
    with session_scope(sessions) as s:
        assert s.get(WorkOrder, ret_id).status.value == "dispatched"


def test_login_lands_each_role_on_its_page_and_logout_revokes_the_token(console):
    for username, home in (("op1", "/app/desk"), ("water1", "/app/unit"), ("disc1", "/app/unit"),
                           ("bo1", "/app/back"), ("sup1", "/app/back")):
        page = console.login(username, expect=home)
        page.locator(".who", has_text=username).wait_for()
        page.context.close()
    page = console.open()
    page.fill("input[name=username]", "op1")
    page.fill("input[name=password]", "wrong-password")
    page.click("#login-form button[type=submit]")
    page.locator("#login-form .error", has_text="用户名或密码错误").wait_for()
    assert page.inner_text("#login-form .error") == "用户名或密码错误"
    page.screenshot(path="/tmp/console-login.png")
    # no token: every page sends you to the login; a unit clerk asking for the back office goes home
    assert console.open("/app/back").wait_for_url("**/app/login") is None
    clerk = console.login("water1", expect="/app/unit")
    clerk.goto(console.base + "/app/back")
    clerk.wait_for_url("**/app/unit")
    clerk.locator(".who", has_text="water1").wait_for()  # the page is set up: its logout button works
    token = clerk.evaluate("sessionStorage.getItem('token')")
    clerk.click("button.logout")
    clerk.wait_for_url("**/app/login")
    assert clerk.evaluate("sessionStorage.getItem('token')") is None
    r = httpx.get(f"{console.base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert r.status_code == 401


def test_pages_and_script_need_nothing_from_the_network(console):
    """No CDN, no build: every page loads only /app/static assets of this server."""
    page = console.open()
    requested: list[str] = []
    page.on("request", lambda req: requested.append(req.url))
    for name in ("login", "desk", "unit", "back"):
        page.goto(f"{console.base}/app/{name}")
    assert requested and all(u.startswith(console.base) for u in requested), requested
    policy = httpx.get(f"{console.base}/app/desk").headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    for asset in ("console.js", "console.css"):
        body = httpx.get(f"{console.base}/app/static/{asset}").text
        assert not re.search(r"https?://", body), asset


class FakeQueue:
    """The queue service's answers (callcenter.callcontrol.queue.QueueService.state_of) without Asterisk."""

    def __init__(self):
        self.members: dict[str, dict] = {}

    def state_of(self, ext):
        member = self.members.get(ext)
        return {"extension": ext, "logged_in": member is not None, "member": member}

    async def login(self, ext, name=""):
        self.members[ext] = {"extension": ext, "name": name, "state": "free", "paused": False, "paused_reason": ""}
        return self.state_of(ext)

    async def pause(self, ext, reason):
        self.members[ext].update(state="paused", paused=True, paused_reason=reason)
        return self.state_of(ext)


class FakeLink:
    """The call link's event broker (the real one), fed from the test thread into the server's loop."""

    connected = True

    def __init__(self):
        from callcenter.callcontrol.broker import Broker

        self.broker = Broker()
        self.loop = None

    def subscribe(self, topics):
        import asyncio

        self.loop = asyncio.get_running_loop()
        return self.broker.subscribe(topics)

    def operator_channels(self, ext):
        return []

    def require_link(self):
        return None

    def publish(self, topic, event):
        self.loop.call_soon_threadsafe(self.broker.publish, topic, event)


def test_screen_pop_shows_the_caller_and_open_cases_and_queue_login_works(seeded, domain, engine, tmp_path, sessions):
    from types import SimpleNamespace

    from callcenter.auth import create_user
    from callcenter.callcontrol.screenpop import case_summary

    with workflow(sessions, domain) as (wf, a, s):
        create_user(s, username="op9", password=PASSWORD, role="front_desk", operator_extension="8009",
                    now=domain.clock())
        s.flush()
        open_case = wf.accept(a("op1"), kind="complaint", channel="mobile", title="路灯不亮", description="人民路路灯不亮",
                              citizen_phone="13912345678", category_code="city_appearance")
        wf.dispatch(a("op1"), open_case, units=["urban_management"])
        secret = wf.accept(a("op1"), kind="complaint", channel="mobile", title="反映某局长收受红包", description="红包",
                           citizen_phone="13912345678", category_code="discipline_economic")
        pop = {"type": "screen_pop", "operator": "8009", "caller_number": "13912345678", "call_id": None,
               "flow_path": ["main", "operator"], "digits": ["1"], "case_id": None, "case_owner": None,
               "open_cases": [case_summary(open_case), case_summary(secret)], "recent_cases": []}
        numbers = (open_case.number, secret.number)
    link = FakeLink()
    with running(domain, engine, tmp_path, callcontrol=SimpleNamespace(link=link, queue=FakeQueue())) as console:
        desk = console.login("op9", expect="/app/desk")
        desk.locator("#phone-status", has_text="分机 8009 · 未签入队列").wait_for()
        desk.get_by_role("button", name="签入队列").click()
        desk.locator("#phone-status", has_text="已签入队列：空闲").wait_for()
        desk.select_option("select[name=pause-reason]", "meal")
        desk.get_by_role("button", name="小休", exact=True).click()
        desk.locator("#phone-status", has_text="已签入队列：小休（用餐）").wait_for()
        link.publish("operator:8009", pop)
        shown_pop = desk.locator("#screen-pop .pop")
        shown_pop.wait_for()
        text = shown_pop.inner_text()
        assert "13912345678" in text and numbers[0] in text and "路灯不亮" in text and numbers[1] in text
        assert HIDDEN in text and "红包" not in text  # R7.3c: the pop hides it like the API does
        shown_pop.get_by_role("button", name="以此来电新建诉求件").click()
        assert desk.input_value("#case-form input[name=citizen_phone]") == "13912345678"
        desk.screenshot(path="/tmp/console-desk-screenpop.png", full_page=True)


def test_r7_3f_citizen_declines_then_agrees_from_the_operators_list(console):
    desk = console.login("op1", expect="/app/desk")
    fill_case(desk, kind="urgent_help", category="life_service", title="水管漏水需维修", description="厨房水管漏水")
    desk.check("#case-form input[name=disclaimer_read]")  # read, but the citizen says no
    number = submit_case(desk)
    assert "诉求人不同意转接" in desk.inner_text("#case-result")
    case = console.api("GET", f"/cases/{number}", "op1").json()
    assert case["status"] == "new" and not case["convenience_consent"] and case["work_orders"] == []
    # the citizen thinks again: consent recorded from the list, then the transfer by the routing
    desk.locator(f"#my-cases tr[data-number='{number}']").get_by_role("button", name="处理").click()
    consent = desk.locator("#case-detail form.action", has_text="便民服务告知")
    assert "可能收费" in consent.inner_text()
    consent.locator("input[name=disclaimer_read]").check()
    consent.locator("input[name=consent]").check()
    consent.locator("button").click()
    # the panel is drawn again from the case's new version, saying what was done
    desk.locator(f"#case-detail .detail[data-version='{case['version'] + 1}'] .flash", has_text="已记录").wait_for()
    assert console.api("GET", f"/cases/{number}", "op1").json()["convenience_consent"]
    dispatch = desk.locator("#case-detail form.action", has_text="交办")
    dispatch.get_by_role("button", name="提交").click()
    desk.locator("#case-detail .case-card > p.meta > .status", has_text="已交办").wait_for()
    case = console.api("GET", f"/cases/{number}", "op1").json()
    assert [(w["unit_code"], w["mode"]) for w in case["work_orders"]] == [("convenience_center", "transfer")]
