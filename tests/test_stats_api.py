"""The statistics API (issue 12 item 6, /api/v1/stats; R5.2, R5.3, R7.3c) on SQLite and PostgreSQL,
over the hand-built April 2026 of tests/test_figures.py plus the overdue work of
tests/test_stats_figures.py, read on 2026-05-06 12:00. Its numbers are the figures' own (hand-worked
in those tests); here: the API shows them and no other, each list behind a number has that many
rows, and who may read which figures."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from tests.helpers import local, ok, refused, when
from tests.test_figures import _call, build_cases
from tests.test_stats_figures import add_overdue
from ticketing.figures import CaseFigures, Period, WorkOrderFigures
from ticketing.models import Case, User
from ticketing.store import session_scope

APRIL = {"month": "2026-04"}
CANARY = "纪检甲一"  # the R7.3c cases' title and description


@pytest.fixture
def store(seeded, domain, clock):
    clock.set("2026-05-06T12:00")
    with session_scope(seeded) as s:
        ids = build_cases(s, domain)
        ids.update(add_overdue(s, domain))
        s.execute(update(Case).where(Case.confidential.is_(True)).values(title=CANARY, description=CANARY))
        op1 = s.execute(select(User.id).where(User.username == "op1")).scalar_one()
        answered = lambda at, hold: [("operator_connected", at, {"holdtime": hold, "operator": "8001"}, op1)]
        ids["k1"] = _call(s, "k1", "04-01 09:00", events=[("queued", "04-01 09:00:10", {}, None),
                                                          *answered("04-01 09:00:20", 10)])
        ids["k2"] = _call(s, "k2", "04-01 10:00", events=[("queued", "04-01 10:00:10", {}, None),
                                                          *answered("04-01 10:00:40", 30)])
        ids["k3"] = _call(s, "k3", "04-02 10:00", events=[("queued", "04-02 10:00:10", {}, None),
                                                          ("queue_abandoned", "04-02 10:00:12", {}, None)])
        numbers = dict(s.execute(select(Case.id, Case.number)).all())
    return ids, numbers


def test_r5_2_case_figures_are_the_figures_own_and_every_count_lists_its_cases(api, store, seeded):
    ids, numbers = store
    body = ok(api.get("/api/v1/stats/cases", "bo1", params=APRIL))
    assert when(body["period"]["since"]) == local("2026-04-01T00:00") and body["unit"] is None
    with seeded() as s:
        intake = CaseFigures(s).intake(Period.month(2026, 4))
        work = WorkOrderFigures(s).summary(Period.month(2026, 4))
    assert body["intake"]["accepted"] == intake.accepted and body["intake"]["by_category"] == intake.by_category
    # April of test_figures (8 accepted, C8 confidential) + C20 C21 (R7.3c) C22 C23 accepted in April
    assert (body["intake"]["accepted"], body["intake"]["confidential"]) == (12, 2)
    assert "discipline_economic" not in body["intake"]["by_category"]
    assert body["rates"]["satisfaction"] == {"numerator": 5, "denominator": 6, "rate": 5 / 6}
    assert body["rates"]["on_time"]["denominator"] == work.on_time.denominator
    assert body["work"]["dispatched"] == work.dispatched

    def rows(**params):
        r = ok(api.get("/api/v1/stats/cases/rows", "bo1", params={**APRIL, **params}))
        return [c["number"] for c in r["cases"]]

    for category, n in body["intake"]["by_category"].items():
        assert len(rows(figure="accepted", category=category)) == n
    for channel, n in body["intake"]["by_channel"].items():
        assert len(rows(figure="accepted", channel=channel)) == n
    for unit, n in body["intake"]["by_unit"].items():
        assert len(rows(figure="accepted", to_unit=unit)) == n
    # 满意率's misses: C9 (unsatisfied); 按时办结率's misses: WO10 (C10, late), WO4 (C4, never
    # reported), WO22 (C22, due 04-17) and WO21 (C21, R7.3c, due 04-24): the totals count R7.3c work
    assert rows(figure="satisfaction", part="missed") == [numbers[ids["c9"]]]
    missed = ok(api.get("/api/v1/stats/cases/rows", "bo1", params={**APRIL, "figure": "on_time", "part": "missed"}))
    assert sorted(c["number"] for c in missed["cases"]) == sorted(numbers[ids[c]] for c in ("c10", "c4", "c22", "c21"))
    assert all(c["work_order_id"] for c in missed["cases"]) and sorted(c["units"][0] for c in missed["cases"]) == [
        "discipline_commission", "urban_management", "urban_management", "water_supply"]
    assert len(missed["cases"]) == body["rates"]["on_time"]["denominator"] - body["rates"]["on_time"]["numerator"]
    assert len(rows(figure="accepted", limit=5)) == 5
    assert ok(api.get("/api/v1/stats/cases/rows", "bo1", params={**APRIL, "limit": 5}))["more"] is True
    # another month, other numbers (the filter)
    march = ok(api.get("/api/v1/stats/cases", "bo1", params={"month": "2026-03"}))
    assert march["intake"]["accepted"] == 1  # C10
    # a breakdown of something other than accepted cases is meaningless
    refused(api.get("/api/v1/stats/cases/rows", "bo1", params={**APRIL, "figure": "closed", "kind": "complaint"}),
            422, "figure")


def test_r8_2_r8_3_unit_figures_and_overdue_now_by_unit(api, store):
    ids, numbers = store
    units = {u["code"]: u for u in ok(api.get("/api/v1/stats/units", "sup1", params=APRIL))["units"]}
    w, u = units["water_supply"], units["urban_management"]
    # test_figures: W 响应率 3 / 4, 按时办结率 4 / 4, 满意率 3 / 4. Added: WO22 notified 04-13 by its
    # 04-14 due (met), WO20 due 04-29 never notified (missed), WO23 cancelled first (not due) ->
    # 响应率 4 / 6; reports due in April: + WO22 (04-17, missed; WO20's is 05-07) -> 4 / 5.
    assert (w["response"]["numerator"], w["response"]["denominator"]) == (4, 6)
    assert (w["on_time"]["numerator"], w["on_time"]["denominator"]) == (4, 5)
    assert (w["satisfaction"]["numerator"], w["satisfaction"]["denominator"]) == (3, 4)
    assert (u["on_time"]["numerator"], u["on_time"]["denominator"]) == (0, 2)
    assert "discipline_commission" not in units  # only R7.3c work: never a unit's figure
    assert w["name"] == "宜兴市自来水公司"

    over = ok(api.get("/api/v1/stats/overdue", "bo1"))
    assert (over["total"]["report"], over["total"]["notify"]) == (3, 1)
    assert {x["code"]: (x["report"], x["notify"]) for x in over["units"]} == {
        "urban_management": (1, 0), "water_supply": (1, 1)}
    listed = ok(api.get("/api/v1/stats/overdue/rows", "bo1", params={"unit": "water_supply", "deadline": "notify"}))
    assert [(c["number"], c["work_order_id"]) for c in listed["cases"]] == [(numbers[ids["c20"]], ids["wo20"])]
    everything = ok(api.get("/api/v1/stats/overdue/rows", "bo1"))["cases"]
    assert len(everything) == 3 and any(c["confidential"] for c in everything)


def test_gb_t_33358_call_figures_per_hour_day_operator_and_their_calls(api, store):
    ids, _ = store
    body = ok(api.get("/api/v1/stats/calls", "bo1", params={"since": "2026-04-01", "until": "2026-04-03"}))
    q = body["queue"]
    # k1 10 s, k2 30 s answered, k3 abandoned after 2 s -> 接通率 2 / 3, 15 s 1 / 3, short abandon 1 / 3
    assert (q["offered"], q["answered"], q["answered_within"]["numerator"], q["abandoned_short"]["numerator"]) == (3, 2, 1, 1)
    assert [(h["key"], h["offered"]) for h in body["by_hour"]] == [("9", 1), ("10", 2)]
    assert [(d["key"], d["answer_rate"]["rate"]) for d in body["by_day"]] == [("2026-04-01", 1.0), ("2026-04-02", 0.0)]
    (op,) = body["by_operator"]
    assert (op["name"], op["answered"], op["wait"]["average"]) == ("op1", 2, 20)
    rows = ok(api.get("/api/v1/stats/calls/rows", "bo1", params={"month": "2026-04", "part": "answered_within"}))
    assert [c["call_id"] for c in rows["calls"]] == [ids["k1"]] and rows["calls"][0]["operator_name"] == "op1"
    hour = ok(api.get("/api/v1/stats/calls/rows", "bo1", params={"month": "2026-04", "hour": 10}))
    assert [c["call_id"] for c in hour["calls"]] == [ids["k2"], ids["k3"]]
    day = ok(api.get("/api/v1/stats/calls/rows", "bo1", params={"month": "2026-04", "day": "2026-04-02"}))
    assert [c["call_id"] for c in day["calls"]] == [ids["k3"]]
    assert "13900000009" not in str(rows) + str(body)  # no caller's number


def test_r5_3_a_unit_reads_its_own_figures_only_and_the_front_desk_none(api, store):
    # the front desk reads no statistics
    for path in ("cases", "cases/rows", "units", "overdue", "overdue/rows", "calls", "calls/rows"):
        refused(api.get(f"/api/v1/stats/{path}", "op1", params={} if "overdue" in path else APRIL), 403, "R5.2")
    # a unit clerk: their own unit by default, another unit 403, no totals, no calls
    mine = ok(api.get("/api/v1/stats/cases", "water1", params=APRIL))
    assert mine["unit"] == "water_supply" and mine["intake"]["by_unit"] == {"water_supply": 7}
    assert mine["intake"]["confidential"] == 0
    for path in ("cases", "cases/rows", "units", "overdue", "overdue/rows"):
        refused(api.get(f"/api/v1/stats/{path}", "water1", params={"unit": "urban_management"}), 403, "R5.3")
    refused(api.get("/api/v1/stats/calls", "water1", params=APRIL), 403, "R5.2")
    assert [u["code"] for u in ok(api.get("/api/v1/stats/units", "water1", params=APRIL))["units"]] == ["water_supply"]
    over = ok(api.get("/api/v1/stats/overdue", "water1"))
    assert over["total"] is None and [(u["code"], u["report"], u["notify"]) for u in over["units"]] == [
        ("water_supply", 1, 1)]
    # the drill-down of a unit lists its cases, and of their units only its own (R5.3)
    listed = ok(api.get("/api/v1/stats/cases/rows", "water1", params={**APRIL, "figure": "accepted"}))["cases"]
    assert len(listed) == 7 and all(c["units"] == ["water_supply"] for c in listed)
    c3 = ok(api.get("/api/v1/stats/cases/rows", "bo1", params={**APRIL, "figure": "accepted", "to_unit": "urban_management"}))
    assert any(c["units"] == ["urban_management", "water_supply"] for c in c3["cases"])  # C3: returned by U, then W
    refused(api.get("/api/v1/stats/cases", "bo1", params={**APRIL, "unit": "no_such_unit"}), 404, "not_found")


def test_r7_3c_discipline_reports_are_counted_never_shown_by_content(api, store):
    ids, numbers = store
    for who in ("bo1", "sup1", "admin1", "water1", "disc1"):
        for path, params in (("cases/rows", {**APRIL, "figure": "received"}), ("overdue/rows", {}),
                             ("cases/rows", {**APRIL, "figure": "response", "part": "missed"}), ("cases", APRIL)):
            r = api.get(f"/api/v1/stats/{path}", who, params=params)
            assert r.status_code == 200 and CANARY not in r.text, (who, path)
    listed = ok(api.get("/api/v1/stats/cases/rows", "bo1", params={**APRIL, "figure": "accepted"}))["cases"]
    confidential = [c for c in listed if c["confidential"]]
    assert sorted(c["number"] for c in confidential) == sorted([numbers[ids["c8"]], numbers[ids["c21"]]])
    assert set(confidential[0]) == {"number", "status", "category_code", "units", "confidential", "work_order_id"}
    # the commission's own figures never hold them either (a unit's figures leave R7.3c out)
    disc = ok(api.get("/api/v1/stats/cases", "disc1", params=APRIL))
    assert disc["unit"] == "discipline_commission" and disc["intake"]["accepted"] == 0
    assert ok(api.get("/api/v1/stats/overdue", "disc1"))["units"][0]["report"] == 0


def test_period_parameters(api, store, clock):
    refused(api.get("/api/v1/stats/cases", "bo1", params={"month": "2026-04", "since": "2026-04-01"}), 422, "period")
    refused(api.get("/api/v1/stats/cases", "bo1", params={"since": "2026-04-02", "until": "2026-04-02"}), 422, "period")
    refused(api.get("/api/v1/stats/cases", "bo1", params={"since": "2026-04-02"}), 422, "period")
    refused(api.get("/api/v1/stats/cases", "bo1", params={"since": "1900-01-01", "until": "2026-01-01"}), 422, "period")
    refused(api.get("/api/v1/stats/cases", "bo1", params={"month": "2026-06"}), 422, "period")  # not begun
    assert api.get("/api/v1/stats/cases", "bo1", params={"month": "2026-13"}).status_code == 422
    # neither: this month so far (May 2026 until now, 05-06 12:00); a month not over ends now
    default = ok(api.get("/api/v1/stats/cases", "bo1"))["period"]
    assert (when(default["since"]), when(default["until"])) == (local("2026-05-01T00:00"), local("2026-05-06T12:00"))
    # since/until are local days: 04-01 .. 04-02 holds C1 (04-01 10:00) only
    day = ok(api.get("/api/v1/stats/cases", "bo1", params={"since": "2026-04-01", "until": "2026-04-02"}))
    assert day["intake"]["accepted"] == 1
