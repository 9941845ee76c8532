"""Hot topics in a real browser (R7.6, issue 13 item 6): the back office sees the week's hot topic
on its page and publishes the topic's answer; /public shows it, without personal data. Headless
Chromium as in test_staff_pages_browser.py."""
from __future__ import annotations

import pytest

from tests.test_hot_topics import WATER
from tests.test_staff_pages_browser import running, workflow

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with running(domain, engine, tmp_path) as c:
        yield c


def test_r7_6_back_office_sees_a_hot_topic_and_publishes_its_answer_to_public(console, sessions, domain, clock):
    with workflow(sessions, domain) as (wf, a, _s):
        for title, description, location, name, phone in WATER + WATER[:1]:
            wf.accept(a("op1"), kind="complaint", channel="landline", title=title, description=description,
                      citizen_name=name, citizen_phone=phone, location=location, category_code="water_supply")
        # R7.3c: reports to the discipline commission never make or join a topic
        for _ in range(4):
            wf.accept(a("op1"), kind="complaint", channel="landline", title="举报", description="人民路停水，某科长受贿",
                      citizen_name="周强", citizen_phone="13700000001", location="人民路9号",
                      category_code="discipline_economic")
    clock.advance(minutes=5)

    back = console.login("bo1", expect="/app/back")
    box = back.locator("#hot-topics")
    topic = box.locator(".item[data-key='water_supply/停水/人民路']")
    topic.wait_for()
    assert "本期 5 件 · 上期 0 件 · 新出现" in topic.inner_text()
    assert box.locator(".item .case-card").count() == 1  # nothing of the discipline reports
    form = topic.locator("form.hot-answer")
    assert form.locator("input[name=title]").input_value() == "关于人民路停水问题的解答"
    # personal data is refused next to the form, the text kept
    form.locator("textarea[name=answer]").fill("王小明家的水管已修好。")
    form.get_by_role("button", name="发布").click()
    form.locator(".error", has_text="姓名").wait_for()
    form.locator("textarea[name=answer]").fill("人民路爆管已于今日18时抢修完毕，恢复供水。")
    form.get_by_role("button", name="发布").click()
    box.locator(".item[data-key='water_supply/停水/人民路']", has_text="已发布解答").wait_for()
    box.locator(".answers .hot-answer-item", has_text="关于人民路停水问题的解答").wait_for()

    public = console.open("/public")
    section = public.locator("#hot-topics")
    section.wait_for()
    text = section.inner_text()
    assert "关于人民路停水问题的解答" in text and "恢复供水" in text and "相关诉求 5 件" in text
    page = public.content()
    for personal in [w[3] for w in WATER] + [w[4] for w in WATER] + ["88号", "16号", "周强", "受贿"]:
        assert personal not in page

    # supervision reads the topics, publishes nothing
    sup = console.login("sup1", expect="/app/back")
    sup.locator("#hot-topics .item[data-key='water_supply/停水/人民路']").wait_for()
    assert sup.locator("#hot-topics form.hot-answer").count() == 0
