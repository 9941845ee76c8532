"""A1: the record of actions cannot be silently edited. Tamper with the audit table by raw SQL,
the way someone with database access would, and both `callcenter audit verify` (exit code and
output) and `GET /api/v1/audit/verify` must say so; an untouched chain passes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import select, text

from ticketing import audit
from ticketing.models import AuditEvent, User
from ticketing.store import session_scope

from .conftest import CONFIG_DIR

CASE = {"kind": "complaint", "channel": "mobile", "title": "占道经营", "description": "某路口夜市占道",
        "citizen_phone": "13800003333"}


@pytest.fixture
def chain(api, domain, sessions, engine) -> int:
    """A chain of real events: seeding, users, a case accepted, dispatched, received, notified."""
    from callcenter.auth import actor_of

    def actor(s, name):
        return actor_of(s.execute(select(User).where(User.username == name)).scalar_one())

    with session_scope(sessions) as s:
        wf = domain.workflow(s)
        case = wf.accept(actor(s, "op1"), **CASE)
        (wo,) = wf.dispatch(actor(s, "op1"), case, units=["urban_management"])
        wf.receive(actor(s, "urban1"), wo)
        wf.notify(actor(s, "urban1"), wo, channel="phone")
    api.login("sup1")  # the verifier logs in before any tampering: a login is an event itself
    with engine.connect() as conn:
        last = conn.execute(text("SELECT max(id) FROM audit_events")).scalar_one()
    assert last >= 15
    return last


def cli_verify(db_url: str, tmp_path) -> subprocess.CompletedProcess:
    env = {**os.environ, "CALLCENTER_DATABASE_URL": db_url, "CALLCENTER_STATE_DIR": str(tmp_path),
           "CALLCENTER_CONFIG_DIR": str(CONFIG_DIR)}
    return subprocess.run([sys.executable, "-m", "callcenter.cli", "audit", "verify"], env=env,
                          capture_output=True, text=True, timeout=120)


def assert_detected(api, db_url, tmp_path, *words: str) -> list[str]:
    result = cli_verify(db_url, tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    problems = [line for line in result.stdout.splitlines() if line.startswith("PROBLEM ")]
    assert problems, result.stdout
    assert "problems" in result.stdout.splitlines()[-1]
    report = api.get("/api/v1/audit/verify", "sup1").json()
    assert report["ok"] is False
    assert [f"PROBLEM {p}" for p in report["problems"]] == problems  # CLI and API agree
    for word in words:
        assert any(word in p for p in problems), (word, problems)
    return problems


def _json_param(engine) -> str:
    return "CAST(:d AS json)" if engine.dialect.name == "postgresql" else ":d"


def test_a1_clean_chain_passes_cli_and_api(api, chain, db_url, tmp_path):
    result = cli_verify(db_url, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().splitlines()[-1] == f"{chain} events checked: chain intact"
    assert "PROBLEM" not in result.stdout
    assert api.get("/api/v1/audit/verify", "sup1").json() == {"ok": True, "checked": chain, "problems": []}


def test_a1_edited_event_data_is_detected(api, chain, engine, db_url, tmp_path):
    with engine.begin() as conn:
        row = conn.execute(text("SELECT id, data FROM audit_events WHERE action = 'dispatch'")).one()
        data = row.data if isinstance(row.data, dict) else json.loads(row.data)
        conn.execute(text(f"UPDATE audit_events SET data = {_json_param(engine)} WHERE id = :id"),
                     {"d": json.dumps({**data, "unit": "housing_construction"}), "id": row.id})
    problems = assert_detected(api, db_url, tmp_path, f"event {row.id}: content does not match its hash (edited)")
    assert len(problems) == 1  # exactly that event, nothing else blamed


def test_a1_edited_actor_or_time_is_detected(api, chain, engine, db_url, tmp_path):
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_events SET actor_name = 'op2' WHERE action = 'accept'"))
        conn.execute(text("UPDATE audit_events SET at = at + INTERVAL '1 hour' WHERE action = 'receive'")
                     if engine.dialect.name == "postgresql" else
                     text("UPDATE audit_events SET at = datetime(at, '+1 hour') WHERE action = 'receive'"))
        ids = dict(conn.execute(text("SELECT action, id FROM audit_events WHERE action IN ('accept', 'receive')")).all())
    problems = assert_detected(api, db_url, tmp_path, "edited")
    assert {p.split(":")[0] for p in problems} == {f"PROBLEM event {ids['accept']}", f"PROBLEM event {ids['receive']}"}


def _forge(ev: AuditEvent) -> AuditEvent:
    """What a forger who knows the hashing scheme does: make the event's own hash fit."""
    ev.hash = audit.event_hash(ev.prev_hash, audit._hashed_fields(ev))
    return ev


