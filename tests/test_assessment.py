"""The unit assessment (考核, issue 12 item 2; R5.2, R6.1): config/assessment.yaml, the score of
each unit from the figures, bands, ranks, the drill-down to the cases, and who sees what — on a
hand-built April 2026 (SQLite and PostgreSQL) whose every score is worked out by hand below.

April 2026 in Shanghai: Sat 04-04 .. Mon 04-06 Qingming (04-06 no working day). Deadlines are
stored as the workflow stores them (ticketing.deadlines: working days, 17:30). Default weights
(config/assessment.yaml): 响应率 20, 按时办结率 35, 满意率 35, 退单率 5 (lower is better),
督办率 5 (lower is better); deductions: criticism 1, notice 2, referral 5.
    points = 100 * weight * r / (sum of the weights counted); r = rate, or 1 - rate if lower is better.
Units: W water_supply, U urban_management, H housing_construction, P power_supply,
D discipline_commission (never assessed: R7.3c).
"""
from __future__ import annotations

import pytest
from sqlalchemy import select

from tests.conftest import CONFIG_DIR
from tests.helpers import ok, refused, travel
from tests.test_figures import Builder, t
from ticketing.assessment import (
    AssessmentConfig,
    AssessmentError,
    InquiryDeductions,
    assessment_from_mapping,
    load_assessment,
    rank,
    score_unit,
)
from ticketing.enums import (
    AccountabilityDecision,
    CaseKind,
    CaseStatus,
    Channel,
    InquiryReason,
    InquiryStatus,
    Satisfaction,
    WorkOrderStatus,
)
from ticketing.figures import Rate
from ticketing.inquiry_model import Inquiry
from ticketing.models import MemberUnit
from ticketing.store import session_scope

C, K, S = CaseKind, Channel, Satisfaction


# ---- the configuration -----------------------------------------------------------------------

def test_the_shipped_file_is_the_documented_defaults():
    """config/assessment.yaml writes out the defaults, so deleting a section changes nothing."""
    assert load_assessment(CONFIG_DIR) == AssessmentConfig()
    assert load_assessment(CONFIG_DIR / "no-such-dir") == AssessmentConfig()
    # a deduction for every accountability decision supervision can make (R6.1), and no other
    assert set(InquiryDeductions.__dataclass_fields__) == {d.value for d in AccountabilityDecision}


@pytest.mark.parametrize(("data", "message"), [
    ({"figures": {"respons": {"weight": 20}}}, "figures.respons: unknown figure"),
    ({"figures": {"direct_answer": {"weight": 20}}}, "figures.direct_answer: unknown figure"),  # the center's work
    ({"figures": {"response": {"weight": -1}}}, "figures.response.weight: Input should be greater than or equal to 0"),
    ({"figures": {"response": {"weight": "lots"}}}, "figures.response.weight"),
    ({"figures": {"response": {"weight": 10, "better": "up"}}}, "figures.response.better"),
    ({"figures": {"response": {"wieght": 10}}}, "figures.response.wieght: unknown key"),
    ({"figures": {"response": {"weight": 0}}}, "figures: give at least one figure a weight above 0"),
    ({"bands": []}, "bands: give at least one band"),
    ({"bands": [{"band": "A", "label": "好", "min_score": 50}]}, "bands.0.min_score: the lowest band starts at 0"),
    ({"bands": [{"band": "A", "label": "好", "min_score": 60}, {"band": "B", "label": "差", "min_score": 70},
                {"band": "C", "label": "x", "min_score": 0}]}, "bands.1.min_score: list the bands from the highest"),
    ({"bands": [{"band": "A", "label": "好", "min_score": 60}, {"band": "A", "label": "差", "min_score": 0}]},
     "bands.1.band: 'A' named twice"),
    ({"bands": [{"band": "A", "label": "好", "min_score": 101}]}, "bands.0.min_score: Input should be less than"),
    ({"inquiries": {"warning": 1}}, "inquiries.warning: unknown key"),
    ({"inquiries": {"notice": -2}}, "inquiries.notice"),
    ({"weights": {}}, "weights: unknown key"),
    (["figures"], "expected a mapping"),
])
def test_a_bad_assessment_file_is_refused_naming_the_key(data, message):
    with pytest.raises(AssessmentError) as err:
        assessment_from_mapping(data, source="assessment.yaml")
    assert message in str(err.value) and str(err.value).startswith("assessment.yaml: ")


