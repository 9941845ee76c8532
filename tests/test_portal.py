"""The citizen web portal's API (issue 14 item 1) on SQLite and PostgreSQL: a request sent on the
web becomes a case through the same intake as a phone case (R7.1, R2.2, R7.3), its progress is
read with the case number and the phone's last four digits, and the citizen rates the answer once
(R7.4 by web). A wrong suffix tells nothing about whether the case exists; abuse limits per
address, per phone and per case number answer 429 with a message a citizen understands."""
from __future__ import annotations

import base64
import dataclasses

import pytest
from sqlalchemy import func, select

from tests.helpers import ok, refused, report_back
from ticketing.attachment_model import CaseAttachment
from ticketing.domain import Domain
from ticketing.models import AuditEvent, Case
from ticketing.policy import PortalPolicy
from ticketing.store import session_scope

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 200
PHONE = "13912345678"
NAME = "王小明"
FORM = {"kind": "complaint", "category_code": "water_supply", "description": f"人民路自来水管漏水两天了，我是{NAME}",
        "location": "宜城街道人民路12号", "name": NAME, "phone": PHONE}
LIMITS = PortalPolicy(photo_max_kb=16, submissions_per_address_per_hour=3, submissions_per_phone_per_day=2,
                      failed_checks_per_address_per_hour=6, failed_checks_per_case_per_hour=3)


@pytest.fixture
def domain(base_domain, clock) -> Domain:
    """The city's config with small portal limits, so a test reaches them in a few requests."""
    policy = dataclasses.replace(base_domain.policy, portal=LIMITS)
    return Domain(policy=policy, calendar=base_domain.calendar, city=base_domain.city, clock=clock)


def send(api, **changes):
    return api.post("/api/v1/portal/requests", json={**FORM, **changes})


def progress(api, number: str, suffix: str = PHONE[-4:]):
    return api.post("/api/v1/portal/progress", json={"number": number, "phone_suffix": suffix})


def dispatched_and_reported(api, number: str, answer: str) -> None:
    """The desk takes the web case (R4.1) and dispatches it by its category's routing (R7.3); the
    unit notifies and reports (R8.2, R8.4)."""
    case = ok(api.post(f"/api/v1/cases/{number}/take", "op1"))
    case = ok(api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"expected_version": case["version"]}))
    (wo,) = case["work_orders"]
    ok(api.post(f"/api/v1/work-orders/{wo['id']}/notify", "water1", json={"channel": "phone"}))
    ok(report_back(api, wo["id"], "water1", answer=answer))


def test_catalogue_offers_the_citys_categories_without_r7_3c_nor_urgent_help(api):
    body = ok(api.get("/api/v1/portal/catalogue"))
    assert body["photo_max_kb"] == 16
    codes = {c["code"]: c for c in body["categories"]}
    assert "water_supply" in codes and "discipline_economic" not in codes  # R7.3c: by phone, 12388
    assert all(k["code"] != "urgent_help" for c in codes.values() for k in c["kinds"])
    assert codes["water_supply"]["unit"] and codes["water_supply"]["kinds"]


def test_r7_1_r2_2_r7_3_r7_4_a_web_request_lives_through_the_same_workflow(api, sessions):
    receipt = ok(send(api, photo=base64.b64encode(PNG).decode()), 201)
    number = receipt["number"]
    assert number in receipt["notice"] and "工作日" in receipt["notice"]
    # R7.1, R2.2: a case like any other, channel web, on the desk's list, no owner yet (R4.1)
    desk = ok(api.get("/api/v1/cases", "op1", params={"status": "new"}))
    listed = next(c for c in desk if c["number"] == number)
    assert listed["channel"] == "web" and listed["category_code"] == "water_supply" and listed["owner"] is None
    with session_scope(sessions) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        assert case.citizen_phone == PHONE and case.citizen_name == NAME and case.title.startswith("供水：")
        (photo,) = s.execute(select(CaseAttachment).where(CaseAttachment.case_id == case.id)).scalars()
        assert (photo.media_type, photo.size, photo.source, photo.content) == ("image/png", len(PNG), "web_photo", PNG)
        actions = s.execute(select(AuditEvent.action).where(AuditEvent.case_id == case.id)
                            .order_by(AuditEvent.id)).scalars().all()
        assert actions == ["accept", "attach"]
    shown = ok(progress(api, number))
    assert shown["status"] == "new" and shown["units"] == [] and shown["answer"] is None and not shown["may_rate"]
    for personal in (NAME, PHONE, "人民路12号", "漏水两天"):
        assert personal not in str(shown)

    dispatched_and_reported(api, number, answer=f"已联系{NAME}（{PHONE}），管道已修复。")
    shown = ok(progress(api, number))
    assert shown["status"] == "reported" and shown["units"] == ["宜兴市自来水公司"] and shown["deadline_at"]
    assert shown["may_rate"] and "管道已修复" in shown["answer"]
    assert NAME not in shown["answer"] and PHONE not in shown["answer"]  # masked (ticketing/privacy.py)

    rated = ok(api.post("/api/v1/portal/rating", json={"number": number, "phone_suffix": PHONE[-4:],
                                                         "satisfaction": "satisfied"}))
    assert rated["satisfaction"] == "satisfied" and rated["status"] == "awaiting_close" and not rated["may_rate"]
    again = api.post("/api/v1/portal/rating", json={"number": number, "phone_suffix": PHONE[-4:],
                                                     "satisfaction": "unsatisfied"})
    assert "只能评价一次" in refused(again, 409, "R7.4")["detail"]
    full = ok(api.get(f"/api/v1/cases/{number}", "op1"))
    assert full["satisfaction"] == "satisfied" and full["satisfaction_source"] == "web"
    # the photo, for those who read the case (the unit holding it too), as the type its bytes say
    (listed,) = ok(api.get(f"/api/v1/cases/{number}/attachments", "water1"))
    assert (listed["media_type"], listed["size"], listed["source"]) == ("image/png", len(PNG), "web_photo")
    got = api.get(f"/api/v1/cases/{number}/attachments/{listed['id']}", "op1")
    assert got.status_code == 200 and got.content == PNG and got.headers["content-type"] == "image/png"
    refused(api.get(f"/api/v1/cases/{number}/attachments", "urban1"), 403, "R5.3")
    assert api.get(f"/api/v1/cases/{number}/attachments/{listed['id']}").status_code == 401
    with session_scope(sessions) as s:  # R7.4: the question is answered; no survey call follows
        assert s.execute(select(Case.callback_done_at).where(Case.number == number)).scalar_one() is not None


