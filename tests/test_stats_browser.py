"""The statistics page (/app/stats, issue 12 item 6) in headless Chromium over the hand-built April
2026 (tests/test_stats_api.py's store, read on 2026-05-06 12:00): the charts are drawn (their
canvases hold drawn pixels), the date filter changes the numbers, a chart element and a figure open
the cases or calls behind them and a case opens its card, a unit's clerk sees their own unit's
figures only, and nothing breaks the pages' Content-Security-Policy (the Console collects CSP
reports as errors). Screenshots go to /tmp/stats-*.png."""
from __future__ import annotations

import pytest

from tests import test_stats_api
from tests.test_staff_pages_browser import running

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

store = test_stats_api.store  # April 2026 read on 05-06 (fixture)
CHARTS = ("chart-hour", "chart-trend", "chart-category", "chart-channel", "chart-overdue", "chart-ranking")
# drawn pixels of a chart's canvas (not transparent, not white)
INK = """id => { const c = document.querySelector('#' + id + ' canvas'); if (!c || !c.width) return 0;
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 3] > 0 && (d[i] < 240 || d[i + 1] < 240 || d[i + 2] < 240)) n++;
  return n; }"""
# the page position of the middle of a bar (series, data index) as ECharts laid it out
BAR_AT = """([id, series, index]) => { const el = document.getElementById(id); el.scrollIntoView({ block: 'center' });
  const c = echarts.getInstanceByDom(el);
  const b = c.getModel().getSeriesByIndex(series).getData().getItemLayout(index); const r = el.getBoundingClientRect();
  return [r.left + b.x + b.width / 2, r.top + b.y + b.height / 2]; }"""


@pytest.fixture
def console(seeded, store, domain, engine, tmp_path):
    with running(domain, engine, tmp_path) as c:
        yield c


def loaded(page, n: int) -> None:
    page.wait_for_selector(f"body[data-loads='{n}']")


def tile(page, key: str) -> str:
    return page.inner_text(f"#summary button.figure[data-figure='{key}'] b")


def test_charts_drawn_filters_and_drill_down_to_the_case_card(console):
    back = console.login("bo1", expect="/app/back")
    back.click("header a[href='/app/stats']")
    back.wait_for_url("**/app/stats")
    loaded(back, 1)  # this month so far (May 2026): little to show
    back.fill("#filter-form input[name=month]", "2026-04")
    back.click("#filter-form button[type=submit]")
    loaded(back, 2)
    back.screenshot(path="/tmp/stats-back-office.png", full_page=True)
    assert back.locator("#filters .error").is_hidden()
    assert "2026-04-01 00:00 至 2026-05-01 00:00" in back.inner_text("#filters .period")
    # every chart drew something: bars, lines, a pie, or (the ranking, whose route is not there yet) "暂无数据"
    ink = {chart: back.evaluate(INK, chart) for chart in CHARTS}
    assert all(n > 200 for n in ink.values()), ink
    # the figures are the API's: April's 12 accepted cases, 接通率 2 / 3 (tests/test_stats_api.py)
    assert tile(back, "accepted") == "12"
    assert "2/3" in back.inner_text("#summary button.figure[data-figure='answer_rate']")
    assert back.locator("#units tbody tr[data-unit='water_supply']").count() == 1

    # a figure opens the cases behind it ...
    back.click("#summary button.figure[data-figure='accepted']")
    back.wait_for_selector("#drill[data-rows='12']")
    # ... a chart element too: the bar of category water_supply (6 = C1 C2 C9 C20 C22 C23)
    categories = back.evaluate("() => echarts.getInstanceByDom(document.getElementById('chart-category'))"
                               ".getOption().yAxis[0].data")
    index = categories.index("供水")
    x, y = back.evaluate(BAR_AT, ["chart-category", 0, index])
    back.mouse.click(x, y)
    back.wait_for_selector("#drill[data-rows='6']")
    assert "分类：供水" in back.inner_text("#drill .title")
    # ... and a case opens its card, as the back office's look-up shows it
    number = back.locator("#drill tbody tr").first.get_attribute("data-number")
    back.click(f"#drill tbody tr[data-number='{number}'] button.open-case")
    back.wait_for_selector(f"#drill-case .case-card[data-number='{number}']")

    # a kind of case: complaints accepted in April shown by kind: C3 alone (C8, C21 are R7.3c, in no breakdown)
    back.click("#channels .kinds button[data-kind='complaint']")
    back.wait_for_selector("#drill[data-rows='1']")
    # the calls behind the 10 o'clock bar of calls queued (k2 answered, k3 abandoned)
    x, y = back.evaluate(BAR_AT, ["chart-hour", 0, 10])
    back.mouse.click(x, y)
    back.wait_for_selector("#drill[data-rows='2']")
    assert back.locator("#drill tbody tr[data-call]").count() == 2

    # the date filter: 04-01 alone holds one accepted case (C1), and its two calls
    back.fill("#filter-form input[name=since]", "2026-04-01")
    back.fill("#filter-form input[name=until]", "2026-04-02")
    back.click("#filter-form button[type=submit]")
    loaded(back, 3)
    assert tile(back, "accepted") == "1" and tile(back, "offered") == "2"
    # the unit filter: the water company's own figures (7 accepted cases went to it in April)
    back.fill("#filter-form input[name=since]", "")
    back.fill("#filter-form input[name=until]", "")
    back.select_option("#filter-form select[name=unit]", "water_supply")
    back.click("#filter-form button[type=submit]")
    loaded(back, 4)
    assert tile(back, "accepted") == "7"
    assert back.locator("#calls").is_hidden()  # call figures are the hotline's, not a unit's