def test_a_bad_file_on_disk_names_the_file(tmp_path):
    (tmp_path / "assessment.yaml").write_text("figures: {response: {weight: 10}}\nbands: [1, 2\n", encoding="utf-8")
    with pytest.raises(AssessmentError, match="not valid YAML"):
        load_assessment(tmp_path)
    (tmp_path / "assessment.yaml").write_text("figures: {on_time: {weight: 10}}\n", encoding="utf-8")
    only = load_assessment(tmp_path)
    assert list(only.figures) == ["on_time"] and only.bands == AssessmentConfig().bands


# ---- the arithmetic (pure) ---------------------------------------------------------------------

@pytest.mark.parametrize(("score", "band"), [
    (100, "A"), (90, "A"), (89.99, "B"), (80, "B"), (79.99, "C"), (60, "C"), (59.99, "D"), (0, "D"), (None, None)])
def test_band_boundaries_a_score_on_the_line_is_in_the_higher_band(score, band):
    found = AssessmentConfig().band_of(score)
    assert (found.band if found else None) == band


def test_ranks_share_a_place_on_equal_scores_and_skip_after_it():
    assert rank({"a": 90.5, "b": 97.0, "c": 90.5, "d": None, "e": 12.0}) == {
        "a": 2, "b": 1, "c": 2, "d": None, "e": 4}


def test_denominator_0_gives_the_weight_to_the_figures_counted():
    config = AssessmentConfig()
    none = Rate(0, 0)
    # Only 按时办结率 (35) and 退单率 (5) counted: 100 * 35 * 1/2 / 40 = 43.75 and 100 * 5 * (1 - 1/4) / 40
    # = 9.375 -> 53.125, shown 53.12 (Python rounds the float 53.125 to 53.12): band D.
    s = score_unit(config, {"response": none, "on_time": Rate(1, 2), "satisfaction": none,
                            "returned": Rate(1, 4), "urged_overdue": none})
    assert s.figures["on_time"].points == pytest.approx(43.75) and s.figures["returned"].points == pytest.approx(9.375)
    assert (s.figures["response"].rate, s.figures["response"].points) == (None, None)
    assert (s.score, s.band.band) == (53.12, "D")
    # nothing to count at all: no score and no band (neither 0 nor 100), whatever was deducted
    s = score_unit(config, dict.fromkeys(config.figures, none), {"notice": 1})
    assert (s.score, s.band, s.deduction) == (None, None, 2)
    # deductions never take a score below 0
    s = score_unit(config, {**dict.fromkeys(config.figures, none), "on_time": Rate(0, 3)}, {"referral": 1})
    assert (s.score, s.band.band, s.deduction) == (0, "D", 5)


def test_a_figure_weighing_0_is_shown_but_earns_nothing():
    config = assessment_from_mapping({"figures": {"on_time": {"weight": 1}, "urged": {"weight": 0, "better": "lower"}}})
    s = score_unit(config, {"on_time": Rate(3, 4), "urged": Rate(2, 4)})
    assert (s.figures["urged"].rate, s.figures["urged"].points, s.score) == (0.5, 0.0, 75.0)


# ---- the hand-built April ------------------------------------------------------------------------

def _inquiry(s, unit_id, opened, *, case_id=None, decided=None, decision=None):
    s.add(Inquiry(unit_id=unit_id, case_id=case_id, reason=InquiryReason.OVERDUE, description="请说明",
                  status=InquiryStatus.CLOSED if decided else InquiryStatus.ASKED, opened_at=t(opened),
                  explanation_due_at=t(opened).replace(day=t(opened).day + 3),
                  findings="属实" if decided else None, decision=decision,
                  decided_at=t(decided) if decided else None, urge_count=0, urged_thresholds=[]))


