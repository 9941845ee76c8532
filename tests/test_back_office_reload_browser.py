"""The back office's page (/app/back) in headless Chromium: every action reloads every list, and a
reload must not throw away a form a clerk is filling in -- the typed text stays and the form still
sends what the clerk typed (R7.3 dispatch, R8.6 return decision)."""
from __future__ import annotations

import pytest

from tests.test_staff_pages_browser import running, workflow

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

INSTRUCTIONS = "请城管牵头，自然资源局配合，三日内现场核查并答复"
NOTE = "请先与供电公司核实后再申请退回"


@pytest.fixture
def console(seeded, domain, engine, tmp_path):
    with running(domain, engine, tmp_path) as c:
        yield c


def _loads(page, section: str) -> int:
    return int(page.locator(f"#{section}").get_attribute("data-loads") or 0)


def _reloaded(page, before: dict[str, int]) -> None:
    """Wait until each list has been drawn again since `before` (the page counts its reloads)."""
    for section, n in before.items():
        page.locator(f"#{section}[data-loads='{n + 1}']").wait_for(state="attached")


def test_r7_3_r8_6_a_list_reload_keeps_the_form_being_filled_in(console, sessions, domain):
    with workflow(sessions, domain) as (wf, a, _s):
        numbers = []
        for title in ("小区违章搭建", "楼顶违建"):
            case = wf.accept(a("op1"), kind="complaint", channel="landline", title=title, description="楼顶搭建彩钢房",
                             category_code="illegal_construction")
            wf.escalate(a("op1"), case, note="多单位，请后台派单")
            numbers.append(case.number)
        ret_case = wf.accept(a("op1"), kind="complaint", channel="landline", title="电费异常", description="电费突增",
                             category_code="water_supply")
        (ret_wo,) = wf.dispatch(a("op1"), ret_case, units=["water_supply"])
        wf.request_return(a("water1"), ret_wo, reason="电费属供电公司职责")
        ret_id, ret_number = ret_wo.id, ret_case.number
    typed, untouched = numbers

    back = console.login("bo1", expect="/app/back")
    lists = ("pending-dispatch", "returns")
    for section in lists:
        back.locator(f"#{section}[data-loads='1']").wait_for(state="attached")
    dispatch = back.locator(f"#pending-dispatch .item[data-key='{typed}']")
    other = back.locator(f"#pending-dispatch .item[data-key='{untouched}']")
    ret = back.locator(f"#returns .item[data-key='{ret_id}']")
    dispatch.locator("textarea[name=instructions]").fill(INSTRUCTIONS)
    ret.locator("input[name=note]").fill(NOTE)
    other.evaluate("el => { el.dataset.probe = 'old'; }")  # to see that a reload did draw it afresh

    # a reload of every list, as any action or the refresh button starts it
    before = {s: _loads(back, s) for s in lists}
    back.get_by_role("button", name="全部刷新").click()
    _reloaded(back, before)
    assert other.get_attribute("data-probe") is None  # the untouched item was replaced
    assert dispatch.locator("textarea[name=instructions]").input_value() == INSTRUCTIONS
    assert ret.locator("input[name=note]").input_value() == NOTE

    # the return decision is sent with the note typed before the reload; its own reload of every
    # list comes while the dispatch form still holds its text
    before = {s: _loads(back, s) for s in lists}
    ret.get_by_role("button", name="不批准").click()
    _reloaded(back, before)
    back.locator("#returns .empty").wait_for()
    assert console.api("GET", f"/work-orders/{ret_id}", "bo1").json()["status"] == "dispatched"
    events = console.api("GET", f"/cases/{ret_number}/events", "bo1").json()
    assert [e["data"] for e in events if e["action"] == "decide_return"] == [{"approved": False, "note": NOTE}]
    assert dispatch.locator("textarea[name=instructions]").input_value() == INSTRUCTIONS

    # and the kept dispatch form still works, sending what was typed
    dispatch.get_by_role("button", name="交办").click()
    dispatch.wait_for(state="detached")
    case = console.api("GET", f"/cases/{typed}", "bo1").json()
    assert case["status"] == "dispatched"
    assert {w["instructions"] for w in case["work_orders"]} == {INSTRUCTIONS}
    assert back.locator(f"#pending-dispatch .item[data-key='{untouched}']").count() == 1
