"""A1: a database writer cannot rewrite the record. Events are HMACs under a key kept in the state
directory, not the database; each commit writes a signed checkpoint of the chain head there too.
Edit an event and re-hash the whole chain and head (plain SHA-256, or HMAC under a key of one's
own), or delete the newest events and rewind the head: `verify` says so, naming the event."""
from __future__ import annotations

import hashlib
import hmac
import os
import stat
import subprocess
import sys
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from ticketing import audit
from ticketing.audit_seal import key_for
from ticketing.models import AuditEvent, AuditHead, User
from ticketing.store import session_scope

from .conftest import CONFIG_DIR

CASE = {"kind": "complaint", "channel": "mobile", "title": "占道经营", "description": "某路口夜市占道",
        "citizen_phone": "13800003333"}


def _actor(s, name):
    from callcenter.auth import actor_of

    return actor_of(s.execute(select(User).where(User.username == name)).scalar_one())


@pytest.fixture
def chain(seeded, domain, sessions, clock) -> int:
    """A case through its steps, each step its own commit (and so its own checkpoint)."""
    with session_scope(sessions) as s:
        case_id = domain.workflow(s).accept(_actor(s, "op1"), **CASE).id
    steps = [lambda wf, s, case: wf.dispatch(_actor(s, "op1"), case, units=["urban_management"]),
             lambda wf, s, case: wf.receive(_actor(s, "urban1"), case.work_orders[0]),
             lambda wf, s, case: wf.notify(_actor(s, "urban1"), case.work_orders[0], channel="phone")]
    for step in steps:
        clock.advance(minutes=7, microseconds=123_457)
        with session_scope(sessions) as s:
            from ticketing.models import Case

            step(domain.workflow(s), s, s.get(Case, case_id))
    with sessions() as s:
        return s.get(AuditHead, 1).last_id


def _verify(sessions) -> audit.VerifyReport:
    with sessions() as s:
        return audit.verify(s)


def _checkpointed(vault) -> list[int]:
    return [int(line.split("last_id=")[1].split()[0]) for line in vault.checkpoint_lines()]


def _plain_sha(_ev, prev_hash, fields) -> str:
    return audit.event_hash(prev_hash, fields)


def _wrong_key(_ev, prev_hash, fields) -> str:
    payload = audit._payload(fields)
    return hmac.new(b"not the install's key", (prev_hash + payload).encode(), hashlib.sha256).hexdigest()


@pytest.mark.parametrize("forge", [_plain_sha, _wrong_key], ids=["plain-sha256", "hmac-wrong-key"])
def test_a1_edited_event_with_whole_chain_and_head_rehashed_is_named(chain, sessions, audit_vault, forge):
    assert _verify(sessions).ok
    ids = _checkpointed(audit_vault)
    # an event committed alone: the checkpoints before and after it bracket exactly it
    target = next(i for i in ids if i - 1 in ids and i > 2)
    with session_scope(sessions) as s:
        prev = audit.GENESIS
        for ev in s.execute(select(AuditEvent).order_by(AuditEvent.id)).scalars():
            if ev.id == target:
                ev.data = {**ev.data, "forged": True}
            ev.prev_hash = prev
            ev.hash = prev = forge(ev, prev, audit._hashed_fields(ev))
        head = s.get(AuditHead, 1)
        head.last_hash = prev
    report = _verify(sessions)
    assert not report.ok
    assert any(p.startswith(f"event {target}: not what the signed checkpoint") for p in report.problems), report.problems
    assert any("does not match its hash" in p for p in report.problems)  # no event's hash is the key's


def test_a1_deleted_newest_events_with_rewound_head_are_reported_by_the_checkpoint(chain, sessions, engine):
    keep = chain - 3
    with engine.begin() as conn:
        kept_hash = conn.execute(text("SELECT hash FROM audit_events WHERE id = :k"), {"k": keep}).scalar_one()
        conn.execute(text("DELETE FROM audit_events WHERE id > :k"), {"k": keep})
        conn.execute(text("UPDATE audit_head SET last_id = :k, last_hash = :h, count = :k"),
                     {"k": keep, "h": kept_hash})
    report = _verify(sessions)
    assert report.problems == [p for p in report.problems if "tail truncated" in p]
    assert len(report.problems) == 1
    assert f"names event {chain} ({chain} events), store ends at {keep}" in report.problems[0]


def test_a1_truncation_is_reported_by_the_cli(chain, engine, db_url, tmp_path):
    with engine.begin() as conn:
        kept_hash = conn.execute(text("SELECT hash FROM audit_events WHERE id = :k"), {"k": chain - 1}).scalar_one()
        conn.execute(text("DELETE FROM audit_events WHERE id = :k"), {"k": chain})
        conn.execute(text("UPDATE audit_head SET last_id = :k, last_hash = :h, count = :k"),
                     {"k": chain - 1, "h": kept_hash})
    result = _cli(db_url, tmp_path, "audit", "verify")
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"PROBLEM signed checkpoint of" in result.stdout
    assert "tail truncated" in result.stdout
    assert f"latest signed checkpoint: event {chain}" in result.stderr


