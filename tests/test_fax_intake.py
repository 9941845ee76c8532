"""A fax case completed by the front desk (issue 14 item 3; R7.1, R2.2): it arrives with only its PDF
(ticketing/fax.py); the desk sets its kind, category, request and the citizen's name and phone
through the workflow, the audit event naming the fields changed (not their personal data); then it
flows as any case (dispatched by its category's routing). Only a new case; the same R2.1 rule as
at intake; an R7.3c category makes it confidential. SQLite and PostgreSQL."""
from __future__ import annotations

from sqlalchemy import select

from tests.helpers import ok, refused
from ticketing.fax import accept_fax
from ticketing.models import AuditEvent, Case
from ticketing.store import session_scope

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
FULL = {"kind": "complaint", "category_code": "water_supply", "title": "人民路停水",
        "description": "人民路88号停水两天", "citizen_name": "李四", "citizen_phone": "13800000002",
        "location": "人民路88号"}


def _fax_case(sessions, domain) -> str:
    with session_scope(sessions) as s:
        case = accept_fax(s, domain.workflow(s), caller="051087000001", pdf=PDF, pages=2, complete=True,
                          call_id=None, now=domain.clock())
        return case.number


def test_r7_1_the_desk_completes_a_fax_case_and_it_flows_as_any_case(api, seeded, domain):
    number = _fax_case(seeded, domain)
    case = ok(api.post(f"/api/v1/cases/{number}/take", "op1"))
    done = ok(api.post(f"/api/v1/cases/{number}/intake", "op1", json={**FULL, "expected_version": case["version"]}))
    assert {k: done[k] for k in FULL} == FULL and done["channel"] == "fax" and done["status"] == "new"
    with session_scope(seeded) as s:
        event = s.execute(select(AuditEvent).where(AuditEvent.action == "complete_intake")).scalar_one()
        assert set(event.data["changed"]) == set(FULL)  # what changed ...
        assert "李四" not in str(event.data) and "13800000002" not in str(event.data)  # ... not the data
    dispatched = ok(api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"expected_version": done["version"]}))
    assert [w["unit_code"] for w in dispatched["work_orders"]] == ["water_supply"]  # by its category's routing


def test_r7_1_only_a_new_case_with_its_current_version_by_the_center(api, seeded, domain):
    number = _fax_case(seeded, domain)
    case = ok(api.get(f"/api/v1/cases/{number}", "op1"))
    refused(api.post(f"/api/v1/cases/{number}/intake", "water1", json=FULL), 403, "R5.3")
    refused(api.post(f"/api/v1/cases/{number}/intake", "op1", json={**FULL, "expected_version": case["version"] - 1}),
            409, "concurrent_update")
    refused(api.post(f"/api/v1/cases/{number}/intake", "op1", json={**FULL, "kind": "urgent_help"}), 422, "R2.1")
    done = ok(api.post(f"/api/v1/cases/{number}/intake", "op1", json=FULL))
    ok(api.post(f"/api/v1/cases/{number}/dispatch", "op1", json={"expected_version": done["version"]}))
    refused(api.post(f"/api/v1/cases/{number}/intake", "op1", json=FULL), 409, "R7.1")


def test_r7_3c_a_fax_completed_as_a_discipline_report_is_confidential(api, seeded, domain):
    number = _fax_case(seeded, domain)
    ok(api.post(f"/api/v1/cases/{number}/intake", "op1", json={
        **FULL, "category_code": "discipline_economic", "title": "举报", "description": "某科长收受礼金"}))
    with session_scope(seeded) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        assert (case.confidential, case.callback_required, case.assessed) == (True, False, False)
