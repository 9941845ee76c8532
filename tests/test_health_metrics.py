"""/healthz, /readyz and /metrics (issue 19 item 2) against the fake AMI server: readiness follows
the AMI link (503 naming it when it drops, 200 when it is back), each other check names itself
when it fails, /metrics parses with Prometheus' own parser and shows the queue as the link sees it
with no personal data, only this machine or an admin reads it, and the example alert rules name
only metrics that /metrics exports."""
from __future__ import annotations

import asyncio
import re
import socket
import time
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from agi.server import FastAGIServer
from callback.leader import leadership_for
from callcenter.api.app import create_app
from callcenter.settings import Settings
from tests.conftest import CONFIG_DIR
from tests.test_callcontrol_link import QUEUE, Fake, chan, make_cc, until

ALERTS = Path(__file__).resolve().parent.parent / "docs" / "prometheus-alerts.yml"


@pytest.fixture
async def fake():
    f = Fake()
    await f.server.start()
    try:
        yield f
    finally:
        await f.server.close()


@pytest.fixture
def agi_socket():
    """Something listening where the settings say FastAGI is (the readiness reads the socket table)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    yield sock
    sock.close()


@pytest.fixture
def leader(engine):
    """Another process is the scheduler's leader (the readiness asks the store)."""
    leadership = leadership_for(engine, "elsewhere:1")
    assert leadership.try_acquire()
    yield leadership
    leadership.release()


@pytest.fixture
async def hotline(fake, sessions, domain, engine, tmp_path, agi_socket, leader):
    """The API with call control on the fake AMI server, a queue with a caller and three operators."""
    fake.queue_items = [
        {"Event": "QueueParams", "Queue": QUEUE},
        *({"Event": "QueueMember", "Queue": QUEUE, "Name": "话务员", "Location": f"PJSIP/op{ext}",
           "StateInterface": f"PJSIP/op{ext}", "Status": status, "Paused": paused, "PausedReason": "",
           "InCall": "0", "CallsTaken": "0"}
          for ext, status, paused in (("8001", "1", "0"), ("8002", "2", "0"), ("8003", "1", "1"))),
        {"Event": "QueueEntry", "Queue": QUEUE, "Position": "1", "Channel": "PJSIP/trunk-2", "Uniqueid": "c2",
         "CallerIDNum": "13800002222", "CallerIDName": "张三", "Wait": "42"},
    ]
    fake.server.channels = [  # a citizen in the voice menu, and an operator's call (not in the menu)
        {**chan("m1", "Local/12345@citizen-in-00000001;2"), "Context": "citizen-in"},
        chan("o1", "PJSIP/op8002-00000002", bridge="b1"),
    ]
    settings = Settings(state_dir=tmp_path, config_dir=CONFIG_DIR, agi_port=agi_socket.getsockname()[1],
                        recordings_min_free_mb=1)
    cc = make_cc(fake, sessions, domain)
    app = create_app(settings, domain=domain, engine=engine, callcontrol=cc)
    app.state.agi_server = FastAGIServer({}, port=0)  # its counters, as runtime.run_hotline hands it over
    await cc.start()
    try:
        yield app
    finally:
        await cc.stop()


def client(app, host: str = "127.0.0.1") -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=(host, 40000)), base_url="http://hotline")


async def readyz(app) -> httpx.Response:
    async with client(app, "10.0.0.9") as http:  # no auth needed, from anywhere
        return await http.get("/readyz")