def build_april(s, domain) -> dict[str, str]:
    b = Builder(s, domain)
    num: dict[str, str] = {}

    # -- W ---------------------------------------------------------------------------------------
    # A1 to W 04-01: notify due 2 working days -> 04-03 17:30, notified 04-02: met. Report due 5
    # working days 04-02, 03, (04-06 Qingming skipped) 07, 08, 09 -> 04-09 17:30; reported 04-08:
    # met (had the holiday been counted, due 04-08 ... and by calendar days 04-06: late). Satisfied.
    a1 = b.case(C.CONSULTATION, K.LANDLINE, "water_supply", "13900000001", "04-01 10:00",
                satisfaction=S.SATISFIED, closed_at=t("04-10 11:00"))
    wo = b.order(a1, "water_supply", "04-01 10:30", notified="04-02 10:00", reported="04-08 12:00")
    assert (wo.notify_due_at, wo.report_due_at, wo.notify_met, wo.report_met) == (
        t("04-03 17:30"), t("04-09 17:30"), True, True)
    # A2 to W 04-03: notify due 04-08 17:30, notified 04-09: late, and urged 04-09 08:00 while late
    # (督办). Report due 04-13 17:30, extended by 3 working days (R8.5) -> 04-16 17:30; reported
    # 04-15: met against the approved deadline. Basically satisfied.
    a2 = b.case(C.CONSULTATION, K.MOBILE, "water_supply", "13900000002", "04-03 09:00",
                satisfaction=S.BASICALLY_SATISFIED, closed_at=t("04-17 11:00"))
    wo = b.order(a2, "water_supply", "04-03 09:30", notified="04-09 09:00", reported="04-15 10:00",
                 extension_days=3, extension_decided="04-10 09:00")
    assert (wo.notify_due_at, wo.report_due_at, wo.notify_met, wo.report_met) == (
        t("04-08 17:30"), t("04-16 17:30"), False, True)
    b.urge(wo, "04-09 08:00")
    # A3 (complaint) to W 04-14: notify due 04-16 17:30, notified 04-15: met. Report due 10 working
    # days -> 04-28 17:30; reported 04-29: late. Urged 04-27, before the deadline: a reminder, not
    # 督办. Unsatisfied.
    a3 = b.case(C.COMPLAINT, K.WEB, "water_supply", "13900000003", "04-14 09:00",
                satisfaction=S.UNSATISFIED, closed_at=t("04-30 11:00"))
    wo = b.order(a3, "water_supply", "04-14 09:30", notified="04-15 10:00", reported="04-29 10:00")
    assert (wo.report_due_at, wo.notify_met, wo.report_met) == (t("04-28 17:30"), True, False)
    b.urge(wo, "04-27 09:00")
    # R7.3c: a confidential case with a work order at W, everything wrong with it (notified and
    # reported late, urged while late, unsatisfied), and an inquiry on it decided "referral" in
    # April: none of it may reach W's assessment.
    x = b.case(C.COMPLAINT, K.LANDLINE, "discipline_economic", "13900000009", "04-01 09:00", confidential=True,
               assessed=False, callback_required=False, satisfaction=S.UNSATISFIED, closed_at=t("04-29 16:00"))
    wo = b.order(x, "water_supply", "04-01 09:30", notified="04-07 09:00", reported="04-28 10:00")
    assert (wo.notify_met, wo.report_met) == (False, False)
    b.urge(wo, "04-07 08:00")
    # and the commission's own R7.3c work order
    d = b.case(C.COMPLAINT, K.LANDLINE, "discipline_economic", "13900000008", "04-02 09:00", confidential=True,
               assessed=False, callback_required=False, status=CaseStatus.DISPATCHED)
    b.order(d, "discipline_commission", "04-02 09:30")
    # W so far, R7.3c left out:
    #   响应率 A1 met, A2 late, A3 met = 2/3;   按时办结率 A1, A2 (extended) met, A3 late = 2/3;
    #   满意率 A1 satisfied, A2 basically, A3 unsatisfied = 2/3;   退单率 0/3;   督办率 A2 = 1/3.

    # -- U and H -------------------------------------------------------------------------------------
    # B1 (complaint) to U 04-07; U returns it (R8.6, approved before notifying: not due for U);
    # the back office sends it to H 04-09 (round 2): notify due 04-13 17:30, notified 04-09: met;
    # report due 10 working days -> 04-23 17:30, reported 04-22: met. Satisfied 04-24.
    b1 = b.case(C.COMPLAINT, K.WEB, "city_appearance", "13900000004", "04-07 09:00",
                satisfaction=S.SATISFIED, closed_at=t("04-24 11:00"))
    b.order(b1, "urban_management", "04-07 10:00", status=WorkOrderStatus.RETURNED).return_reason = "非本单位职责"
    wo = b.order(b1, "housing_construction", "04-09 09:00", round_=2, notified="04-09 15:00", reported="04-22 10:00")
    assert (wo.notify_due_at, wo.report_due_at, wo.report_met) == (t("04-13 17:30"), t("04-23 17:30"), True)
    # B2 to U 04-20: notify due 04-22 17:30, notified 04-21: met; report due 04-27 17:30, reported
    # 04-24: met. Satisfied 04-28.
    b2 = b.case(C.CONSULTATION, K.MOBILE, "city_appearance", "13900000005", "04-20 09:00",
                satisfaction=S.SATISFIED, closed_at=t("04-28 11:00"))
    wo = b.order(b2, "urban_management", "04-20 09:30", notified="04-21 10:00", reported="04-24 10:00")
    assert (wo.report_due_at, wo.report_met) == (t("04-27 17:30"), True)

    # -- P -------------------------------------------------------------------------------------------
    # C1 to P 04-22: notify due 04-24 17:30, notified 04-23: met; report due 04-29 17:30, not
    # reported by the end of April: missed; urged 04-30 while late (督办). Not closed: nothing rated.
    c1 = b.case(C.CONSULTATION, K.LANDLINE, "power_supply", "13900000006", "04-22 09:00",
                status=CaseStatus.DISPATCHED)
    wo = b.order(c1, "power_supply", "04-22 09:30", notified="04-23 10:00")
    assert wo.report_due_at == t("04-29 17:30")
    b.urge(wo, "04-30 09:00")
    s.flush()

    # -- inquiries (R6.1) ------------------------------------------------------------------------
    units = {u.code: u.id for u in s.execute(select(MemberUnit)).scalars()}
    _inquiry(s, units["water_supply"], "04-10 10:00", decided="04-20 10:00", decision=AccountabilityDecision.CRITICISM)
    _inquiry(s, units["water_supply"], "04-21 10:00")  # still open
    _inquiry(s, units["water_supply"], "04-08 10:00", case_id=x.id, decided="04-22 10:00",
             decision=AccountabilityDecision.REFERRAL)  # on the R7.3c case: left out
    _inquiry(s, units["housing_construction"], "04-23 10:00", decided="04-27 10:00",
             decision=AccountabilityDecision.NOTICE)
    _inquiry(s, units["power_supply"], "03-20 10:00", decided="03-30 10:00",
             decision=AccountabilityDecision.REFERRAL)  # decided in March: not April's
    num.update(a1=a1.number, a2=a2.number, a3=a3.number, x=x.number, b1=b1.number, b2=b2.number, c1=c1.number)
    return num


