"""Faxes to the hotline (R2.2, R7.1; issue 14 item 3) through the fax/received AGI handler, as the
dialplan's [fax-in] calls it once a fax call is over: every page that arrived ends up in a case on
the fax channel as a PDF of the same pages; a fax cut off part-way says so; a fax of which nothing
arrived, or whose file cannot be read, is a failed fax call on the log and makes no case."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image, ImageDraw
from sqlalchemy import select, update

from agi.fax import tiff_to_pdf
from agi.hotline import Hotline, router_for
from agi.server import FastAGIServer
from agi.testing import FakeAsterisk
from callcenter.pbx.root import FAX_DIR, RECORDINGS_DIR
from ticketing import attachments
from ticketing.enums import Channel
from ticketing.models import Call, Case
from ticketing.store import session_scope

SENDER = "051087650001"
TIFF = f"{FAX_DIR}/1765000000.42.tif"


def fax_tiff(pages: int, dpi=(204, 98)) -> bytes:
    """A fax as ReceiveFax writes it: 1728 pixels wide, bilevel, CCITT G3, one image per page."""
    images = []
    for n in range(pages):
        page = Image.new("1", (1728, 1100), 1)
        ImageDraw.Draw(page).rectangle((100, 100, 1600, 200 + 100 * n), outline=0, width=6)
        images.append(page)
    out = io.BytesIO()
    images[0].save(out, "TIFF", save_all=True, append_images=images[1:], compression="group3", dpi=dpi)
    return out.getvalue()


def pdf_pages(pdf: bytes) -> list[tuple[float, float]]:
    """Width and height of each page (points) of a PDF as Pillow writes it (uncompressed objects)."""
    assert pdf.startswith(b"%PDF-")
    boxes = re.findall(rb"/MediaBox \[\s*0 0 ([0-9.]+) ([0-9.]+)\s*\]", pdf)
    assert len(re.findall(rb"/Type /Page\b", pdf)) == len(boxes)
    return [(float(w), float(h)) for w, h in boxes]


def test_a_fax_tiff_becomes_a_pdf_of_the_same_pages_in_true_proportions():
    pdf, pages = tiff_to_pdf(fax_tiff(3, dpi=(204, 98)))
    assert pages == 3
    sizes = pdf_pages(pdf)
    assert len(sizes) == 3
    # 1728 x 1100 pixels at 204 x 98 dpi is an A4-like page 8.5 in wide and 11.2 in tall
    width, height = sizes[0]
    assert height / width == pytest.approx((1100 / 98) / (1728 / 204), rel=0.01)
    with pytest.raises(ValueError):
        tiff_to_pdf(b"%PDF-1.4 not a tiff")


@pytest.fixture
def store(seeded):
    yield seeded
    with session_scope(seeded) as s:  # cases <-> calls point at each other: cut before emptying
        s.execute(update(Case).values(created_by_call_id=None))


async def fax_call(store, domain, *, status: str, error: str, file: bytes | None, uniqueid: str):
    asked = []

    def read_file(path: str) -> bytes | None:
        asked.append(path)
        return file

    hotline = Hotline.create(domain, store, RECORDINGS_DIR, read_file=read_file)
    server = FastAGIServer(router_for(hotline), "127.0.0.1", 0)
    await server.start()
    try:
        fake = FakeAsterisk("127.0.0.1", server.port, "fax/received", args=("1765000000.41", TIFF),
                            callerid=SENDER, uniqueid=uniqueid, context="fax-in", extension="83912345")
        await fake.connect()
        faxopt = {"STATUS": status, "ERROR": error}

        def answer(command: str) -> str:
            asked_for = re.search(r"FAXOPT\((\w+)\)", command.upper())
            return f"200 result=1 ({faxopt[asked_for[1]]})" if asked_for else "200 result=1"
        await fake.run(answer)
    finally:
        await server.stop()
        await hotline.close()
    assert asked == [TIFF]
    with session_scope(store) as s:
        call = s.execute(select(Call).where(Call.uniqueid == uniqueid)).scalar_one()
        case = s.get(Case, call.case_id) if call.case_id else None
        files = [(a.source, a.media_type, a.content) for a in attachments.of_case(s, case.id)] if case else []
        return ({"purpose": call.purpose, "outcome": call.outcome, "reason": call.outcome_reason,
                 "caller": call.caller_number, "linkedid": call.linkedid},
                None if case is None else {"channel": case.channel, "title": case.title,
                                           "description": case.description, "phone": case.citizen_phone},
                files)


async def test_r2_2_a_received_fax_is_a_case_on_the_fax_channel_with_its_pdf(store, domain):
    call, case, files = await fax_call(store, domain, status="SUCCESS", error="NO_ERROR", file=fax_tiff(2),
                                       uniqueid="1765000000.42")
    assert call == {"purpose": "fax", "outcome": "completed", "reason": "fax: 2 pages", "caller": SENDER,
                    "linkedid": "1765000000.41"}
    assert case["channel"] == Channel.FAX and case["title"] == "传真来件（待补录）" and case["phone"] == SENDER
    assert "共 2 页" in case["description"] and "未收全" not in case["description"]
    [(source, media_type, pdf)] = files
    assert (source, media_type) == ("fax", "application/pdf") and len(pdf_pages(pdf)) == 2


async def test_a_fax_cut_off_part_way_keeps_its_pages_and_says_so(store, domain):
    call, case, files = await fax_call(store, domain, status="FAILED", error="HANGUP", file=fax_tiff(1),
                                       uniqueid="1765000000.43")
    assert call["outcome"] == "completed" and call["reason"] == "fax: HANGUP"
    assert "共 1 页" in case["description"] and "传真未收全" in case["description"]
    assert len(pdf_pages(files[0][2])) == 1


@pytest.mark.parametrize(("file", "reason"), [(None, "fax: NO_TRAINING"), (b"II*\x00garbage", "fax: not a readable")])
async def test_a_fax_of_which_nothing_arrived_is_a_failed_call_and_no_case(store, domain, file, reason):
    call, case, files = await fax_call(store, domain, status="FAILED", error="NO_TRAINING", file=file,
                                       uniqueid="1765000000.44")
    assert case is None and files == []
    assert call["purpose"] == "fax" and call["outcome"] == "failed" and call["reason"].startswith(reason)


async def test_the_desk_sees_a_fax_case_to_take_and_a_failed_fax_to_call_back(store, domain, api):
    await fax_call(store, domain, status="SUCCESS", error="NO_ERROR", file=fax_tiff(1),
                   uniqueid="1765000000.45")
    await fax_call(store, domain, status="FAILED", error="NO_TRAINING", file=None, uniqueid="1765000000.46")
    waiting = api.get("/api/v1/console/waiting", as_="op1")
    assert waiting.status_code == 200, waiting.text
    assert [c["channel"] for c in waiting.json()] == ["fax"]  # a fax has its call, yet nobody takes that call
    failed = api.get("/api/v1/console/failed-faxes", as_="op1").json()
    assert [(f["uniqueid"], f["caller_number"], f["reason"]) for f in failed] == [
        ("1765000000.46", SENDER, "fax: NO_TRAINING")]
    assert api.get("/api/v1/console/failed-faxes", as_="water1").status_code == 403
    number = waiting.json()[0]["number"]
    files = api.get(f"/api/v1/cases/{number}/attachments", as_="op1")
    assert files.status_code == 200 and [f["media_type"] for f in files.json()] == ["application/pdf"]