async def test_readyz_turns_unready_when_the_ami_link_drops_and_ready_when_it_is_back(hotline, fake):
    """Issue 19: /readyz is 503 naming the AMI link within 5 s of it dropping, 200 after it returns;
    the link's own state is read (no AMI connection per request)."""
    r = await readyz(hotline)
    assert r.status_code == 200, r.json()
    assert r.json()["ready"] is True
    assert set(r.json()["checks"]) == {"store", "ami", "fastagi", "scheduler", "calendar", "disk"}
    logins = fake.server.logins

    await fake.server.stop_listening()  # Asterisk gone: the link drops and cannot come back
    fake.server.drop_all()
    failing: list[str] = []

    async def unready() -> None:
        r = await readyz(hotline)
        failing[:] = r.json()["failing"] if r.status_code == 503 else []

    async def poll_until(done, timeout=5.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            await unready()
            if done():
                return
            assert time.monotonic() < deadline, "readiness did not change in time"
            await asyncio.sleep(0.05)

    await poll_until(lambda: failing == ["ami"])
    await fake.server.start()  # back on the same port: the client reconnects by itself
    await poll_until(lambda: failing == [] and hotline.state.callcontrol.link.connected)
    assert (await readyz(hotline)).status_code == 200
    assert fake.server.logins == logins + 1  # the probes opened no connection of their own


async def test_a_missing_holiday_arrangement_warns_without_taking_the_hotline_out_of_service(hotline):
    """T1/issue 19: /readyz covers the calendar, but a missing next-year arrangement only warns:
    the hotline serves on provisional deadlines (暂定), so it stays ready (200) and names the warning."""
    domain = hotline.state.domain
    year = domain.calendar.local_date(domain.clock()).year + 1
    while domain.calendar.is_year_known(year):  # the first year nobody has entered yet
        year += 1
    domain.clock.set(f"{year - 1}-12-01T02:00:00+00:00")
    r = await readyz(hotline)
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["ready"] is True and body["failing"] == [] and body["warnings"] == ["calendar"]
    assert body["checks"]["calendar"] == {
        "ok": False, "blocking": False,
        "detail": f"the holiday arrangement of {year} is not entered (deadlines in it are provisional): "
                  f"callcenter calendar set {year}"}


async def test_readyz_names_each_failing_check(hotline, leader, agi_socket):
    """Each readiness check fails by name: no scheduler leader, FastAGI not listening, disk low."""
    leader.release()
    agi_socket.close()
    hotline.state.settings.recordings_min_free_mb = 10**12
    r = await readyz(hotline)
    assert r.status_code == 503
    body = r.json()
    assert body["failing"] == ["fastagi", "scheduler", "disk"]
    assert "FastAGI port" in body["checks"]["fastagi"]["detail"]
    assert body["checks"]["ami"]["ok"] and body["checks"]["store"]["ok"] and body["checks"]["calendar"]["ok"]


async def test_healthz_answers_anyone_with_nothing_but_ok(hotline):
    async with client(hotline, "10.0.0.9") as http:
        r = await http.get("/healthz")
    assert r.status_code == 200 and r.json() == {"ok": True}


def families(text: str) -> dict:
    return {f.name: f for f in text_string_to_metric_families(text)}


def value(fams: dict, name: str, **labels) -> float:
    samples = [s for f in fams.values() for s in f.samples
               if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())]
    assert len(samples) == 1, (name, labels, samples)
    return samples[0].value


async def test_metrics_parse_and_show_the_queue_link_and_latency_without_personal_data(hotline):
    """Issue 19: /metrics parses with the Prometheus text parser; the queue figures are the link's
    (callers, longest wait, operators by state), latency is labelled by route template, and no
    phone number, name or id from a path appears."""
    async with client(hotline) as http:
        await http.get("/api/v1/cases/20261125000001")  # 401, but timed under its template
        await http.get("/no/such/page/13900009999")  # 404: one "unmatched" series, not one per path
        r = await http.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    fams = families(r.text)
    assert value(fams, "callcenter_calls_in_menu") == 1
    assert value(fams, "callcenter_queue_callers") == 1
    assert value(fams, "callcenter_queue_longest_wait_seconds") >= 42
    assert [value(fams, "callcenter_queue_operators", state=s) for s in ("free", "busy", "paused", "unavailable")] \
        == [1, 1, 1, 0]
    assert value(fams, "callcenter_ami_link_up", link="callcontrol") == 1
    assert value(fams, "callcenter_ami_reconnects_total", link="callcontrol") == 0
    assert value(fams, "callcenter_ready") == 1
    assert value(fams, "callcenter_agi_sessions_active") == 0
    assert value(fams, "callcenter_callbacks_due") == 0
    assert value(fams, "callcenter_work_orders_overdue", deadline="report") == 0
    routes = {s.labels["route"] for s in fams["callcenter_http_request_duration_seconds"].samples}
    assert "/api/v1/cases/{number}" in routes and "unmatched" in routes, routes
    assert value(fams, "callcenter_db_query_duration_seconds_count") > 0
    for secret in ("20261125000001", "13800002222", "13800001111", "13900009999", "2222", "张三", "话务员", "op8001", "op8002"):
        assert secret not in r.text