@pytest.fixture
def april(api, seeded, domain, clock):
    with session_scope(seeded) as s:
        numbers = build_april(s, domain)
    travel(api, clock, "2026-05-06T09:00")
    return api, numbers


def _figures(unit: dict) -> dict:
    return {n: (f["numerator"], f["denominator"]) for n, f in unit["figures"].items()}


def test_r5_2_april_scores_bands_and_ranks_worked_by_hand(april):
    api, _ = april
    body = ok(api.get("/api/v1/assessment?month=2026-04", "bo1"))
    assert [b["band"] for b in body["bands"]] == ["A", "B", "C", "D"] and body["bands"][0] == {
        "band": "A", "label": "好", "min_score": 90}
    assert body["period"] == {"since": "2026-03-31T16:00:00Z", "until": "2026-04-30T16:00:00Z"}
    units = {u["code"]: u for u in body["units"]}
    assert "discipline_commission" not in units  # R7.3c: the commission's work is never assessed

    w = units["water_supply"]
    assert _figures(w) == {"response": (2, 3), "on_time": (2, 3), "satisfaction": (2, 3), "returned": (0, 3),
                           "urged_overdue": (1, 3)}
    # all five counted (weights 100): 20*2/3 + 35*2/3 + 35*2/3 + 5*(1-0) + 5*(1-1/3)
    #   = 13.333 + 23.333 + 23.333 + 5 + 3.333 = 68.333; less criticism 1 (the referral on the
    #   R7.3c case is not W's) = 67.33 -> C (60 <= 67.33 < 80).
    assert w["figures"]["on_time"] == {"label": "按时办结率", "numerator": 2, "denominator": 3,
                                       "rate": pytest.approx(2 / 3), "weight": 35.0, "better": "higher",
                                       "points": pytest.approx(70 / 3)}
    assert w["figures"]["urged_overdue"]["points"] == pytest.approx(10 / 3)
    assert (w["score"], w["band"], w["band_label"]) == (67.33, "C", "一般")
    assert w["inquiries"] == {"open": 1, "decided": 1, "opened": 2, "late_explanations": 1,
                              "by_decision": {"criticism": 1}, "deduction": 1.0}

    u = units["urban_management"]
    # 响应率 1/1 and 按时办结率 1/1 (B1 returned before it was due: not counted); 满意率 2/2 (a
    # case counts for every unit it went to: B1 and B2); 退单率 1/2; 督办率 0/2.
    # 20 + 35 + 35 + 5*(1-1/2) + 5 = 97.5 -> A.
    assert _figures(u) == {"response": (1, 1), "on_time": (1, 1), "satisfaction": (2, 2), "returned": (1, 2),
                           "urged_overdue": (0, 2)}
    assert (u["score"], u["band"]) == (97.5, "A")

    h = units["housing_construction"]
    # B1 round 2: every figure 1/1 (退单率 and 督办率 0/1) = 100, less notice 2 = 98 -> A.
    assert _figures(h) == {"response": (1, 1), "on_time": (1, 1), "satisfaction": (1, 1), "returned": (0, 1),
                           "urged_overdue": (0, 1)}
    assert (h["score"], h["band"], h["inquiries"]["deduction"]) == (98.0, "A", 2.0)

    p = units["power_supply"]
    # 满意率 0/0: not counted, its 35 goes to the rest (20 + 35 + 5 + 5 = 65):
    # 100*20*1/65 + 100*35*0/65 + 100*5*(1-0)/65 + 100*5*(1-1)/65 = 2500/65 = 38.46 -> D.
    # (The March referral is not April's.)
    assert _figures(p) == {"response": (1, 1), "on_time": (0, 1), "satisfaction": (0, 0), "returned": (0, 1),
                           "urged_overdue": (1, 1)}
    assert p["figures"]["satisfaction"]["rate"] is None and p["figures"]["satisfaction"]["points"] is None
    assert p["figures"]["response"]["points"] == pytest.approx(2000 / 65)
    assert (p["score"], p["band"], p["inquiries"]["decided"]) == (38.46, "D", 0)

    # Ranked by score: H 98, U 97.5, W 67.33, P 38.46; units with nothing to count: no score, no rank.
    assert [(c, units[c]["rank"]) for c in ("housing_construction", "urban_management", "water_supply",
                                             "power_supply")] == [
        ("housing_construction", 1), ("urban_management", 2), ("water_supply", 3), ("power_supply", 4)]
    idle = units["natural_resources"]
    assert (idle["score"], idle["band"], idle["rank"]) == (None, None, None)
    assert all(f["denominator"] == 0 for f in idle["figures"].values())

    # the same by since/until (until exclusive), and by one unit
    same = ok(api.get("/api/v1/assessment?since=2026-04-01&until=2026-05-01", "sup1"))
    assert same == body
    one = ok(api.get("/api/v1/assessment/water_supply?month=2026-04", "sup1"))
    assert one == {**w, "period": body["period"]}


