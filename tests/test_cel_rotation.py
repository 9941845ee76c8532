"""The CEL file (the call log's gap-filler after an AMI link outage, A2) is rotated once the reader has
consumed enough of it, and no record the gap-filler still needs is lost: records appended between the
last read and the rotation, a reader that starts right after a rotation, a second reader that lags,
and the link counting what it got live as consumed while it stays connected."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from callcenter.ami.client import AMIClient
from callcenter.callcontrol import CallControl
from callcenter.callcontrol.cel import CelFile
from tests.test_callcontrol_link import csv_of, fake, until  # noqa: F401  (fake: the fixture)
from ticketing import calls
from ticketing.models import CallEvent
from ticketing.store import session_scope


def rows(uid: str, n: int, start: datetime | None = None) -> list[tuple[str, ...]]:
    """n CEL records of leg ``uid`` (a bridge enter/exit each: distinct dedup keys per second)."""
    start = start or datetime.now(UTC) - timedelta(seconds=60)
    return [("BRIDGE_ENTER", (start + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S.%f"), uid, uid,
             "PJSIP/trunk-00000001", "Queue", f'{{"bridge_id":"b{i}"}}') for i in range(n)]


def append(path, records) -> None:
    # as Asterisk's cel_custom does: open, append, close for every record
    for record in records:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(csv_of([record]))


def bridges(records) -> list[str]:
    return [r["extra"] for r in records]


def test_rotates_after_consuming_and_keeps_what_came_after_the_last_read(tmp_path):
    path = tmp_path / "cel.csv"
    reader = CelFile(path, rotate_bytes=2000, keep=2)
    first = rows("c1", 30)
    append(path, first[:20])
    assert len(reader.read_new()) == 20 and reader.rotations == 1  # > 2000 bytes consumed: rotated
    assert not path.exists() and (tmp_path / "cel.csv.1").exists()
    append(path, first[20:25])  # Asterisk starts a new file
    assert bridges(reader.read_new()) == [f'{{"bridge_id":"b{i}"}}' for i in range(20, 25)]
    # records written to the old file between the last read and the rename are not lost
    reader2 = CelFile(path, rotate_bytes=600, keep=2)
    reader2.read_new()
    append(path, first[25:28])
    size_before = path.stat().st_size
    reader2.advance(None)  # consumed < 600 of the current file: no rotation yet
    assert path.stat().st_size == size_before
    got = reader2.read_new()  # reads 25..27, consumed > 600 now: rotates
    assert [r["extra"] for r in got] == [f'{{"bridge_id":"b{i}"}}' for i in range(25, 28)]


def test_records_appended_just_before_a_rotation_are_read_from_the_rotated_file(tmp_path):
    path = tmp_path / "cel.csv"
    reader = CelFile(path, rotate_bytes=10**9, keep=2)
    records = rows("c1", 12)
    append(path, records[:8])
    assert len(reader.read_new()) == 8
    mark = reader.mark()
    append(path, records[8:10])  # after the mark: the link has not counted these as consumed
    reader.rotate_bytes = 100
    reader.advance(mark)  # consumed 8 records > 100 bytes: rotate, with 8..9 unread in .1
    assert reader.rotations == 1 and not path.exists()
    append(path, records[10:])
    assert bridges(reader.read_new()) == [f'{{"bridge_id":"b{i}"}}' for i in range(8, 12)]
    assert reader.read_new() == []


def test_older_generations_are_dropped_beyond_keep(tmp_path):
    path = tmp_path / "cel.csv"
    reader = CelFile(path, rotate_bytes=300, keep=2)
    for n in range(5):
        append(path, rows(f"c{n}", 3))
        assert len(reader.read_new()) == 3
    assert reader.rotations == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cel.csv.1", "cel.csv.2"]


def test_a_process_starting_right_after_a_rotation_reads_the_tail_of_the_rotated_file(tmp_path):
    path = tmp_path / "cel.csv"
    old = rows("c1", 5, datetime.now(UTC) - timedelta(hours=2))  # outside the 15-minute look-back
    recent = rows("c2", 6)
    append(path, old + recent[:4])
    path.rename(tmp_path / "cel.csv.1")  # rotated by the previous process
    append(path, recent[4:])
    got = CelFile(path, rotate_bytes=10**9).read_new(since=None)
    assert [r["uniqueid"] for r in got] == ["c2"] * 6


def test_a_lagging_second_reader_finds_its_file_among_the_rotated_ones(tmp_path):
    path = tmp_path / "cel.csv"
    rotating, lagging = CelFile(path, rotate_bytes=400, keep=2), CelFile(path, rotate_bytes=None)
    records = rows("c1", 10)
    append(path, records[:2])
    assert len(lagging.read_new()) == 2
    append(path, records[2:6])
    rotating.read_new()  # rotates: records 2..5, unread by the other reader, are in .1 now
    append(path, records[6:])
    assert bridges(lagging.read_new()) == [f'{{"bridge_id":"b{i}"}}' for i in range(2, 10)]


def test_copy_truncate_by_logrotate_is_still_read_from_the_start(tmp_path):
    path = tmp_path / "cel.csv"
    reader = CelFile(path, rotate_bytes=None)
    append(path, rows("c1", 4))
    reader.read_new()
    path.write_text("")  # copytruncate
    append(path, rows("c2", 1))
    assert [r["uniqueid"] for r in reader.read_new()] == ["c2"]


async def test_a2_link_rotates_while_connected_and_still_fills_an_outage_exactly_once(fake, sessions, domain,
                                                                                    tmp_path):
    """While the link is up the file is consumed (what it held a tick ago came live) and rotated;
    records written during a later outage are still added from the (new) file, once."""
    with session_scope(sessions) as s:
        calls.call_row(s, uniqueid="c1", linkedid="c1", started_at=datetime.now(UTC))
    path = tmp_path / "cel.csv"
    path.write_text("")
    ami = AMIClient("127.0.0.1", fake.server.port, fake.server.username, fake.server.secret,
                    reconnect_backoff=(0.05, 0.2), ping_interval=5)
    source = CelFile(path, rotate_bytes=1000, keep=2)
    cc = CallControl.create(ami, sessions, domain, cel_source=source, cel_maintenance_seconds=0.05)
    records = rows("c1", 20)
    await cc.start()
    try:
        for r in records[:12]:  # live over AMI, and appended to the file by Asterisk
            fake.event(Event="CEL", EventName=r[0], EventTime=r[1][:19], UniqueID=r[2], LinkedID=r[3],
                       Channel=r[4], Application=r[5], Extra=r[6])
        append(path, records[:12])
        await until(lambda: source.rotations >= 1, timeout=5)
        assert (tmp_path / "cel.csv.1").exists()
        await cc.link.flush_log()
        fake.server.drop_all()  # outage: these reach only the file
        append(path, records[12:])
        await until(lambda: cc.link.stats.resyncs >= 2)
        await cc.link.wait_resynced(3)
        assert cc.link.stats.reconciled == 8
    finally:
        await cc.stop()
    with session_scope(sessions) as s:
        keys = [e.dedup_key for e in s.execute(select(CallEvent)).scalars()]
    assert len(keys) == len(set(keys)) == 20
