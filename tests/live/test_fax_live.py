"""A fax to the hotline on the real Asterisk (issue 14 item 3, R2.2): another channel sends a
generated two-page TIFF with SendFax (res_fax_spandsp, T.30 over audio) to the fax line ([fax-in]);
ReceiveFax writes it, the fax/received handler on our FastAGI server turns it into a case on the
fax channel with a readable PDF of the same page count, and the call is on the log."""
from __future__ import annotations

import asyncio
import os
import time
import uuid

import pytest
from sqlalchemy import select

from callcenter.pbx.root import host_path
from tests.test_fax import fax_tiff, pdf_pages
from ticketing import attachments
from ticketing.enums import Channel
from ticketing.models import Call, Case
from ticketing.store import session_scope

pytestmark = pytest.mark.live

SENDER = "051087650002"


async def test_r2_2_a_two_page_fax_becomes_a_case_with_a_pdf_of_two_pages(hotline, asterisk):
    inside = f"/tmp/callcenter-fax-{uuid.uuid4().hex[:8]}.tif"
    source = host_path(asterisk, inside)
    source.write_bytes(fax_tiff(2, dpi=(204, 196)))
    os.chmod(source, 0o644)  # read by Asterisk's own user
    try:
        reply = await hotline.ami.send_action({
            "Action": "Originate", "Channel": "Local/83912345@fax-in", "Application": "SendFax", "Data": inside,
            "CallerID": f'"fax" <{SENDER}>', "Async": "true", "Timeout": "15000"})
        assert reply.success, reply
        deadline = time.monotonic() + 120
        call = None
        while call is None or call.outcome is None:
            assert time.monotonic() < deadline, "the fax call never reached the store"
            await asyncio.sleep(1)
            with session_scope(hotline.sessions) as s:
                call = s.execute(select(Call).where(Call.purpose == "fax")).scalars().first()
                if call is not None:
                    s.expunge(call)
        assert (call.outcome, call.outcome_reason, call.caller_number) == ("completed", "fax: 2 pages", SENDER)
        with session_scope(hotline.sessions) as s:
            case = s.get(Case, call.case_id)
            assert case.channel == Channel.FAX and "共 2 页" in case.description
            [pdf] = [a.content for a in attachments.of_case(s, case.id)]
        sizes = pdf_pages(pdf)
        # two pages of the fax's proportions (1728 x 1100 pixels at 204 x 196 dpi)
        assert len(sizes) == 2 and sizes[1][1] / sizes[1][0] == pytest.approx((1100 / 196) / (1728 / 204), rel=0.01)
    finally:
        source.unlink(missing_ok=True)
