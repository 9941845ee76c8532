"""R7.6 in a real browser: the public page shows a handled case with its answer, times and
satisfaction, and none of the citizen's personal data; an R7.3c report never appears.

Headless Debian Chromium driven by Playwright, against the app on a real uvicorn server."""
from __future__ import annotations


import httpx
import pytest
from sqlalchemy import update

from ticketing.errors import DomainError
from ticketing.models import Case
from ticketing.store import session_scope

from .conftest import CONFIG_DIR
from tests.helpers import actor_named, browser_context, serve

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = "/tmp/public.png"

NAME = "张三丰"
MOBILE = "13912345678"
MOBILE_GROUPED = "139-1234-5678"
ID_NUMBER = "320282199001011234"
PERSONAL = [NAME, MOBILE, MOBILE_GROUPED, ID_NUMBER, "1234-5678", "199001011234"]



@pytest.fixture
def published(seeded, domain, sessions, clock) -> dict:
    """One handled case full of personal data, published; one discipline report, closed."""
    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        a = lambda name: actor_named(s, name)  # noqa: E731
        case = wf.accept(
            a("op1"), kind="complaint", channel="mobile", title=f"宜城街道停水三天（{NAME}反映）",
            description=(f"我是{NAME}，身份证号{ID_NUMBER}，手机{MOBILE}，也可以打{MOBILE_GROUPED}。"
                         "宜城街道某小区停水三天，无人通知。"),
            citizen_name=NAME, citizen_phone=MOBILE, citizen_id_number=ID_NUMBER, location="宜城街道",
        )
        (wo,) = wf.dispatch(a("op1"), case, units=["water_supply"])
        clock.advance(hours=2)
        wf.receive(a("water1"), wo)
        wf.notify(a("water1"), wo, channel="phone")
        clock.advance(days=1)
        wf.report(a("water1"), wo, answer=f"已电话联系{NAME}（{MOBILE}），管网抢修完毕，已恢复供水。",
                  satisfaction="satisfied")
        wf.record_callback(a("op1"), case, satisfaction="satisfied")
        wf.close(a("op1"), case)
        wf.publish(a("bo1"), case)
        public_number = case.number

        secret = wf.accept(a("op1"), kind="complaint", channel="landline", title="反映某局长收受红包",
                           description="某局长在项目审批中收受红包两万元", category_code="discipline_economic",
                           citizen_name="李四", citizen_phone="13700001111")
        (swo,) = wf.dispatch(a("op1"), secret, units=["discipline_commission"])
        wf.notify(a("disc1"), swo, channel="phone")
        wf.report(a("disc1"), swo, answer="已按纪检程序办理")
        wf.close(a("bo1"), secret)
        with pytest.raises(DomainError) as refused:
            wf.publish(a("bo1"), secret)
        assert refused.value.rule == "R7.3c"
        secret_number = secret.number
    # Even if a published time reached the row some other way, the page must not show it.
    with session_scope(sessions) as s:
        s.execute(update(Case).where(Case.number == secret_number)
                  .values(published_at=clock(), public_summary="某局长在项目审批中收受红包两万元"))
    return {"public": public_number, "secret": secret_number}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_r7_6_public_page_in_chromium_shows_the_case_and_no_personal_data(published, domain, engine, tmp_path):
    from playwright.sync_api import sync_playwright

    from callcenter.api.app import create_app
    from callcenter.settings import Settings

    app = create_app(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine)
    with serve(app) as base, sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser_context(browser, viewport={"width": 1000, "height": 700}, locale="zh-CN").new_page()
            response = page.goto(f"{base}/public")
            assert response is not None and response.status == 200
            assert page.title() == "12345热线 办理结果公开"
            articles = page.locator("article.case")
            assert articles.count() == 1
            article = articles.first
            assert article.get_attribute("data-number") == published["public"]
            shown = article.inner_text()
            # what R7.6 says is published: content, times, notification time, answer, satisfaction
            assert "宜城街道停水三天" in shown and "宜城街道某小区停水三天，无人通知。" in shown
            assert "答复：" in shown and "管网抢修完毕，已恢复供水。" in shown
            assert "满意度：满意" in shown
            assert "受理 2026-03-02 09:00" in shown and "告知 2026-03-02 11:00" in shown
            assert "办结 2026-03-03 11:00" in shown
            # and what it never publishes
            text_all, html = page.inner_text("body"), page.content()
            for secret in PERSONAL:
                assert secret not in text_all, secret
                assert secret not in html, secret
            assert "[姓名已隐藏]" in shown and "[身份证号已隐藏]" in shown and "[电话已隐藏]" in shown
            # R7.3c: the discipline report does not appear at all
            for leak in (published["secret"], "红包", "局长", "李四"):
                assert leak not in html, leak
            page.screenshot(path=SCREENSHOT, full_page=True)
        finally:
            browser.close()
        # the same rule on the JSON the page is built from
        body = httpx.get(f"{base}/api/v1/public/cases").text
        assert published["public"] in body and published["secret"] not in body
        for secret in PERSONAL:
            assert secret not in body, secret
