"""The knowledge base's life, permissions, history, use and flags (R5.3, R7.2, A1), on both databases."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tests.helpers import ok, refused
from tests.test_api_lives import new_case
from ticketing.knowledge import expire_past_validity
from ticketing.knowledge_model import KnowledgeEntry, KnowledgeUse
from ticketing.models import AuditEvent, UnitNotification
from ticketing.store import session_scope

ENTRY = {"question": "小区二次供水水箱多久清洗一次？", "answer": "二次供水水箱每半年至少清洗消毒一次，由物业负责并公示水质检测报告。",
         "variants": ["水箱清洗周期"], "keywords": "水箱 清洗", "category_code": "water_supply",
         "legal_basis": "《生活饮用水卫生监督管理办法》", "source_links": ["https://example.org/water"],
         "review_interval_days": 30}


def _ids(hits):
    return [h["id"] for h in hits]


def _write(api, as_="water1", **change):
    return ok(api.post("/api/v1/units/water_supply/knowledge", as_, json={**ENTRY, **change}), 201)


def _publish(api, entry_id, writer="water1"):
    ok(api.post(f"/api/v1/knowledge/{entry_id}/submit", writer))
    return ok(api.post(f"/api/v1/knowledge/{entry_id}/review", "bo1", json={"decision": "publish"}))


def _actions(sessions, entry_id):
    with session_scope(sessions) as s:
        return [e.action for e in s.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars()
                if (e.data or {}).get("entry") == entry_id]


def test_r5_3_r7_2_a_draft_is_its_units_until_the_reviewer_publishes_it(api, sessions):
    entry = _write(api)
    assert entry["state"] == "draft" and entry["version"] == 1
    # nobody but the unit and the reviewer sees a draft; operators do not find it
    assert ok(api.get("/api/v1/knowledge", "op1", params={"q": "水箱清洗"})) == []
    refused(api.get(f"/api/v1/knowledge/{entry['id']}", "op1"), 404, "not_found")
    refused(api.get(f"/api/v1/knowledge/{entry['id']}", "urban1"), 404, "not_found")
    # another unit, an operator, the back office: none writes the water company's entries (R5.3)
    for who in ("urban1", "op1", "bo1"):
        refused(api.post("/api/v1/units/water_supply/knowledge", who, json=ENTRY), 403, "R5.3")
    refused(api.put(f"/api/v1/knowledge/{entry['id']}", "bo1", json={**ENTRY, "answer": "改"}), 403, "R5.3")
    refused(api.post(f"/api/v1/knowledge/{entry['id']}/review", "bo1", json={"decision": "publish"}), 409, "R7.2")

    submitted = ok(api.post(f"/api/v1/knowledge/{entry['id']}/submit", "water1"))
    assert submitted["state"] == "submitted"
    refused(api.post(f"/api/v1/knowledge/{entry['id']}/submit", "water1"), 409, "R7.2")
    assert _ids(ok(api.get("/api/v1/knowledge/review-queue", "bo1"))) == [entry["id"]]
    refused(api.get("/api/v1/knowledge/review-queue", "water1"), 403, "R7.2")
    # only the reviewer publishes: not the unit that wrote it, not an operator
    for who in ("water1", "sup1"):
        refused(api.post(f"/api/v1/knowledge/{entry['id']}/review", who, json={"decision": "publish"}), 403, "R7.2")
    refused(api.post(f"/api/v1/knowledge/{entry['id']}/review", "op1", json={"decision": "publish"}), 404, "not_found")
    published = ok(api.post(f"/api/v1/knowledge/{entry['id']}/review", "bo1", json={"decision": "publish"}))
    assert published["state"] == "published" and published["review_due_at"] is not None
    assert ok(api.get("/api/v1/knowledge/review-queue", "bo1")) == []
    assert _ids(ok(api.get("/api/v1/knowledge", "op1", params={"q": "水箱多久洗一次"}))) == [entry["id"]]
    assert _actions(sessions, entry["id"]) == ["knowledge_add", "knowledge_submit", "knowledge_publish"]


def test_r7_2_a_revision_waits_beside_the_published_text_and_history_keeps_who_changed_what(api, sessions):
    entry = _write(api)
    _publish(api, entry["id"])
    new_answer = "二次供水水箱每季度清洗消毒一次，由物业负责并公示水质检测报告。"
    revised = ok(api.put(f"/api/v1/knowledge/{entry['id']}", "water1", json={**ENTRY, "answer": new_answer}))
    # operators still read the published text until the reviewer publishes the revision
    assert revised["answer"] == ENTRY["answer"] and revised["pending"]["content"]["answer"] == new_answer
    assert revised["pending"]["changed"] == ["answer"]
    found = ok(api.get("/api/v1/knowledge", "op1", params={"q": "水箱清洗"}))
    assert found[0]["answer"] == ENTRY["answer"] and found[0]["pending"] is None
    refused(api.put(f"/api/v1/knowledge/{entry['id']}", "water1", json={**ENTRY, "answer": new_answer}), 422, "R7.2")

    ok(api.post(f"/api/v1/knowledge/{entry['id']}/submit", "water1"))
    refused(api.post(f"/api/v1/knowledge/{entry['id']}/review", "bo1", json={"decision": "return"}), 422, "R7.2")
    returned = ok(api.post(f"/api/v1/knowledge/{entry['id']}/review", "bo1",
                           json={"decision": "return", "note": "请注明依据的文件和条款"}))
    assert returned["state"] == "published" and returned["pending"]["state"] == "returned"
    assert returned["pending"]["note"] == "请注明依据的文件和条款"
    ok(api.put(f"/api/v1/knowledge/{entry['id']}", "water1",
               json={**ENTRY, "answer": new_answer, "legal_basis": "《二次供水设施卫生规范》GB 17051"}))
    final = _publish(api, entry["id"])
    assert final["version"] == 3 and final["answer"] == new_answer and final["pending"] is None

    detail = ok(api.get(f"/api/v1/knowledge/{entry['id']}", "water1"))
    history = [(r["number"], r["state"], r["changed"], r["written_by"] is not None) for r in detail["history"]]
    assert history == [(1, "superseded", sorted(ENTRY.keys() | {"categories", "valid_from", "valid_until"}), True),
                       (2, "returned", ["answer"], True), (3, "published", ["legal_basis"], True)]
    assert detail["history"][1]["reviewed_by"] and detail["history"][2]["reviewed_by"]
    # an operator sees the versions that were published, not the drafts and returns
    assert [r["number"] for r in ok(api.get(f"/api/v1/knowledge/{entry['id']}", "op1"))["history"]] == [1, 3]
    assert _actions(sessions, entry["id"]) == ["knowledge_add", "knowledge_submit", "knowledge_publish",
                                               "knowledge_revise", "knowledge_submit", "knowledge_return",
                                               "knowledge_revise", "knowledge_submit", "knowledge_publish"]


def test_r5_3_withdrawn_and_expired_entries_leave_the_search(api, sessions, clock):
    entry = _write(api)
    _publish(api, entry["id"])
    refused(api.post(f"/api/v1/knowledge/{entry['id']}/withdraw", "urban1", json={}), 403, "R5.3")
    refused(api.post(f"/api/v1/knowledge/{entry['id']}/withdraw", "op1", json={}), 403, "R5.3")
    assert ok(api.post(f"/api/v1/knowledge/{entry['id']}/withdraw", "water1", json={"note": "政策调整"}))["state"] == "withdrawn"
    assert ok(api.get("/api/v1/knowledge", "op1", params={"q": "水箱清洗"})) == []

    until = (clock() + timedelta(days=3)).isoformat()
    other = _write(api, question="爆管抢修期间临时供水点在哪里？", answer="抢修期间在小区门口设临时供水点。",
                   variants=[], valid_until=until)
    _publish(api, other["id"])
    assert _ids(ok(api.get("/api/v1/knowledge", "op1", params={"q": "临时供水点"}))) == [other["id"]]
    clock.advance(days=4)
    api.tokens.clear()  # the day's tokens have expired
    assert ok(api.get("/api/v1/knowledge", "op1", params={"q": "临时供水点"})) == []  # past valid_until
    with session_scope(sessions) as s:
        assert [e.id for e in expire_past_validity(s, clock())] == [other["id"]]
    assert ok(api.get(f"/api/v1/knowledge/{other['id']}", "water1"))["state"] == "expired"
    assert "knowledge_expire" in _actions(sessions, other["id"])


def test_r9_1_entries_past_their_review_date_are_listed_to_their_unit_and_urged(api, sessions, clock):
    entry = _write(api)
    _publish(api, entry["id"])
    refused(api.post(f"/api/v1/knowledge/{entry['id']}/urge", "bo1"), 409, "R7.7")
    assert ok(api.get("/api/v1/knowledge/due", "water1")) == []
    clock.advance(days=31)
    api.tokens.clear()
    due = ok(api.get("/api/v1/knowledge/due", "water1"))
    assert _ids(due) == [entry["id"]] and due[0]["due_for_review"] is True
    assert ok(api.get("/api/v1/knowledge/due", "urban1")) == []
    assert _ids(ok(api.get("/api/v1/knowledge/due", "bo1"))) == [entry["id"]]
    refused(api.get("/api/v1/knowledge/due", "op1"), 403, "R5.3")
    refused(api.post(f"/api/v1/knowledge/{entry['id']}/urge", "water1"), 403, "R7.7")
    ok(api.post(f"/api/v1/knowledge/{entry['id']}/urge", "bo1"))
    with session_scope(sessions) as s:
        notes = s.execute(select(UnitNotification).where(UnitNotification.kind == "knowledge_review_urge")).scalars().all()
        assert len(notes) == 1 and f"#{entry['id']}" in notes[0].message
    # reviewing it again (a new revision published) moves the review date on
    ok(api.put(f"/api/v1/knowledge/{entry['id']}", "water1", json={**ENTRY, "keywords": "水箱 清洗 消毒"}))
    _publish(api, entry["id"])
    assert ok(api.get("/api/v1/knowledge/due", "water1")) == []


def test_r7_2_answering_a_case_records_the_entry_and_version_read_and_usage_ranks_it(api, sessions):
    entry = _write(api)
    _publish(api, entry["id"])
    draft = _write(api, question="草稿条目", answer="尚未发布")
    number = new_case(api)["number"]
    refused(api.post(f"/api/v1/cases/{number}/answer", "op1", json={
        "answer": "x", "satisfaction": "satisfied", "knowledge_entry_id": draft["id"]}), 422, "R7.2")
    ok(api.post(f"/api/v1/cases/{number}/answer", "op1", json={
        "answer": entry["answer"], "satisfaction": "satisfied", "knowledge_entry_id": entry["id"]}))
    ok(api.put(f"/api/v1/knowledge/{entry['id']}", "water1", json={**ENTRY, "answer": ENTRY["answer"] + "如有疑问请拨打12345。"}))
    _publish(api, entry["id"])
    second = new_case(api)["number"]
    ok(api.post(f"/api/v1/cases/{second}/answer", "op1", json={
        "answer": "…", "satisfaction": "unsatisfied", "knowledge_entry_id": entry["id"]}))
    with session_scope(sessions) as s:
        uses = s.execute(select(KnowledgeUse).order_by(KnowledgeUse.id)).scalars().all()
        assert [(u.entry_id, u.version) for u in uses] == [(entry["id"], 1), (entry["id"], 2)]
    events = ok(api.get(f"/api/v1/cases/{second}/events", "bo1"))
    answered = [e for e in events if e["action"] == "answer_directly"][0]["data"]
    assert (answered["knowledge_entry_id"], answered["knowledge_version"]) == (entry["id"], 2)
    usage = ok(api.get("/api/v1/knowledge/usage", "bo1"))
    assert [(u["entry_id"], u["uses"], u["rated"], u["satisfied"], u["satisfaction_rate"]) for u in usage] == [
        (entry["id"], 2, 2, 1, 0.5)]
    refused(api.get("/api/v1/knowledge/usage", "water1"), 403, "R5.2")


def test_r7_2_an_operator_flags_an_entry_and_its_unit_gets_the_task(api, sessions):
    entry = _write(api)
    _publish(api, entry["id"])
    refused(api.post(f"/api/v1/knowledge/{entry['id']}/flags", "urban1", json={"reason": "wrong", "note": "x"}), 403, "R5.1")
    flag = ok(api.post(f"/api/v1/knowledge/{entry['id']}/flags", "op1",
                       json={"reason": "outdated", "note": "自2026年起改为每季度清洗"}), 201)
    assert flag["version"] == 1 and flag["resolved_at"] is None
    with session_scope(sessions) as s:
        note = s.execute(select(UnitNotification).where(UnitNotification.kind == "knowledge_flag")).scalar_one()
        unit = s.get(KnowledgeEntry, entry["id"]).unit_id
        assert note.unit_id == unit and "每季度" in note.message
    assert _ids(ok(api.get("/api/v1/units/water_supply/knowledge-flags", "water1"))) == [flag["id"]]
    refused(api.get("/api/v1/units/water_supply/knowledge-flags", "urban1"), 403, "R5.3")
    assert ok(api.get("/api/v1/units/water_supply/knowledge", "water1"))[0]["open_flags"] == 1
    refused(api.post(f"/api/v1/knowledge-flags/{flag['id']}/resolve", "urban1", json={"resolution": "x"}), 403, "R5.3")
    done = ok(api.post(f"/api/v1/knowledge-flags/{flag['id']}/resolve", "water1", json={"resolution": "已提交修订"}))
    assert done["resolved_at"] is not None
    assert ok(api.get("/api/v1/units/water_supply/knowledge-flags", "water1")) == []
    assert "knowledge_flag" in _actions(sessions, entry["id"]) and "knowledge_flag_resolve" in _actions(sessions, entry["id"])


def test_r9_1_the_deadline_sweep_urges_an_entry_once_per_review_date_and_expires_old_ones(api, sessions, clock, domain):
    from callback.deadlines import sweep_deadlines

    entry = _write(api)
    _publish(api, entry["id"])
    other = _write(api, question="爆管抢修期间临时供水点在哪里？", answer="抢修期间在小区门口设临时供水点。", variants=[],
                   valid_until=(clock() + timedelta(days=3)).isoformat())
    _publish(api, other["id"])
    clock.advance(days=31)
    for expected in ({"knowledge_urged": 1}, {}):  # the second pass: already urged for this date
        with session_scope(sessions) as s:
            report = sweep_deadlines(s, domain)
            assert {k: v for k, v in report.urged.items() if k.startswith("knowledge")} == expected
            assert report.alerts.get("knowledge_expired", 0) == (1 if expected else 0)
    with session_scope(sessions) as s:
        notes = s.execute(select(UnitNotification).where(UnitNotification.kind == "knowledge_review_urge")).scalars().all()
        assert len(notes) == 1 and f"#{entry['id']}" in notes[0].message
        assert s.get(KnowledgeEntry, other["id"]).state == "expired"


def test_r7_6_an_entry_holding_a_citizens_id_number_is_not_published(api):
    entry = _write(api, answer="如王某（身份证320282199001011234）反映的情况，请拨打0510-87900290。")
    ok(api.post(f"/api/v1/knowledge/{entry['id']}/submit", "water1"))
    refused(api.post(f"/api/v1/knowledge/{entry['id']}/review", "bo1", json={"decision": "publish"}), 422, "R7.6")
    assert ok(api.get(f"/api/v1/knowledge/{entry['id']}", "water1"))["state"] == "submitted"
    assert ok(api.get("/api/v1/public/knowledge", params={"q": "水箱清洗"})) == []
