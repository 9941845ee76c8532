"""Hot topics and their public answers (R7.6; issue 13 item 6): requests grouped by category, the
words they share and the street they name, with counts and the trend against the period before;
the back office publishes a public answer to a topic on /public without personal data; R7.3c
reports never count in a topic nor reach an answer. On SQLite and PostgreSQL.
The fixture clock starts Monday 2026-03-02 09:00 Shanghai: the default period is 02-24 .. now."""
from __future__ import annotations

import pytest
from sqlalchemy import select, update

from tests.helpers import ok, refused, travel
from ticketing.hot_topic_model import CaseTerms, HotTopicAnswer
from ticketing.hot_topics import street_of
from ticketing.models import AuditEvent, Case
from ticketing.store import session_scope

WATER = [  # (title, description, location, name, phone): the same street's water cut, told five ways
    ("停水三天", "人民路一带停水，无通知", "宜城街道人民路88号", "王小明", "13800000001"),
    ("家里没水了", "市民反映人民路自来水断水，至今没有恢复", "人民路3号", "李建国", "13800000002"),
    ("又停水了", "爆管停水，请尽快抢修", "人民路", "张伟", "13800000003"),
    ("人民路停水", "早上起来就没水，也没有停水通知", "人民路16号2单元", "陈芳", "13800000004"),
]
NOISE = [("夜间施工噪音", "工地夜间施工噪音大，影响休息", place, "赵六", "13900000001")
         for place in ("解放东路12号", "阳羡路5号", "东虹路8号")]


def _case(api, title, description, location, name, phone, category="water_supply", kind="complaint"):
    return ok(api.post("/api/v1/cases", "op1", json={
        "kind": kind, "channel": "landline", "title": title, "description": description, "citizen_name": name,
        "citizen_phone": phone, "location": location, "category_code": category}), 201)["number"]


def _secret(api):
    """R7.3c: a report to the discipline commission that also speaks of the water cut in 人民路."""
    return _case(api, "停水举报", "人民路停水，某科长收受财物不作为", "人民路9号", "周强", "13700000001",
                 category="discipline_economic")


@pytest.fixture
def week(api, clock):
    """One water cut in 人民路 the week before; this week four more, three noise complaints over the
    city, two gas smells (too few for a topic) and three R7.3c reports."""
    travel(api, clock, "2026-02-20T10:00:00")
    before = _case(api, *WATER[0])
    travel(api, clock, "2026-03-02T09:00:00")
    water = [_case(api, *w) for w in WATER]
    noise = [_case(api, *n, category="noise_nuisance") for n in NOISE]
    gas = [_case(api, "燃气味道大", "楼道里有燃气味", "阳羡路7号", "钱七", "13600000001", category="gas_supply")
           for _ in range(2)]
    secret = [_secret(api) for _ in range(3)]
    clock.advance(minutes=30)
    return {"before": before, "water": water, "noise": noise, "gas": gas, "secret": secret}


def test_street_of_names_a_street_never_a_door():
    assert street_of("宜城街道人民路88号3单元") == "人民路"
    assert street_of("丁蜀镇西望村三组") == "西望村"
    assert street_of("阳光小区5幢201室") == "阳光小区"
    assert street_of("新街街道") == "新街街道"
    assert street_of("人民路与解放路交叉口") == "人民路"
    assert street_of("13812345678") == "" and street_of("") == ""


def test_r7_6_the_week_s_hot_topics_with_counts_trend_and_why(api, week):
    body = ok(api.get("/api/v1/hot-topics", "bo1"))
    topics = [(t["category_code"], t["term"], t["place"], t["count"], t["previous"], t["trend"]) for t in body["topics"]]
    # a burst of 停水 in one street, up from one; the city's noise complaints, new; gas: only two
    assert topics == [("water_supply", "停水", "人民路", 4, 1, "up"),
                      ("noise_nuisance", "施工", "", 3, 0, "new")]  # its words tie: the later one
    water = body["topics"][0]
    assert water["category_name"] and water["terms"][0] == "停水" and len(water["terms"]) <= 5
    assert water["case_numbers"] == list(reversed(week["water"]))  # newest first
    # no door, no name, no number among the words that explain it
    for t in body["topics"]:
        assert not {"王小明", "88", "3号", "13800000001"} & set(t["terms"])
    # supervision reads them; the front desk and member units do not
    assert ok(api.get("/api/v1/hot-topics", "sup1"))["topics"][0]["term"] == "停水"
    refused(api.get("/api/v1/hot-topics", "op1"), 403, "R5.2")
    refused(api.get("/api/v1/hot-topics", "water1"), 403, "R5.2")
    # another period: only the week before (one request: no topic); too long a period is refused
    assert ok(api.get("/api/v1/hot-topics?since=2026-02-17&until=2026-02-24", "bo1"))["topics"] == []
    refused(api.get("/api/v1/hot-topics?since=2025-01-01&until=2026-03-01", "bo1"), 422, "period")


