"""Recording of operator calls (issue 4 §7; A2: "every call is logged ... recording").

Every call an operator answers from the queue is recorded by Asterisk itself: queue
``hotline-12345`` has ``monitor-format = wav`` and ``[hotline-queue]`` sets ``MONITOR_FILENAME``,
so MixMonitor records the citizen's channel while it is bridged (operator, conference, transfer)
into ``RECORDINGS_DIR/<uniqueid, filtered>.wav`` inside the Asterisk root. The file name follows
from the channel's uniqueid (``recording_path``), so the call log links it without asking Asterisk.
Calls that do not come through the queue are recorded with ``start_recording`` (AMI MixMonitor).

Recordings are personal data: served only to authorised roles (``may_listen``) and deleted after
``policy.recordings.retention_days`` by ``purge_recordings`` (for the scheduler).
"""
from __future__ import annotations

import contextlib
import re
import uuid
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from callcenter.pbx.root import RECORDINGS_DIR, host_path, recordings_dir
from ticketing import calls as call_log
from ticketing.access import may_read_content
from ticketing.audit import Actor
from ticketing.enums import Role
from ticketing.errors import Forbidden, NotFound
from ticketing.models import Call, Case

FORMAT = "wav"
# Who may listen (A2, R5.2 supervises the front desk, R6.1 supervision reads everything). A
# front-desk operator hears the calls they took; member units never.
LISTEN_ROLES = frozenset({Role.BACK_OFFICE, Role.SUPERVISOR, Role.ADMIN})


def recording_name(uniqueid: str) -> str:
    """The file's base name: the uniqueid with what the dialplan's FILTER(0-9A-Za-z._) keeps."""
    return re.sub(r"[^0-9A-Za-z._]", "", uniqueid)


def recording_path(uniqueid: str) -> str:
    """Where Asterisk writes the recording of the call whose citizen channel is ``uniqueid``."""
    name = recording_name(uniqueid)
    if not name:
        raise ValueError("a uniqueid with no usable characters")
    return f"{RECORDINGS_DIR}/{name}.{FORMAT}"


async def start_recording(ami: Any, channel: str, uniqueid: str) -> str:
    """Record ``channel`` (MixMonitor over AMI, only while bridged); returns the recording path."""
    path = recording_path(uniqueid)
    reply = await ami.send_action({"Action": "MixMonitor", "Channel": channel, "File": path, "Options": "b"})
    if not reply.success:
        raise RuntimeError(f"MixMonitor on the call failed: {reply.get_first('Message')}")
    return path


def link_recording(session: Session, call: Call, *, at: datetime, path: str | None = None) -> bool:
    """Store the recording's path on the call (once) and log it; False if it was linked already."""
    path = path or recording_path(call.uniqueid)
    if not call_log.set_recording(call, path):
        return False
    call_log.add_event(session, call.id, kind="recording", at=at, dedup_key=f"recording:{call.uniqueid}",
                       data={"path": path})
    return True


def may_listen(actor: Actor, call: Call, case: Case | None) -> bool:
    if case is not None and case.confidential:
        # R7.3c: an official's economic problems are heard by the discipline commission only
        return may_read_content(actor, case)
    if actor.role in {r.value for r in LISTEN_ROLES}:
        return True
    return actor.role == Role.FRONT_DESK and actor.user_id is not None and call.operator_id == actor.user_id


def recording_for(session: Session, settings: Any, actor: Actor, uniqueid: str) -> Path:
    """The recording file of a call, for an authorised listener (403 / 404 otherwise)."""
    call = session.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one_or_none()
    if call is None:
        raise NotFound("call", uniqueid[:80])
    case = session.get(Case, call.case_id) if call.case_id is not None else None
    if not may_listen(actor, call, case):
        raise Forbidden("A2", "recordings are heard by the back office, supervision and the operator who took the "
                        "call; a report to the discipline commission by the commission alone (R7.3c)")
    if not call.recording_path:
        raise NotFound("recording of call", uniqueid[:80])
    path = host_path(settings, call.recording_path)
    if not path.is_file():
        raise NotFound("recording file of call", uniqueid[:80])
    return path


def purge_recordings(session: Session, now: datetime, retention_days: int, *, settings: Any = None) -> int:
    """Delete recordings of calls that started more than ``retention_days`` ago (files and links),
    and stray files in the recordings directory older than that. Returns how many files were
    deleted. The caller commits. Safe to run again: what is gone is skipped."""
    if retention_days < 1:
        raise ValueError("retention_days must be at least 1")
    if settings is None:
        from callcenter.settings import get_settings

        settings = get_settings()
    cutoff = now - timedelta(days=retention_days)
    deleted = 0
    rows = session.execute(
        select(Call).where(Call.recording_path.is_not(None), Call.started_at < cutoff)
    ).scalars().all()
    for call in rows:
        path = host_path(settings, call.recording_path)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
            deleted += 1
        call_log.add_event(session, call.id, kind="recording_purged", at=now,
                           dedup_key=f"recording_purged:{call.uniqueid}:{uuid.uuid4().hex[:8]}",
                           data={"path": call.recording_path, "retention_days": retention_days})
        call_log.set_recording(call, None)
    # files no call links to (a call never logged, a crash between recording and logging)
    directory = recordings_dir(settings)
    linked = set(session.execute(select(Call.recording_path).where(Call.recording_path.is_not(None))).scalars())
    if directory.is_dir():
        for path in directory.iterdir():
            if not path.is_file() or f"{RECORDINGS_DIR}/{path.name}" in linked:
                continue
            with contextlib.suppress(FileNotFoundError):
                if datetime.fromtimestamp(path.stat().st_mtime, tz=now.tzinfo) < cutoff:
                    path.unlink()
                    deleted += 1
    session.flush()
    return deleted
