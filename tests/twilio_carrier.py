"""Twilio without a network, for tests: requests signed exactly as Twilio signs them
(RequestValidator.compute_signature over the public URL and the POST parameters), a caller walking the
TwiML the webhooks answer, and `FakeCarrier`, a twilio.http.HttpClient that records every REST request
and answers like the carrier's API (as twilio-python's own tests do with their holodeck)."""
from __future__ import annotations

import itertools
import json
import logging
import xml.etree.ElementTree as ET
from urllib.parse import parse_qs, urlsplit

from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.request_validator import RequestValidator

from callcenter.settings import Settings
from tests.conftest import CONFIG_DIR

TOKEN = "test-auth-token-0123456789abcdef"
ACCOUNT = "AC" + "0" * 32
PUBLIC = "https://hotline.example.gov.cn"
HOTLINE_NUMBER = "12345"
SIGNATURE = "X-Twilio-Signature"


def twilio_settings(tmp_path, **extra) -> Settings:
    fields = {"state_dir": tmp_path, "config_dir": CONFIG_DIR, "twilio_account_sid": ACCOUNT,
              "twilio_auth_token": TOKEN, "twilio_public_url": PUBLIC, "twilio_from_number": "+8610012345"}
    return Settings(**{**fields, **extra})


def sign(url: str, params: dict, token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post_signed(client, path: str, params: dict, *, token: str = TOKEN, signed_url: str | None = None):
    """POST as Twilio does: form parameters, signed for PUBLIC + path (or `signed_url`)."""
    url = PUBLIC + path
    return client.post(path, data=params, headers={SIGNATURE: sign(signed_url or url, params, token)})


def path_of(url: str) -> str:
    assert url.startswith(PUBLIC), url
    return url[len(PUBLIC):]


class TwilioCall:
    """One call through the webhooks: `start`, then `press`/`silence`/`record` answer what the last
    TwiML waits for; `hang_up` sends the final status callback."""

    _sids = itertools.count(1)

    def __init__(self, client, caller: str = "13900000001", to: str = HOTLINE_NUMBER, sid: str | None = None):
        self.client = client
        self.sid = sid or f"CA{next(self._sids):032d}"
        self.caller, self.to = caller, to
        self.answers: list = []  # every response

    def params(self, **more) -> dict:
        return {"CallSid": self.sid, "AccountSid": ACCOUNT, "From": self.caller, "To": self.to,
                "CallStatus": "in-progress", "Direction": "inbound", **more}

    def post(self, path: str, **more):
        response = post_signed(self.client, path, self.params(**more))
        self.answers.append(response)
        return response

    def start(self, path: str = "/twilio/voice/incoming"):
        response = self.post(path)
        assert response.status_code == 200, response.text
        return response

    @property
    def twiml(self) -> ET.Element:
        return ET.fromstring(self.answers[-1].text)

    def _action(self, tag: str) -> str:
        element = self.twiml.find(tag)
        assert element is not None, f"no <{tag}> in {self.answers[-1].text}"
        return path_of(element.get("action"))

    def press(self, digits: str):
        response = self.post(self._action("Gather"), Digits=digits)
        assert response.status_code == 200, response.text
        return response

    def silence(self):
        return self.press("")

    def record(self, recording: str | None = "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE1",
               hung_up: bool = False):
        if recording is None:  # Twilio skips the action of an empty recording and follows the <Redirect>
            return self.post(path_of(self.twiml.find("Redirect").text))
        return self.post(self._action("Record"), RecordingUrl=recording, RecordingDuration="12",
                         **({"CallStatus": "completed"} if hung_up else {}))

    def hang_up(self, status: str = "completed"):
        return self.post("/twilio/voice/status", CallStatus=status, CallDuration="30")

    def leave_queue(self, result: str = "bridged"):
        return self.post(path_of(self.twiml.find("Enqueue").get("action")), QueueResult=result)

    def waiting_for(self) -> str | None:
        for tag in ("Gather", "Record"):
            if self.twiml.find(tag) is not None:
                return tag
        return None


class FakeCarrier(HttpClient):
    """Records every REST request and answers as Twilio's API would: messages and calls created (with a
    sid each), the call list filtered by To. `fail_next`: the next request raises after it is recorded
    (the carrier got it, the answer was lost)."""

    def __init__(self):
        super().__init__(logging.getLogger("tests.fake_carrier"), is_async=False)
        self.requests: list[dict] = []
        self.calls: list[dict] = []
        self.messages: list[dict] = []
        self.fail_next: Exception | None = None  # raised after the request was taken (its answer lost)
        self.fail_before: Exception | None = None  # raised before it reached the carrier
        self.refuse_next = False  # answer the next request with an HTTP 400, as the API does for bad input
        self._sids = itertools.count(1)
        self.answers: dict[str, str] = {}  # a participant's `to` -> its call's end when not answered (busy...)
        self.conferences: dict[str, dict] = {}  # friendly name -> {"sid", "participants": {call sid: {...}}}
        self.media: dict[str, bytes] = {}  # a recording's media URL -> its audio
        self.deleted: list[str] = []  # recording sids deleted
        self.queue_members: list[str] = []  # call sids waiting in the <Enqueue> queue "hotline" (QU1...)

    def request(self, method, uri, params=None, data=None, headers=None, auth=None, timeout=None,
                allow_redirects=False):
        if self.fail_before is not None:
            failure, self.fail_before = self.fail_before, None
            raise failure
        if self.refuse_next:
            self.refuse_next = False
            return Response(400, json.dumps({"code": 21211, "message": "Invalid 'To' Phone Number", "status": 400}))
        self.requests.append({"method": method, "uri": uri, "params": dict(params or {}), "data": dict(data or {})})
        path = urlsplit(uri).path
        answer = self._answer(method, path, dict(params or {}), dict(data or {}))
        if self.fail_next is not None:
            failure, self.fail_next = self.fail_next, None
            raise failure
        return answer

    def _answer(self, method: str, path: str, params: dict, data: dict) -> Response:
        if method == "POST" and path.endswith("/Messages.json"):
            body = {"sid": f"SM{next(self._sids):032d}", "status": "queued", "to": data.get("To"),
                    "from": data.get("From"), "body": data.get("Body"), "account_sid": ACCOUNT,
                    "num_segments": None}
            self.messages.append(body)
            return Response(201, json.dumps(body))
        if method == "POST" and path.endswith("/Calls.json"):
            body = {"sid": f"CA9{next(self._sids):031d}", "status": "queued", "to": data.get("To"),
                    "from": data.get("From"), "account_sid": ACCOUNT, "url": data.get("Url")}
            self.calls.append(body)
            return Response(201, json.dumps(body))
        if method == "GET" and path.endswith("/Calls.json"):
            filters = {"To": "to", "From": "from", "ParentCallSid": "parent_call_sid", "Status": "status"}
            listed = [c for c in self.calls if all(params.get(k) in (None, c.get(f)) for k, f in filters.items())]
            return self._page("calls", listed, path)
        return self._call_control(method, path, params, data)

    # ---- call control: calls by sid, conferences and their participants, recordings ---------------
    def add_call(self, sid: str, to: str, *, parent: str | None = None, status: str = "in-progress") -> dict:
        """A call the carrier carries already (the citizen's, its operator's <Dial> leg)."""
        call = {"sid": sid, "to": to, "from": "+8613900000001", "status": status, "parent_call_sid": parent,
                "account_sid": ACCOUNT}
        self.calls.append(call)
        return call

    def call(self, sid: str) -> dict | None:
        return next((c for c in self.calls if c["sid"] == sid), None)

    @staticmethod
    def _page(key: str, items: list, path: str) -> Response:
        return Response(200, json.dumps({key: items, "next_page_uri": None, "page": 0, "page_size": 50,
                                         "first_page_uri": path, "previous_page_uri": None, "uri": path}))

    def _call_control(self, method: str, path: str, params: dict, data: dict) -> Response:
        parts = path.split("/")[4:]  # after /2010-04-01/Accounts/AC...
        name = [p.removesuffix(".json") for p in parts]
        if name[0] == "Calls" and len(name) == 2 and (call := self.call(name[1])) is not None:
            if method == "POST":  # an update: new TwiML, or the end of the call
                call.setdefault("updates", []).append(dict(data))
                if data.get("Status") == "completed":
                    call["status"] = "completed"
            return Response(200, json.dumps(call))
        if name[0] == "Queues":
            return self._queues(method, name, path, data)
        if name[0] == "Conferences" and len(name) == 3 and method == "POST":
            room = self.conferences.setdefault(name[1], {"sid": f"CF{next(self._sids):032d}",
                                                          "friendly_name": name[1], "participants": {}})
            answered = self.answers.get(data["To"], "answered") == "answered"
            call = self.add_call(f"CA8{next(self._sids):031d}", data["To"],
                                 status="in-progress" if answered else self.answers[data["To"]])
            participant = {"call_sid": call["sid"], "conference_sid": room["sid"], "account_sid": ACCOUNT,
                           "status": "queued", "coaching": data.get("Coaching") == "true",
                           "call_sid_to_coach": data.get("CallSidToCoach"), "muted": data.get("Muted") == "true",
                           "label": data.get("Label"), "request": dict(data)}
            if answered:
                room["participants"][call["sid"]] = {**participant, "status": "connected"}
            return Response(201, json.dumps(participant))
        if name[0] == "Conferences" and len(name) == 1:
            return self._page("conferences", [{"sid": r["sid"], "friendly_name": r["friendly_name"],
                                                "status": "in-progress"} for r in self.conferences.values()
                                               if params.get("FriendlyName") in (None, r["friendly_name"])], path)
        room = next((r for r in self.conferences.values() if len(name) > 1 and r["sid"] == name[1]), None)
        if room is not None and len(name) == 3:
            return self._page("participants", list(room["participants"].values()), path)
        if room is not None and len(name) == 4 and name[3] in room["participants"]:
            participant = room["participants"][name[3]]
            if method == "POST":  # an update in place: muted, coaching, whom it coaches
                flags = {"Muted": "muted", "Coaching": "coaching"}
                participant.update({f: data[k] == "true" for k, f in flags.items() if k in data})
                if "CallSidToCoach" in data or data.get("Coaching") == "false":
                    participant["call_sid_to_coach"] = data.get("CallSidToCoach")
            return Response(200, json.dumps(participant))
        if method == "GET" and (url := f"https://api.twilio.com{path}") in self.media:
            return Response(200, self.media[url])
        if method == "DELETE" and name[0] == "Recordings":
            self.deleted.append(name[1])
            return Response(204, "")
        return Response(404, json.dumps({"code": 20404, "message": "not found", "status": 404}))

    QUEUE_SID = "QU" + "1" * 32

    def _queues(self, method: str, name: list[str], path: str, data: dict) -> Response:
        if len(name) == 1:
            return self._page("queues", [{"sid": self.QUEUE_SID, "friendly_name": "hotline", "account_sid": ACCOUNT,
                                          "current_size": len(self.queue_members)}], path)
        if len(name) == 4 and name[1] == self.QUEUE_SID and name[3] in self.queue_members:
            if method == "POST":  # dequeued: the call leaves the queue for the URL's TwiML
                self.queue_members.remove(name[3])
            return Response(200, json.dumps({"call_sid": name[3], "queue_sid": self.QUEUE_SID, "position": 1,
                                             "wait_time": 10, "account_sid": ACCOUNT}))
        return Response(404, json.dumps({"code": 20404, "message": "not found", "status": 404}))

    def dequeues(self) -> list[tuple[str, str]]:
        """Every queue member update: (the caller's sid, the URL it was sent to)."""
        return [(r["uri"].rsplit("/", 1)[1].removesuffix(".json"), r["data"].get("Url")) for r in self.requests
                if r["method"] == "POST" and "/Queues/" in r["uri"] and "/Members/" in r["uri"]]

    def posted(self, resource: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == "POST" and r["uri"].endswith(f"/{resource}.json")]


def query_of(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