def test_r7_3c_reports_never_count_in_hot_topics_nor_get_a_public_answer(api, seeded, week, clock):
    more = [_secret(api) for _ in range(3)]  # six R7.3c reports: more than any topic
    body = ok(api.get("/api/v1/hot-topics", "bo1"))
    assert {t["category_code"] for t in body["topics"]} == {"water_supply", "noise_nuisance"}
    assert body["topics"][0]["count"] == 4  # their 停水 in 人民路 adds nothing
    shown = {n for t in body["topics"] for n in t["case_numbers"]}
    assert not shown & set(week["secret"] + more)
    with session_scope(seeded) as s:  # never even segmented
        ids = s.execute(select(Case.id).where(Case.number.in_(week["secret"] + more))).scalars().all()
        assert s.execute(select(CaseTerms).where(CaseTerms.case_id.in_(ids))).first() is None
    refused(api.post("/api/v1/hot-topics/answers", "bo1", json={
        "category_code": "discipline_economic", "term": "停水", "place": "人民路", "title": "关于举报",
        "answer": "已转纪委监察局"}), 404, "not_found")


def test_r7_6_back_office_publishes_a_topic_answer_without_personal_data(api, seeded, week, clock):
    topic = {"category_code": "water_supply", "term": "停水", "place": "人民路"}
    answer = "人民路供水管道爆管，已于3月2日18:00抢修完毕恢复供水。停水前将提前24小时公告，咨询请拨12345。"
    refused(api.post("/api/v1/hot-topics/answers", "sup1", json={**topic, "title": "人民路停水", "answer": answer}),
            403, "R5.2")
    # a citizen's name, phone or door in the text is refused, as for a published case
    for leak in ("王小明反映后", "请联系13800000002。", "人民路88号的"):
        refused(api.post("/api/v1/hot-topics/answers", "bo1", json={**topic, "title": "人民路停水",
                                                                     "answer": leak + answer}), 422, "R7.6")
    # only a topic hot in the period
    refused(api.post("/api/v1/hot-topics/answers", "bo1", json={
        "category_code": "gas_supply", "term": "燃气", "place": "", "title": "燃气", "answer": "已处理"}), 404, "not_found")
    first = ok(api.post("/api/v1/hot-topics/answers", "bo1", json={
        **topic, "title": "关于人民路停水的说明", "answer": answer}), 201)
    assert (first["cases"], first["category_code"], first["place"]) == (4, "water_supply", "人民路")
    assert ok(api.get("/api/v1/hot-topics", "bo1"))["topics"][0]["answer_id"] == first["id"]
    # a newer answer to the same topic replaces it
    second = ok(api.post("/api/v1/hot-topics/answers", "bo1", json={
        **topic, "title": "人民路停水已恢复", "answer": answer}), 201)
    public = ok(api.get("/api/v1/public/hot-topics"))
    assert [(p["title"], p["place"], p["cases"]) for p in public] == [("人民路停水已恢复", "人民路", 4)]
    page = api.client.get("/public").text
    assert "热点问题解答" in page and "人民路停水已恢复" in page and "抢修完毕" in page
    for name, _ in [(w[3], w) for w in WATER]:
        assert name not in page
    assert "13800000001" not in page and "88号" not in page
    with session_scope(seeded) as s:
        assert [e.data["answer"] for e in s.execute(select(AuditEvent).where(
            AuditEvent.action == "hot_topic_publish").order_by(AuditEvent.id)).scalars()] == [first["id"], second["id"]]
    refused(api.post(f"/api/v1/hot-topics/answers/{second['id']}/withdraw", "sup1"), 403, "R5.2")
    ok(api.post(f"/api/v1/hot-topics/answers/{second['id']}/withdraw", "bo1"))
    assert ok(api.get("/api/v1/public/hot-topics")) == []
    assert "热点问题解答" not in api.client.get("/public").text
    refused(api.post("/api/v1/hot-topics/answers/999999/withdraw", "bo1"), 404, "not_found")


def test_terms_are_kept_and_made_again_when_the_text_changes(api, seeded, week):
    ok(api.get("/api/v1/hot-topics", "bo1"))
    with session_scope(seeded) as s:
        case_id = s.execute(select(Case.id).where(Case.number == week["noise"][0])).scalar_one()
        kept = s.get(CaseTerms, case_id)
        assert "噪音" in kept.terms.split()
        s.execute(update(Case).where(Case.id == case_id).values(title="燃气泄漏", description="闻到燃气味"))
    topics = ok(api.get("/api/v1/hot-topics", "bo1"))["topics"]
    assert [t["count"] for t in topics if t["category_code"] == "noise_nuisance"] == []  # two left: no topic
    with session_scope(seeded) as s:
        assert "噪音" not in s.get(CaseTerms, case_id).terms.split()
        assert s.execute(select(HotTopicAnswer)).first() is None
