"""Recordings made on Twilio, fetched into the install's own recording store (issue 15 item 2).

Twilio records where Asterisk would: the after-hours message (<Record>), the operator's <Dial> and the
rooms of transfers and three-way calls (conference.py). Each recording's status callback
(/twilio/voice/recording) names the call; once the carrier says `completed`, the audio is downloaded
through the REST client's HTTP client with the account's credentials, written where Asterisk writes
recordings (callcenter.callcontrol.recording.recording_path: RECORDINGS_DIR/<call sid>.wav) and linked
to the call by the same `link_recording`, so the same access rule (`may_listen`), route
(GET /api/v1/calls/{uniqueid}/recording) and retention purge apply. A call's further recordings
(the room after a transfer) are kept beside it as <call sid>-<recording sid>.wav and logged as
`recording` events. The carrier's copy is deleted once ours is committed (personal data kept once).
A callback seen twice is fetched once (the event's dedup key is the recording sid).
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select

from callcenter.callcontrol.recording import FORMAT, link_recording, recording_path
from callcenter.pbx.root import RECORDINGS_DIR, host_path
from ticketing import calls
from ticketing.models import Call, CallEvent
from ticketing.store import session_scope

log = logging.getLogger("callcenter.twilio.recordings")


class RecordingUnavailable(Exception):
    """The carrier did not hand the audio over (yet): the webhook answers 503, Twilio may retry."""


def fetch_media(client: Any, url: str) -> bytes:
    """The recording's audio through the REST client's transport, authenticated as the account.
    twilio's own HttpClient decodes answers as text; its requests session keeps the bytes."""
    http = client.http_client
    auth = (client.username, client.password)
    session = getattr(http, "session", None)
    if session is not None:
        answer = session.get(url, auth=auth, timeout=getattr(http, "timeout", None) or 30)
        status, body = answer.status_code, answer.content
    else:  # another HttpClient (the tests' carrier) hands bytes in `content`
        answer = http.request("GET", url, auth=auth, allow_redirects=True)
        status, body = answer.status_code, answer.content
    if status != 200 or not isinstance(body, bytes | bytearray):
        raise RecordingUnavailable(f"the carrier answered {status} for the recording")
    return bytes(body)


def _write(target: Path, data: bytes) -> None:
    """Whole file or nothing (a reader never sees half a recording)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".twilio-", suffix=f".{FORMAT}")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class TwilioRecordings:
    def __init__(self, session_factory, client: Any, settings: Any, clock, *, delete_after_fetch: bool = True):
        self.session_factory = session_factory
        self.client = client
        self.settings = settings
        self.clock = clock
        self.delete_after_fetch = delete_after_fetch

    def completed(self, *, call_sid: str, recording_sid: str, recording_url: str) -> str | None:
        """Fetch and link one finished recording; its path, or None when it was fetched before or
        no call of ours has that sid."""
        dedup = f"twilio_recording:{recording_sid}"
        with session_scope(self.session_factory) as s:
            call = s.execute(select(Call).where(Call.uniqueid == call_sid)).scalar_one_or_none()
            if call is None:
                log.warning("recording %s for a call not in the call log; not fetched", recording_sid)
                return None
            if s.execute(select(CallEvent.id).where(CallEvent.dedup_key == dedup)).first() is not None:
                return None
            first = call.recording_path is None or not call.recording_path.startswith(RECORDINGS_DIR)
        path = recording_path(call_sid) if first else recording_path(f"{call_sid}-{recording_sid}")
        data = fetch_media(self.client, f"{recording_url}.{FORMAT}")
        _write(host_path(self.settings, path), data)
        now = self.clock()
        with session_scope(self.session_factory) as s:
            call = s.execute(select(Call).where(Call.uniqueid == call_sid)).scalar_one()
            if not calls.add_event(s, call.id, kind="recording_fetched", at=now, dedup_key=dedup,
                                   data={"path": path, "recording": recording_sid, "driver": "twilio"}):
                return None  # another process fetched it meanwhile (same file, same name)
            if first:
                call.recording_path = None  # the carrier's address it had until now
                link_recording(s, call, at=now, path=path)
            else:
                calls.add_event(s, call.id, kind="recording", at=now, dedup_key=f"recording:{call_sid}:{recording_sid}",
                                data={"path": path})
        if self.delete_after_fetch:
            try:
                self.client.recordings(recording_sid).delete()
            except Exception as exc:  # noqa: BLE001 - ours is safe; the carrier's copy stays until its retention
                log.warning("recording %s fetched, but the carrier's copy was not deleted (%s)", recording_sid,
                            type(exc).__name__)
        log.info("recording %s of call %s fetched into %s", recording_sid, call.id, path)
        return path