async def test_metrics_count_reconnects_of_the_ami_link(hotline, fake):
    fake.server.drop_all()
    await until(lambda: hotline.state.callcontrol.ami.stats.reconnects == 1 and hotline.state.callcontrol.link.connected)
    async with client(hotline, "::1") as http:
        fams = families((await http.get("/metrics")).text)
    assert value(fams, "callcenter_ami_reconnects_total", link="callcontrol") == 1
    assert value(fams, "callcenter_ami_link_losses_total", link="callcontrol") == 1


def test_metrics_only_for_this_machine_or_an_admin(api):
    """Issue 19: /metrics is read from 127.0.0.1/::1 or with an admin token; anyone else 403."""
    assert api.get("/metrics").status_code == 403  # TestClient's peer is "testclient", not local
    assert api.get("/metrics", as_="op1").status_code == 403
    assert api.get("/metrics", as_="sup1").status_code == 403
    r = api.client.get("/metrics", headers={"Authorization": "Bearer not-a-token"})
    assert r.status_code == 403
    r = api.get("/metrics", as_="admin1")
    assert r.status_code == 200 and "callcenter_ready" in r.text
    assert api.get("/healthz").status_code == 200


async def test_alert_rules_name_only_exported_metrics(hotline):
    """docs/prometheus-alerts.yml parses, each rule pages or files a ticket with a summary, and
    every metric its expressions name is in /metrics (promtool is not available here)."""
    async with client(hotline) as http:
        text = (await http.get("/metrics")).text
    exported = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    rules = [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]
    names = {rule["alert"] for rule in rules}
    assert {"HotlineAMILinkDown", "HotlineNotReady", "HotlineLongWait", "HotlineCallersPilingUp",
            "HotlineNoOperatorInServiceHours", "HotlineCallbacksFailing", "HotlineDiskLowForRecordings"} <= names
    for rule in rules:
        assert rule["labels"]["severity"] in {"page", "ticket"} and rule["annotations"]["summary"]
        named = set(re.findall(r"\b(callcenter_[a-z0-9_]+)", rule["expr"]))
        assert named or rule["expr"].startswith("up{"), rule["alert"]
        assert named <= exported, (rule["alert"], named - exported)
    ami = next(r for r in rules if r["alert"] == "HotlineAMILinkDown")
    assert ami["for"] == "1m"
    wait = next(r for r in rules if r["alert"] == "HotlineLongWait")
    assert "> 60" in wait["expr"]


def test_the_recordings_disk_alarm_is_logged_once_per_episode(tmp_path, caplog):
    """Disk full for recordings (issue 16 item 2): the running hotline's DiskWatch logs an ERROR when
    free space drops below the floor -- once, not at every check -- and a line when it is back."""
    from callcenter.ops.health import DiskWatch

    settings = Settings(state_dir=tmp_path, asterisk_root=tmp_path / "root", recordings_min_free_mb=1)
    watch = DiskWatch(settings)
    with caplog.at_level("INFO", logger="callcenter.ops"):
        assert watch.check_once().ok
        settings.recordings_min_free_mb = 10**12  # as good as a full disk
        assert [watch.check_once().ok for _ in range(3)] == [False] * 3
        settings.recordings_min_free_mb = 1
        assert watch.check_once().ok
    lines = [(r.levelname, r.getMessage().split(":")[0]) for r in caplog.records if r.name == "callcenter.ops"]
    assert lines == [("ERROR", "recordings disk"), ("WARNING", "recordings disk")]
    assert "calls go on" in caplog.records[0].getMessage()
