"""The citizen web portal (/) in a real browser, with the desk page beside it (issue 14 item 1):
a citizen submits a request on a phone-sized screen and gets its number; the case appears on the
front desk's page, is taken and dispatched there (R4.1, R7.3) and reported by the unit (R8.4,
through the API); the citizen sees the answer and rates it once (R7.4 by web). The progress check
refuses a wrong phone suffix with the same words as an unknown number. axe-core (npm, a
devDependency of callcenter/web/vendor) finds no violation of the WCAG 2.1 A/AA rules on the
page in each of its states, and the forms work from the keyboard.

Headless Debian Chromium driven by Playwright, as tests/test_staff_pages_browser.py."""
from __future__ import annotations

import struct
import zlib

import pytest

from callcenter.web import vendor
from tests.helpers import browser_context, ok, report_back
from tests.test_staff_pages_browser import running

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

AXE = vendor.MODULES / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]
NAME, PHONE = "李秀英", "13655551234"


def png(width: int = 4, height: int = 4) -> bytes:
    """A small real PNG (the page previews it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + b"\xc0\x20\x20" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def violations(page) -> list[str]:
    """axe-core's violations of the page as it is now (rule id and the elements)."""
    if not page.evaluate("() => typeof window.axe === 'object'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate("async (tags) => (await axe.run(document, {runOnly: {type: 'tag', values: tags}}))"
                          ".violations.map(v => v.id + ': ' + v.nodes.map(n => n.target.join(' ')).join(', '))",
                          AXE_TAGS)
    return found


@pytest.fixture
def citizen_and_desk(seeded, domain, engine, tmp_path):
    if not AXE.is_file():
        pytest.fail("axe-core is not installed: npm ci in callcenter/web/vendor (scripts/setup does it)")
    with running(domain, engine, tmp_path) as console:
        # the citizen's phone; CSP bypassed only so the test can inject axe-core into the page
        context = browser_context(console.browser, viewport={"width": 390, "height": 844}, locale="zh-CN",
                                  timezone_id="Asia/Shanghai", bypass_csp=True, has_touch=True)
        page = context.new_page()
        page.on("pageerror", lambda exc: console.errors.append(f"portal: {exc}"))
        page.goto(console.base + "/")
        page.wait_for_selector("body[data-inited='1']", state="attached")
        yield console, page


