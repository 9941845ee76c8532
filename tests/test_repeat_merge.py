"""Repeated requests merged (重复诉求并单, 国办函〔2025〕66号; issue 13 item 7): a new case repeating an
open one (same caller, or same place, same category, within policy.repeats.within_days) is flagged
to the desk; the back office (R5.2) merges it into the open case, which keeps the citizen's callback
(R7.4); the duplicate is closed as merged and counted honestly; R7.3c cases never take part.
The fixture clock starts Monday 2026-03-02 09:00 Shanghai."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from callback import attempts as A
from tests.helpers import ok, refused, report_back, travel
from ticketing.merge_model import CaseMerge
from ticketing.models import AuditEvent, Case, UnitNotification
from ticketing.store import session_scope

PHONE = "13800000001"
STREET = "人民路88号"


def _case(api, *, phone=PHONE, location=STREET, category="water_supply", kind="complaint", as_="op1",
          title="停水三天"):
    return ok(api.post("/api/v1/cases", as_, json={
        "kind": kind, "channel": "landline", "title": title, "description": "人民路一带停水，无通知",
        "citizen_phone": phone, "location": location, "category_code": category}), 201)


def _merge(api, number, into, as_="bo1", version=None):
    if version is None:
        version = ok(api.get(f"/api/v1/cases/{number}", as_))["version"]
    return api.post(f"/api/v1/cases/{number}/merge", as_, json={"into": into, "expected_version": version})


def test_repeat_flagged_by_caller_or_place_only_within_category_and_window(api, clock):
    first = _case(api)
    ok(api.post(f"/api/v1/cases/{first['number']}/dispatch", "op1", json={"units": ["water_supply"]}))
    # Spaces around the place do not make it another place.
    again = _case(api, location=f" {STREET} ")
    neighbour = _case(api, phone="13900000002")
    other_topic = _case(api, category="gas_supply", title="燃气味")
    elsewhere = _case(api, phone="13900000003", location="解放路1号")

    assert ok(api.get(f"/api/v1/cases/{again['number']}/repeats", "op1")) == [
        {"number": first["number"], "status": "dispatched", "ground": "same_caller"}]
    assert ok(api.get(f"/api/v1/cases/{neighbour['number']}/repeats", "op1")) == [
        {"number": again["number"], "status": "new", "ground": "same_place"},
        {"number": first["number"], "status": "dispatched", "ground": "same_place"}]
    assert ok(api.get(f"/api/v1/cases/{other_topic['number']}/repeats", "op1")) == []
    assert ok(api.get(f"/api/v1/cases/{elsewhere['number']}/repeats", "op1")) == []
    # Units do not see the desk's flag.
    refused(api.get(f"/api/v1/cases/{first['number']}/repeats", "water1"), 403, "R5.2")

    # policy.repeats.within_days = 30: a case 31 days later repeats nothing.
    travel(api, clock, "2026-04-02T09:00:00")
    late = _case(api)
    assert ok(api.get(f"/api/v1/cases/{late['number']}/repeats", "op1")) == []


def test_back_office_merges_a_repeat_and_the_citizen_gets_the_surviving_case_callback(api, seeded, domain, clock):
    """The issue's done-when: the same number calls again about the same street's water cut; the
    repeat is flagged and merged; the merged case's citizen is called back about the surviving case."""
    first = _case(api)
    c = ok(api.post(f"/api/v1/cases/{first['number']}/dispatch", "op1", json={"units": ["water_supply"]}))
    wo_id = c["work_orders"][0]["id"]
    again = _case(api, title="又停水了")
    assert [r["number"] for r in ok(api.get(f"/api/v1/cases/{again['number']}/repeats", "op1"))] == [first["number"]]

    refused(_merge(api, again["number"], first["number"], as_="op1"), 403, "R5.2")
    refused(api.post(f"/api/v1/cases/{again['number']}/merge", "bo1", json={"into": first["number"]}),
            422, "expected_version")
    refused(_merge(api, again["number"], again["number"]), 422, "repeat_merge")
    survivor = ok(_merge(api, again["number"], first["number"]))
    assert survivor["number"] == first["number"] and survivor["status"] == "dispatched"

    merged = ok(api.get(f"/api/v1/cases/{again['number']}", "bo1"))
    assert (merged["status"], merged["callback_required"]) == ("closed", False)
    assert ok(api.get(f"/api/v1/cases/{again['number']}/merges", "bo1"))["merged_into"] == first["number"]
    links = ok(api.get(f"/api/v1/cases/{first['number']}/merges", "bo1"))
    assert (links["merged_into"], [(m["number"], m["ground"]) for m in links["merged"]]) == (
        None, [(again["number"], "same_caller")])
    # Merged once: a second merge, or a merge into the closed duplicate, is refused.
    refused(_merge(api, again["number"], first["number"]), 409, "repeat_merge")
    third = _case(api)
    refused(_merge(api, third["number"], again["number"]), 409, "repeat_merge")

    with session_scope(seeded) as s:
        actions = {(e.action, e.case_id, e.data.get("into") or e.data.get("duplicate"))
                   for e in s.execute(select(AuditEvent).where(AuditEvent.action.in_(["merge", "merged_in"]))).scalars()}
        ids = dict(s.execute(select(Case.number, Case.id)).all())
        assert actions == {("merge", ids[again["number"]], first["number"]),
                           ("merged_in", ids[first["number"]], again["number"])}
        (notice,) = s.execute(select(UnitNotification).where(UnitNotification.kind == "repeat_merged")).scalars()
        assert again["number"] in notice.message and notice.work_order_id == wo_id
        assert s.execute(select(CaseMerge.ground)).scalars().all() == ["same_caller"]

    # The unit answers the surviving case; at callback time one call goes out, to the citizen's number.
    ok(api.post(f"/api/v1/work-orders/{wo_id}/notify", "water1", json={"channel": "phone"}))
    ok(report_back(api, wo_id, "water1", answer="管道抢修完毕，已恢复供水"))
    with session_scope(seeded) as s:
        due = s.execute(select(Case.callback_due_at).where(Case.number == first["number"])).scalar_one()
    travel(api, clock, (due - timedelta(hours=1)).astimezone(domain.calendar.tz).replace(tzinfo=None, hour=10)
           .isoformat())
    with session_scope(seeded) as s:
        A.plan_due(s, domain)
    with session_scope(seeded) as s:
        claimed = A.claim(s, domain, 10)
    assert [(c.case_number, c.phone) for c in claimed] == [(first["number"], PHONE)]