def test_r8_drill_down_lists_exactly_the_cases_behind_a_figure(april):
    api, n = april

    def cases(unit, figure, part, who="bo1"):
        r = ok(api.get(f"/api/v1/assessment/{unit}/cases?month=2026-04&figure={figure}&part={part}", who))
        return [c["number"] for c in r["cases"]], r["cases"]

    # 按时办结率 of W: A1, A2, A3 due; A1, A2 met; A3 missed — never the R7.3c case.
    assert cases("water_supply", "on_time", "denominator")[0] == [n["a1"], n["a2"], n["a3"]]
    assert cases("water_supply", "on_time", "numerator")[0] == [n["a1"], n["a2"]]
    missed, rows = cases("water_supply", "on_time", "missed", who="water1")
    assert missed == [n["a3"]] and rows[0]["report_met"] is False and rows[0]["work_order_status"] == "reported"
    assert cases("water_supply", "response", "missed")[0] == [n["a2"]]
    assert cases("water_supply", "urged_overdue", "numerator")[0] == [n["a2"]]
    assert cases("water_supply", "satisfaction", "denominator")[0] == [n["a1"], n["a2"], n["a3"]]
    assert n["x"] not in str(ok(api.get("/api/v1/assessment/water_supply/cases?month=2026-04&figure=urged_overdue"
                                        "&part=denominator", "bo1")))
    assert cases("urban_management", "returned", "numerator")[0] == [n["b1"]]
    sat = cases("urban_management", "satisfaction", "denominator")[1]
    assert [(c["number"], c["satisfaction"], c["work_order_id"]) for c in sat] == [
        (n["b1"], "satisfied", None), (n["b2"], "satisfied", None)]
    assert cases("power_supply", "satisfaction", "denominator")[0] == []
    # no content in the drill-down: the case page shows it to whoever may read it
    assert set(rows[0]) == {"number", "status", "work_order_id", "work_order_status", "notify_due_at", "notify_met",
                            "report_due_at", "report_met", "satisfaction", "closed_at"}
    refused(api.get("/api/v1/assessment/water_supply/cases?month=2026-04&figure=direct_answer", "bo1"), 422, "figure")
    r = api.get("/api/v1/assessment/water_supply/cases?month=2026-04&figure=on_time&part=all", "bo1")
    assert r.status_code == 422