def test_r5_3_a_unit_clerk_sees_only_their_own_units_figures(console):
    clerk = console.login("water1", expect="/app/unit")
    clerk.click("header a[href='/app/stats']")  # the unit page links its own statistics
    clerk.wait_for_url("**/app/stats")
    loaded(clerk, 1)
    clerk.fill("#filter-form input[name=month]", "2026-04")
    clerk.click("#filter-form button[type=submit]")
    loaded(clerk, 2)
    clerk.screenshot(path="/tmp/stats-unit-clerk.png", full_page=True)
    assert clerk.locator("#filters .error").is_hidden()
    unit = clerk.locator("#filter-form select[name=unit]")
    assert unit.is_disabled() and unit.locator("option").all_inner_texts() == ["宜兴市自来水公司"]
    assert tile(clerk, "accepted") == "7" and tile(clerk, "overdue") == "1"   # not the city's 12 and 3
    assert [r.get_attribute("data-unit") for r in clerk.locator("#units tbody tr").all()] == ["water_supply"]
    for section in ("#calls", "#trend", "#operators"):
        assert clerk.locator(section).is_hidden()
    assert "全部" not in clerk.inner_text("#filter-form")
    assert clerk.evaluate(INK, "chart-category") > 200
    # the overdue figure opens the unit's own overdue work order (WO22)
    clerk.click("#summary button.figure[data-figure='overdue']")
    clerk.wait_for_selector("#drill[data-rows='1']")
    assert "自来水" in clerk.inner_text("#drill tbody")

    # the front desk has no statistics page
    desk = console.login("op1", expect="/app/desk")
    desk.goto(console.base + "/app/stats")
    desk.wait_for_url("**/app/desk")


def test_unit_ranking_drawn_with_bands_from_the_assessment(console):
    """The ranking is the assessment's (GET /api/v1/assessment, issue 12 item 2) for the month shown."""
    assessed = console.api("GET", "/assessment?month=2026-04", "bo1").json()
    scored = sorted((u for u in assessed["units"] if u["score"] is not None), key=lambda u: (u["score"], u["code"]))
    assert len(scored) >= 2, scored
    back = console.login("bo1", expect="/app/back")
    back.goto(console.base + "/app/stats")
    loaded(back, 1)
    back.fill("#filter-form input[name=month]", "2026-04")
    back.click("#filter-form button[type=submit]")
    loaded(back, 2)
    bands = back.inner_text("#ranking .bands")
    assert all(f"{b['band']} {b['label']}（≥{b['min_score']:g}）" in bands for b in assessed["bands"]), bands
    option = back.evaluate("() => echarts.getInstanceByDom(document.getElementById('chart-ranking')).getOption()")
    names = option["yAxis"][0]["data"]
    assert sorted(names) == sorted(u["name"] for u in scored) and names[0] == scored[0]["name"]  # lowest first: the best on top
    colours = {d["itemStyle"]["color"] for d in option["series"][0]["data"]}
    assert len(colours) == len({u["band"] for u in scored})  # each band its own colour
    assert back.evaluate(INK, "chart-ranking") > 200
    back.locator("#ranking").screenshot(path="/tmp/stats-ranking.png")
    # a unit's bar shows that unit's own figures
    for _ in range(40):  # the bars grow in (an animation): click where the best unit's bar is now
        x, y = back.evaluate(BAR_AT, ["chart-ranking", 0, len(names) - 1])
        back.mouse.click(x, y)
        if back.input_value("#filter-form select[name=unit]"):  # the click chose the unit
            break
        back.wait_for_timeout(250)
    loaded(back, 3)
    best = next(u for u in scored if u["name"] == names[-1])
    assert back.input_value("#filter-form select[name=unit]") == best["code"]