def test_a_wrong_suffix_an_unknown_number_and_an_r7_3c_report_answer_alike(api):
    number = ok(send(api), 201)["number"]
    secret = ok(api.post("/api/v1/cases", "op1", json={
        "kind": "complaint", "channel": "landline", "title": "举报", "description": "某局长收受红包",
        "category_code": "discipline_economic", "citizen_phone": "13700001234"}), 201)["number"]
    wrong, unknown, hidden = progress(api, number, "0000"), progress(api, "20990101-000001", "0000"), \
        progress(api, secret, "1234")
    assert wrong.status_code == unknown.status_code == hidden.status_code == 404
    assert wrong.json() == unknown.json() == hidden.json()
    assert set(wrong.headers) == set(unknown.headers)
    assert ok(progress(api, number.replace("-", "")))["number"] == number  # with or without the dash


def test_wrong_checks_on_one_number_are_limited_whether_or_not_it_exists(api):
    number = ok(send(api), 201)["number"]
    for target in (number, "20990101-000001"):
        for _ in range(LIMITS.failed_checks_per_case_per_hour):
            assert progress(api, target, "0000").status_code == 404
        locked = progress(api, target, PHONE[-4:])  # now even the right suffix waits
        assert locked.status_code == 429 and int(locked.headers["Retry-After"]) > 0
        assert "输错次数过多" in locked.json()["detail"]


def test_wrong_checks_from_one_address_are_limited(api, clock):
    for i in range(LIMITS.failed_checks_per_address_per_hour):
        assert progress(api, f"20990101-00000{i}", "0000").status_code == 404
    assert progress(api, "20990102-000001", "0000").status_code == 429
    clock.advance(hours=1, seconds=1)  # the window is over
    assert progress(api, "20990102-000001", "0000").status_code == 404


def test_requests_are_limited_per_phone_and_per_address(api, clock):
    for _ in range(LIMITS.submissions_per_phone_per_day):
        ok(send(api), 201)
    body = refused(send(api), 429, "portal_limit")
    assert "手机号" in body["detail"]
    ok(send(api, phone="13800000000"), 201)  # the address's third
    body = refused(send(api, phone="13800000001"), 429, "portal_limit")
    assert "网络地址" in body["detail"]
    clock.advance(hours=1, seconds=1)
    ok(send(api, phone="13800000001"), 201)
    refused(send(api), 429, "portal_limit")  # the phone's day is not over


def test_a_form_sent_back_costs_no_request_and_makes_no_case(api, sessions):
    refused(send(api, category_code="discipline_economic"), 422, "R2.1")
    refused(send(api, photo=base64.b64encode(b"GIF89a" + b"\x00" * 50).decode()), 422, "R2.2")
    refused(send(api, photo="not base64!"), 422, "R2.2")
    too_big = refused(send(api, photo=base64.b64encode(PNG + b"\x00" * 17 * 1024).decode()), 422, "R2.2")
    assert "16 KB" in too_big["detail"]
    assert send(api, photo="A" * 200_000).status_code == 413  # past the body limit: not even read
    assert send(api, kind="urgent_help").status_code == 422  # needs a live call (R7.3e-g)
    assert send(api, phone="12345").status_code == 422
    with session_scope(sessions) as s:
        assert s.execute(select(func.count()).select_from(Case)).scalar_one() == 0
    for _ in range(LIMITS.submissions_per_phone_per_day):  # none of the refusals counted
        ok(send(api), 201)


def test_the_page_is_served_from_here_with_a_strict_policy(api):
    r = api.get("/")
    assert r.status_code == 200 and "提交诉求" in r.text and 'lang="zh-CN"' in r.text
    csp = r.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'self'" in csp
    for asset in ("portal.js", "portal.css"):
        assert api.get(f"/app/static/{asset}").status_code == 200