def test_a1_edited_event_with_recomputed_hash_is_detected_by_the_next_link(api, chain, sessions, db_url, tmp_path):
    """Whoever edits an event and fixes its own hash still breaks the next event's link."""
    with session_scope(sessions) as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "dispatch")).scalar_one()
        ev.data = {**ev.data, "unit": "housing_construction"}
        _forge(ev)
        edited = ev.id
    assert_detected(api, db_url, tmp_path, f"event {edited + 1}: does not follow the event before it")


def test_a1_inserted_event_at_the_end_is_detected(api, chain, sessions, db_url, tmp_path):
    """A forged event appended with a correct hash: only the chain head can tell, and it does."""
    with session_scope(sessions) as s:
        last = s.get(AuditEvent, chain)
        s.add(_forge(AuditEvent(id=chain + 1, at=last.at, case_id=last.case_id, work_order_id=last.work_order_id,
                                actor_id=None, actor_name="urban1", actor_role="unit_staff", action="report",
                                data={"answer": "已处理", "met": True}, channel=None, call_id=None,
                                prev_hash=last.hash, hash="")))
    assert_detected(api, db_url, tmp_path, "appended outside the log", "counts")


def test_a1_inserted_event_in_the_middle_is_detected(api, chain, engine, sessions, db_url, tmp_path):
    """Make room by renumbering the later events, slip a well-formed event in after event k."""
    k = chain - 3
    with engine.begin() as conn:
        # two steps: PostgreSQL checks the primary key row by row
        conn.execute(text("UPDATE audit_events SET id = -id - 1 WHERE id > :k"), {"k": k})
        conn.execute(text("UPDATE audit_events SET id = -id WHERE id < 0"))
    with session_scope(sessions) as s:
        before = s.get(AuditEvent, k)
        s.add(_forge(AuditEvent(id=k + 1, at=before.at, case_id=before.case_id, work_order_id=None, actor_id=None,
                                actor_name="bo1", actor_role="back_office", action="escalate",
                                data={"note": "forged"}, channel=None, call_id=None, prev_hash=before.hash,
                                hash="")))
    assert_detected(api, db_url, tmp_path, f"event {k + 2}: does not follow", "edited")


def test_a1_deleted_middle_event_is_detected(api, chain, engine, db_url, tmp_path):
    with engine.begin() as conn:
        victim = conn.execute(text("SELECT id FROM audit_events WHERE action = 'dispatch'")).scalar_one()
        conn.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": victim})
    assert_detected(api, db_url, tmp_path, f"event {victim}..{victim} missing (deleted)",
                    f"event {victim + 1}: does not follow")


def test_a1_deleted_last_event_is_detected(api, chain, engine, db_url, tmp_path):
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE id = :id"), {"id": chain})
    problems = assert_detected(api, db_url, tmp_path, f"chain head says last event {chain}, store ends at {chain - 1}")
    assert any("counts" in p for p in problems)


def test_a1_deleted_first_events_are_detected(api, chain, engine, db_url, tmp_path):
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_events WHERE id <= 2"))
    assert_detected(api, db_url, tmp_path, "event 1..2 missing (deleted)")