def test_r7_3c_cases_are_never_flagged_nor_merged(api, seeded):
    open_case = _case(api)
    secret = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "landline", "title": "举报", "description": "某科长收受财物",
        "citizen_phone": PHONE, "location": STREET, "category_code": "discipline_economic"}), 201)
    secret_twin = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "landline", "title": "举报", "description": "某科长收受财物",
        "citizen_phone": PHONE, "location": STREET, "category_code": "discipline_economic"}), 201)
    assert ok(api.get(f"/api/v1/cases/{secret_twin['number']}/repeats", "bo1")) == []
    refused(_merge(api, secret_twin["number"], secret["number"]), 409, "R7.3c")
    refused(_merge(api, open_case["number"], secret["number"]), 409, "R7.3c")


def test_a_merged_repeat_counts_as_accepted_and_merged_never_as_a_closed_case(api, seeded, domain):
    """Counts stay honest: the repeat was a citizen's request (accepted), not a case handled on its
    own — it is not among the closed cases behind 一次办结率 or 满意率."""
    from ticketing.figures import CaseFigures, Period

    first = _case(api)
    ok(api.post(f"/api/v1/cases/{first['number']}/dispatch", "op1", json={"units": ["water_supply"]}))
    again = _case(api)
    ok(_merge(api, again["number"], first["number"]))
    period = Period.month(2026, 3)
    with session_scope(seeded) as s:
        figures = CaseFigures(s)
        intake, closing = figures.intake(period), figures.closing(period)
        assert (intake.accepted, intake.merged) == (2, 1)
        assert closing.closed == 0 and figures.rate("first_time_closed", period).denominator == 0
