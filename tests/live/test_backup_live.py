"""Backup during live calls on the real Asterisk, restored into a new directory (issue 19 item 4):
same cases, the audit chain verified, every recording there with its checksum and playable, and the
next case number follows on."""
from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest
from sqlalchemy import select

from callcenter.audit_vault import install as install_audit_vault
from callcenter.ops.backup import Sources, take_backup
from callcenter.ops.restore import Targets, restore
from callcenter.pbx.root import RECORDINGS_DIR, recordings_dir
from callcenter.simulate import simulate_call
from tests.conftest import CONFIG_DIR
from tests.live.helpers import AmiSession, originate_local
from ticketing.audit import SYSTEM
from ticketing.enums import CaseKind, Channel
from ticketing.models import Call, Case
from ticketing.store import make_engine, make_session_factory, session_scope

pytestmark = pytest.mark.live

PASSPHRASE = "live backup passphrase"


def _record_greeting(settings, name: str) -> None:
    """A real recording by Asterisk into the recordings directory: one Local leg plays the
    greeting, the other records it; returns when the recording leg has hung up (file closed)."""
    with AmiSession(settings) as ami:
        recorder, _ = originate_local(ami, "s", "test-playback", application="Record",
                                      data=f"{RECORDINGS_DIR}/{name},0,3,q",
                                      variables={"__PROMPT": "hotline/welcome"})
        ami.wait_for(lambda m: m.get("Event") == "Hangup" and m.get("Uniqueid") == recorder, timeout=20)
    assert (recordings_dir(settings) / name).stat().st_size > 8000, "a real recording, not an empty file"


def _numbers(sessions) -> list[str]:
    with session_scope(sessions) as s:
        return list(s.execute(select(Case.number).order_by(Case.id)).scalars())


async def test_backup_during_live_calls_restores_into_a_new_install(hotline, asterisk, tmp_path):
    """Issue 19: three callers press 1; the backup is taken when the first has its case and has
    hung up, while the other two are still in the menu (an invalid key first)."""
    wav_name = f"backup-live-{uuid.uuid4().hex[:8]}.wav"
    live_wav = recordings_dir(asterisk) / wav_name
    first = asyncio.create_task(simulate_call(hotline.ami, ["1"], caller="13800000301", timeout=60))
    later = [asyncio.create_task(simulate_call(hotline.ami, ["9", "1"], caller=f"1380000030{i}", timeout=60))
             for i in (2, 3)]
    try:
        await asyncio.to_thread(_record_greeting, asterisk, wav_name)
        done = await first
        with session_scope(hotline.sessions) as s:
            call = s.execute(select(Call).where(Call.uniqueid == done.uniqueid)).scalar_one()
            assert call.outcome == "queued" and call.case_id, (call.outcome, call.flow_path)
        assert not any(task.done() for task in later), "the backup is to be taken during calls"

        url = hotline.sessions.kw["bind"].url.render_as_string(hide_password=False)
        sources = Sources(url, tmp_path, CONFIG_DIR, recordings_dir(asterisk))
        manifest = await asyncio.to_thread(take_backup, sources, tmp_path / "backup.tar", PASSPHRASE)
        await asyncio.gather(*later)

        new = tmp_path / "new"
        targets = Targets(new / "var", f"sqlite:///{new / 'var' / 'callcenter.db'}", new / "config",
                          new / "recordings")
        report = await asyncio.to_thread(restore, tmp_path / "backup.tar", targets, PASSPHRASE)
        assert report.case_count == manifest["case_count"] >= 1
        assert report.audit_checked == manifest["audit"]["count"]  # `audit verify` passed on the restore

        # every recording came back byte for byte (restore checked the manifest's checksums) and plays
        assert (targets.recordings_dir / wav_name).read_bytes() == live_wav.read_bytes()
        restored = sorted(p for p in targets.recordings_dir.rglob("*") if p.is_file())
        assert len(restored) == sum(name.startswith("recordings/") for name in manifest["files"])
        for wav in restored:
            played = subprocess.run(["sox", str(wav), "-n", "stat"], capture_output=True, text=True)
            assert played.returncode == 0 and "Length (seconds)" in played.stderr, (wav, played.stderr)

        engine = make_engine(targets.database_url)
        try:
            sessions = make_session_factory(engine)
            numbers, live = _numbers(sessions), _numbers(hotline.sessions)
            assert len(live) == 3 and numbers == live[:len(numbers)], "the snapshot's cases, in order"
            install_audit_vault(targets.state_dir)  # the restored install's audit keys and checkpoints
            with session_scope(sessions) as s:
                case = hotline.domain.workflow(s).accept(SYSTEM, kind=CaseKind.CONSULTATION, channel=Channel.MOBILE,
                                                         title="after the restore", description="test")
            day, seq = numbers[-1].split("-")
            assert case.number == f"{day}-{int(seq) + 1:06d}"
        finally:
            engine.dispose()
    finally:
        await asyncio.gather(first, *later, return_exceptions=True)
        live_wav.unlink(missing_ok=True)  # the recordings directory is the shared install's