def test_a1_forged_checkpoint_line_is_reported(chain, sessions, audit_vault):
    last = list(audit_vault.checkpoint_lines())[-1].rstrip("\n")
    audit_vault.append_checkpoint(last.replace(f"count={chain}", f"count={chain + 5}"))
    report = _verify(sessions)
    assert report.problems == [f"checkpoint line {len(_checkpointed(audit_vault))}: signature does not match "
                               "(edited or forged)"]


def _cli(db_url, state_dir, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "CALLCENTER_DATABASE_URL": db_url, "CALLCENTER_STATE_DIR": str(state_dir),
           "CALLCENTER_CONFIG_DIR": str(CONFIG_DIR)}
    return subprocess.run([sys.executable, "-m", "callcenter.cli", *args], env=env, capture_output=True, text=True,
                          timeout=120)


def test_a1_rotation_events_before_and_after_verify(chain, sessions, domain, db_url, tmp_path, audit_vault):
    result = _cli(db_url, tmp_path, "audit", "rotate-key")  # another process, as an admin would
    assert result.returncode == 0, result.stderr
    assert f"audit key 2 seals the events from {chain + 1} on" in result.stdout
    with session_scope(sessions) as s:  # this process picks the new key up at its next event
        audit.record(s, audit.SYSTEM, "after_rotation", at=domain.clock())
    keys = audit_vault.keys(None)
    assert [(k.key_id, k.from_event) for k in keys] == [(1, 1), (2, chain + 1)]
    assert key_for(keys, chain).key_id == 1 and key_for(keys, chain + 1).key_id == 2
    assert _verify(sessions).ok
    with sessions() as s:  # the new event really is sealed with key 2, not key 1
        ev = s.get(AuditEvent, chain + 1)
        assert ev.hash == audit.sealed_hash(keys[1], ev.prev_hash, audit._hashed_fields(ev))
        assert ev.hash != audit.sealed_hash(keys[0], ev.prev_hash, audit._hashed_fields(ev))
    result = _cli(db_url, tmp_path, "audit", "verify")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == f"{chain + 1} events checked: chain intact"


def test_a1_key_file_and_checkpoint_log_are_private(chain, audit_vault):
    for path in (audit_vault.key_path, audit_vault.checkpoint_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    audit_vault.rotate(chain + 1)
    assert stat.S_IMODE(audit_vault.key_path.stat().st_mode) == 0o600


def test_a1_microseconds_are_in_the_hash(chain, sessions):
    with sessions() as s:
        ev = s.execute(select(AuditEvent).where(AuditEvent.action == "receive")).scalar_one()
        assert ev.at.microsecond != 0  # stored to the microsecond
        keys = audit._keys_after([0])
        key = key_for(keys, ev.id)
        moved = audit._hashed_fields(ev) | {"at": ev.at + timedelta(microseconds=1)}
        assert audit.sealed_hash(key, ev.prev_hash, moved) != ev.hash
        target = ev.id
    with session_scope(sessions) as s:
        s.get(AuditEvent, target).at += timedelta(microseconds=1)
    assert _verify(sessions).problems == [f"event {target}: content does not match its hash (edited)"]


def test_a1_no_key_configured_refuses_to_record(sessions, domain):
    from ticketing import audit_seal

    audit_seal.configure(None)
    with pytest.raises(RuntimeError, match="no audit key"), session_scope(sessions) as s:
        audit.record(s, audit.SYSTEM, "unkeyed", at=domain.clock())


def test_a1_rotated_twice_before_any_event_the_newest_key_seals(chain, sessions, domain, audit_vault):
    audit_vault.rotate(chain + 1)
    newest = audit_vault.rotate(chain + 1)
    with session_scope(sessions) as s:
        audit.record(s, audit.SYSTEM, "after_rotation", at=domain.clock())
    keys = audit_vault.keys(None)
    assert [k.key_id for k in keys] == [1, 2, 3]
    assert key_for(keys, chain + 1) == newest
    assert _verify(sessions).ok
    with pytest.raises(ValueError, match="head went back"):
        audit_vault.rotate(chain)


def test_a1_an_event_on_a_statement_runner_is_checkpointed_when_its_transaction_commits_only(chain, sessions, domain, audit_vault):
    """The voice menu's path (`record` on a statement runner): checkpointed after the commit."""
    from ticketing.writer import on_session

    with sessions() as s:
        audit.record(on_session(s), audit.SYSTEM, "rolled_back", at=domain.clock())
        s.rollback()
    assert _checkpointed(audit_vault)[-1] == chain
    with sessions() as s:
        new = audit.record(on_session(s), audit.SYSTEM, "kept", at=domain.clock())
        s.commit()
    assert new == chain + 1 and _checkpointed(audit_vault)[-1] == new
    assert _verify(sessions).ok
