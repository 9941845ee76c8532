"""R7.6: nothing personal goes public. The detector is checked against a corpus of realistic
request texts (tests/data/pii_corpus.yaml, positive and negative), and publishing through the API
takes the back office's reviewed text, refusing text that still holds personal data."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.helpers import close_case, ok, refused
from ticketing.privacy import find_personal_data, scrub

CORPUS = yaml.safe_load((Path(__file__).parent / "data" / "pii_corpus.yaml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CORPUS["positive"], ids=lambda c: c["text"][:16])
def test_r7_6_personal_data_is_found_and_taken_out(case):
    names, location = case.get("names", []), case.get("location", "")
    found = {kind for _s, _e, kind in find_personal_data(case["text"], names=names, location=location)}
    assert set(case["kinds"]) <= found, found
    published = scrub(case["text"], names=names, location=location)
    for secret in case["secret"]:
        assert secret not in published, published


@pytest.mark.parametrize("case", CORPUS["negative"], ids=lambda c: (c if isinstance(c, str) else c["text"])[:16])
def test_r7_6_ordinary_text_is_left_as_it_is(case):
    text, location = (case, "") if isinstance(case, str) else (case["text"], case.get("location", ""))
    assert find_personal_data(text, location=location) == [], text
    assert scrub(text, location=location) == text


def test_r7_6_the_corpus_is_large_enough():
    assert len(CORPUS["positive"]) + len(CORPUS["negative"]) >= 100


def closed_case(api, **fields) -> str:
    body = {"kind": "consultation", "channel": "landline", "title": "水费咨询",
            "description": "王小明反映：住人民路18号3幢201室，电话13812345678，水费翻倍。",
            "citizen_name": "王小明", "citizen_phone": "13812345678", "location": "宜城街道人民路18号"}
    body.update(fields)
    number = ok(api.post("/api/v1/cases", "op1", json=body), 201)["number"]
    ok(api.post(f"/api/v1/cases/{number}/answer", "op1",
                json={"answer": "已告知王先生阶梯水价标准，如有疑问回电13812345678。", "satisfaction": "satisfied"}))
    ok(close_case(api, number, "op1"))
    return number


def test_r7_6_publishing_takes_the_reviewed_text_and_refuses_personal_data(api):
    number = closed_case(api)
    preview = ok(api.get(f"/api/v1/cases/{number}/publication", "bo1"))
    assert {f["kind"] for f in preview["findings"]} >= {"name", "phone", "address"}
    for secret in ("王小明", "13812345678", "3幢201室", "王先生"):
        assert secret not in preview["summary"] + preview["answer"]
    refused(api.get(f"/api/v1/cases/{number}/publication", "op1"), 403, "R5.2")

    # The reviewer's own text still carries a phone number written with dots: refused, nothing public.
    r = api.post(f"/api/v1/cases/{number}/publish", "bo1",
                 json={"public_summary": "市民反映水费翻倍，联系138.1234.5678", "public_answer": "已答复"})
    body = refused(r, 422, "R7.6")
    assert "电话" in body["detail"] and "1234" not in body["detail"]
    assert ok(api.get("/api/v1/public/cases")) == []

    ok(api.post(f"/api/v1/cases/{number}/publish", "bo1",
                json={"public_summary": "市民反映本月水费翻倍。", "public_answer": "已告知阶梯水价标准。"}))
    (public,) = ok(api.get("/api/v1/public/cases"))
    assert (public["summary"], public["answer"]) == ("市民反映本月水费翻倍。", "已告知阶梯水价标准。")
    page = api.client.get("/public").text
    for secret in ("王小明", "王先生", "13812345678", "人民路18号", "3幢201室"):
        assert secret not in page


def test_r7_6_publishing_without_review_publishes_the_suggested_redacted_text(api):
    number = closed_case(api)
    ok(api.post(f"/api/v1/cases/{number}/publish", "bo1", json={}))
    (public,) = ok(api.get("/api/v1/public/cases"))
    text = public["summary"] + public["answer"] + public["title"]
    for secret in ("王小明", "王先生", "13812345678", "人民路18号", "3幢201室"):
        assert secret not in text
    assert "水费翻倍" in public["summary"] and "阶梯水价标准" in public["answer"]
