"""The knowledge base in a real browser (R5.3, R7.2, R7.6): a unit writes an entry, the back office
reviews and publishes it, an operator finds it while typing and answers a case with it, and the
public FAQ finds it. Headless Debian Chromium, as in test_staff_pages_browser.py."""
from __future__ import annotations

import pytest

from tests.test_staff_pages_browser import fill_case, running, submit_case

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

QUESTION = "小区二次供水水箱多久清洗一次？"
ANSWER = "二次供水水箱每半年至少清洗消毒一次，由物业负责并公示水质检测报告。"


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with running(domain, engine, tmp_path) as c:
        yield c


def test_r5_3_r7_2_r7_6_an_entry_from_the_unit_to_the_operator_and_the_public(console):
    # the water company writes it and submits it for review
    unit = console.login("water1", expect="/app/unit")
    unit.click("a[href='/app/knowledge']")
    unit.wait_for_url("**/app/knowledge")
    unit.locator("#kb-mine button.new").click()
    unit.fill("#kb-entry input[name=question]", QUESTION)
    unit.fill("#kb-entry textarea[name=variants]", "水箱清洗周期")
    unit.fill("#kb-entry textarea[name=answer]", ANSWER)
    unit.select_option("#kb-entry select[name=category_code]", "water_supply")
    unit.fill("#kb-entry textarea[name=legal_basis]", "《二次供水设施卫生规范》")
    unit.click("#kb-entry button[type=submit]")
    row = unit.locator("#kb-mine tbody tr", has_text=QUESTION)
    row.get_by_role("button", name="提交审核").click()
    unit.locator("#kb-mine tbody tr", has_text="待审核").wait_for()

    # the back office publishes it
    back = console.login("bo1", expect="/app/back")
    back.click("a[href='/app/knowledge']")
    item = back.locator("#kb-review .item", has_text=QUESTION)
    assert "新条目" in item.inner_text() and ANSWER in item.inner_text()
    item.get_by_role("button", name="审核发布").click()
    item.wait_for(state="detached")
    entry_id = console.api("GET", "/knowledge", "op1", params={"q": "水箱清洗"}).json()[0]["id"]

    # the operator types a colloquial question and answers the case with the entry
    desk = console.login("op1", expect="/app/desk")
    desk.locator("#kb-form input[name=q]").press_sequentially("水箱多久洗一次", delay=30)
    hit = desk.locator("#kb-results li", has_text=QUESTION)
    hit.wait_for()
    hit.get_by_role("button", name="用此答复").click()
    fill_case(desk, category="water_supply", title="水箱清洗咨询", description="询问小区水箱清洗周期")
    desk.select_option("#case-form select[name=satisfaction]", "satisfied")
    number = submit_case(desk)
    events = console.api("GET", f"/cases/{number}/events", "bo1").json()
    answered = [e["data"] for e in events if e["action"] == "answer_directly"][0]
    assert (answered["knowledge_entry_id"], answered["knowledge_version"]) == (entry_id, 1)
    usage = console.api("GET", "/knowledge/usage", "bo1").json()
    assert [(u["entry_id"], u["uses"], u["satisfaction_rate"]) for u in usage] == [(entry_id, 1, 1.0)]

    # the public FAQ finds it by another wording, with no login
    public = console.open("/public/faq")
    public.fill("input[name=q]", "二次供水水箱清洗")
    public.click("button[type=submit]")
    public.wait_for_url("**/public/faq?q=*")
    assert public.locator(f"article.faq[data-entry='{entry_id}']").inner_text().startswith(QUESTION)