def test_r5_3_a_unit_sees_its_own_figures_and_band_and_no_rank_operators_nothing(april):
    api, _ = april
    mine = ok(api.get("/api/v1/assessment?month=2026-04", "water1"))
    assert [u["code"] for u in mine["units"]] == ["water_supply"]
    assert (mine["units"][0]["score"], mine["units"][0]["band"], mine["units"][0]["rank"]) == (67.33, "C", None)
    assert ok(api.get("/api/v1/assessment/water_supply?month=2026-04", "water1"))["rank"] is None
    refused(api.get("/api/v1/assessment/urban_management?month=2026-04", "water1"), 403, "R5.3")
    refused(api.get("/api/v1/assessment/urban_management/cases?month=2026-04&figure=on_time", "water1"), 403, "R5.3")
    for path in ("/api/v1/assessment", "/api/v1/assessment/water_supply",
                 "/api/v1/assessment/water_supply/cases?figure=on_time"):
        refused(api.get(path, "op1"), 403, "R5.2")
    # the commission's work is R7.3c only: nothing of it is assessed
    assert ok(api.get("/api/v1/assessment?month=2026-04", "disc1"))["units"] == []
    assert api.get("/api/v1/assessment/discipline_commission?month=2026-04", "sup1").status_code == 404
    assert api.get("/api/v1/assessment/no_such_unit?month=2026-04", "sup1").status_code == 404
    assert ok(api.get("/api/v1/assessment/water_supply?month=2026-04", "admin1"))["rank"] == 3


def test_the_period_by_default_is_this_month_so_far_and_bad_ones_are_422(april, clock):
    api, _ = april
    now = ok(api.get("/api/v1/assessment", "bo1"))  # 2026-05-06 09:00: May so far, nothing due yet
    assert now["period"] == {"since": "2026-04-30T16:00:00Z", "until": "2026-05-06T01:00:00Z"}
    assert {u["score"] for u in now["units"]} == {None}
    for query in ("month=2026-13", "month=2026-4", "month=2026-04&since=2026-04-01&until=2026-05-01",
                  "since=2026-04-01", "since=2026-05-01&until=2026-04-01", "since=2026-04-01&until=2026-04-01",
                  "month=2026-06", "since=0001-01-01&until=2026-01-01"):
        r = api.get(f"/api/v1/assessment?{query}", "bo1")
        assert r.status_code == 422, (query, r.text)


def test_callcenter_doctor_checks_the_assessment_file(tmp_path):
    """A bad file is found before the hotline starts (Domain.load would refuse it)."""
    import shutil

    from callcenter.ops import doctor
    from callcenter.settings import Settings

    config = tmp_path / "config"
    shutil.copytree(CONFIG_DIR, config)
    (config / "assessment.yaml").write_text("figures: {respons: {weight: 3}}\n", encoding="utf-8")
    findings = doctor.check_config(Settings(state_dir=tmp_path / "state", config_dir=config, database_url=""))
    [failed] = [f for f in findings if f.level == "FAIL"]
    assert "assessment.yaml" in failed.message and "figures.respons: unknown figure" in failed.message


def test_unit_rates_takes_rate_by_unit_when_the_figures_have_it(april, monkeypatch, seeded):
    """contracts.md item 1: once `Figures.rate_by_unit` exists the assessment reads it (one call per
    figure); a unit missing from its answer had nothing to count."""
    from ticketing.figures.units import unit_rates
    from ticketing.figures import CaseFigures, Period, WorkOrderFigures

    calls = []

    def rate_by_unit(self, name, period):
        calls.append(name)
        return {"water_supply": self.rate(name, period, "water_supply")}

    for reader in (CaseFigures, WorkOrderFigures):
        monkeypatch.setattr(reader, "rate_by_unit", rate_by_unit, raising=False)
    with seeded() as s:
        rates = unit_rates(s, ["on_time", "satisfaction"], Period.month(2026, 4), ["water_supply", "urban_management"])
    assert sorted(calls) == ["on_time", "satisfaction"]
    assert rates["water_supply"] == {"on_time": Rate(2, 3), "satisfaction": Rate(2, 3)}
    assert rates["urban_management"] == {"on_time": Rate(0, 0), "satisfaction": Rate(0, 0)}