def test_r7_1_r7_3_r7_4_a_citizen_submits_follows_and_rates_on_the_portal(citizen_and_desk, tmp_path):
    console, page = citizen_and_desk
    assert page.title() == "12345政府公共服务热线 · 网上诉求"
    assert violations(page) == []

    # the catalogue with search: typing narrows the list, the kinds follow the category
    page.fill("#category-search", "供水")
    assert "找到" in page.inner_text("#category-count")
    names = page.locator("#category option").all_inner_texts()
    assert "供水" in names and "噪声扰民" not in names
    page.select_option("#category", "water_supply")
    assert "complaint" in [o.get_attribute("value") for o in page.locator("#kind option").all()]
    page.select_option("#kind", "complaint")
    # a refusal is said next to the form, in words, and the field is marked
    page.click("#request-form button[type=submit]")
    assert "请填写诉求内容" in page.inner_text("#request-error")
    assert page.get_attribute("#description", "aria-invalid") == "true"
    assert violations(page) == []
    # the rest by keyboard: focus moves field to field with Tab
    page.focus("#description")
    page.keyboard.type("小区自来水管爆裂，水流到路上已经两天。")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "location"
    page.keyboard.type("宜城街道阳羡路8号")
    photo = tmp_path / "leak.png"
    photo.write_bytes(png())
    page.set_input_files("#photo", str(photo))
    page.wait_for_selector("#photo-preview:not([hidden])")
    page.fill("#name", NAME)
    page.fill("#phone", PHONE)
    page.focus("#phone")
    page.keyboard.press("Enter")  # submits the form
    page.wait_for_selector("#receipt:not([hidden]) .number")
    number = page.get_attribute("#receipt .number", "data-number")
    assert number and "工作日" in page.inner_text("#receipt")
    assert violations(page) == []
    page.screenshot(path="/tmp/portal-submitted.png", full_page=True)

    # the front desk sees it waiting, takes it (R4.1) and dispatches it by its routing (R7.3)
    desk = console.login("op1", expect="/app/desk")
    row = desk.locator(f"#waiting-cases tr[data-number='{number}']")
    row.wait_for()
    assert "网站" in row.inner_text()
    row.locator("button.take").click()
    desk.locator(f"#my-cases tr[data-number='{number}']").wait_for()
    desk.locator("#case-detail img.photo").wait_for()  # the citizen's photo, read with the operator's token
    dispatch = desk.locator("#case-detail form.action").filter(has=desk.locator("h4", has_text="交办")).first
    dispatch.locator("button[type=submit]").click()
    desk.locator("#case-detail", has_text="已交办").wait_for()
    assert desk.locator(f"#waiting-cases tr[data-number='{number}']").count() == 0
    case = ok(console.api("GET", f"/cases/{number}", "op1"))
    assert case["status"] == "dispatched" and case["channel"] == "web"

    # a wrong suffix and an unknown number read the same
    page.fill("#number", number)
    page.fill("#suffix", "0000")
    page.click("#progress-form button[type=submit]")
    page.wait_for_selector("#progress-error:not([hidden])")
    wrong = page.inner_text("#progress-error")
    page.fill("#number", "20991231-000001")
    page.click("#progress-form button[type=submit]")
    page.wait_for_function("document.querySelector('#progress-error').textContent !== ''")
    assert page.inner_text("#progress-error") == wrong and "不正确" in wrong
    assert page.locator("#progress-result .progress").count() == 0
    assert violations(page) == []

    # the unit notifies and reports (R8.2, R8.4)
    (wo,) = case["work_orders"]
    ok(console.api("POST", f"/work-orders/{wo['id']}/notify", "water1", json={"channel": "phone"}))

    class Unit:  # report_back's client, over the running server
        def get(self, path, _as):
            return console.api("GET", path.removeprefix("/api/v1"), "water1")

        def post(self, path, _as, json):
            return console.api("POST", path.removeprefix("/api/v1"), "water1", json=json)
    ok(report_back(Unit(), wo["id"], "water1", answer=f"已联系{NAME}（{PHONE}），水管已抢修完毕。"))

    # the citizen sees where it is and the answer, with no personal data, and rates it once
    page.fill("#number", number)
    page.fill("#suffix", PHONE[-4:])
    page.focus("#suffix")
    page.keyboard.press("Enter")
    result = page.locator("#progress-result .progress")
    result.wait_for()
    shown = result.inner_text()
    assert result.get_attribute("data-status") == "reported"
    assert "宜兴市自来水公司" in shown and "水管已抢修完毕" in shown and "承办单位已答复" in shown
    for personal in (NAME, PHONE, "阳羡路8号"):
        assert personal not in page.content(), personal
    assert violations(page) == []
    page.focus("#rate-satisfied")
    page.keyboard.press("Space")
    assert page.is_checked("#rate-satisfied")
    page.click("#rating-form button[type=submit]")
    page.locator("#progress-result", has_text="感谢您的评价").wait_for()
    assert "满意度评价满意" in page.inner_text("#progress-result").replace("\n", "").replace("\t", "")
    assert page.locator("#rating-form").count() == 0  # once
    assert violations(page) == []
    page.screenshot(path="/tmp/portal-rated.png", full_page=True)
    case = ok(console.api("GET", f"/cases/{number}", "op1"))
    assert case["satisfaction"] == "satisfied" and case["satisfaction_source"] == "web"
    assert case["status"] == "awaiting_close"
