"""The fax line's AGI handler (issue 14 item 3): after a fax call ends, the dialplan ([fax-in], h
extension) hands over the TIFF that ReceiveFax wrote; this turns it into a PDF and stores the call
and, if any page arrived, a case with the PDF attached (ticketing/fax.py has the rule).

The TIFF is read through the host's view of Asterisk's files (`Hotline.read_file`, given by the
composition root), so this works whether Asterisk runs in its own root or on the host.
"""
from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

from PIL import Image, ImageSequence, UnidentifiedImageError

from ticketing import calls
from ticketing.fax import accept_fax
from ticketing.privacy import mask_phone
from ticketing.writer import on_session

if TYPE_CHECKING:
    from agi.channel import AGIChannel
    from agi.hotline import Hotline

log = logging.getLogger("agi.fax")


def tiff_to_pdf(data: bytes) -> tuple[bytes, int]:
    """A fax TIFF (G3/G4, one image per page) as a PDF of the same pages; (pdf, page count).
    Fax pixels are often twice as tall as wide (204 x 98 dpi): pages are scaled to square pixels so
    the PDF shows them in their true proportions. ValueError if the bytes are not a readable TIFF."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            pages = []
            for frame in ImageSequence.Iterator(image):
                xdpi, ydpi = (float(v) for v in frame.info.get("dpi", (204.0, 196.0)))
                page = frame.convert("1")
                if xdpi > 0 and ydpi > 0 and abs(xdpi - ydpi) > 1:
                    page = page.resize((page.width, round(page.height * xdpi / ydpi)))
                pages.append(page.copy())
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"not a readable fax TIFF: {exc}") from None
    if not pages:
        raise ValueError("the fax TIFF has no page")
    out = io.BytesIO()
    dpi = float(pages[0].info.get("dpi", (204.0, 204.0))[0] or 204.0)
    pages[0].save(out, "PDF", save_all=True, append_images=pages[1:], resolution=dpi)
    return out.getvalue(), len(pages)


async def receive_fax(hotline: Hotline, channel: AGIChannel) -> None:
    """``AGI(agi://…/fax/received,<linkedid>,<tiff path as Asterisk sees it>)`` from [fax-in]'s h extension."""
    # the call record's transactions, as for the menu
    from agi.hotline import CallContext

    env, args = channel.request.env, channel.request.args
    uniqueid = env.get("agi_uniqueid", "")
    linkedid = args[0] if args and args[0] else uniqueid
    tiff_path = args[1] if len(args) > 1 else ""
    caller = env.get("agi_callerid", "")
    if caller in ("unknown", "<unknown>"):
        caller = ""
    status = (await channel.get_variable("FAXOPT(status)")) or ""
    error = (await channel.get_variable("FAXOPT(error)")) or ""
    complete = status.upper() == "SUCCESS"

    pdf, pages, problem = None, 0, "" if complete else (error or status or "no fax status")
    data = hotline.read_file(tiff_path) if tiff_path and hotline.read_file is not None else None
    if data:
        try:
            pdf, pages = tiff_to_pdf(data)
        except ValueError as exc:
            problem = str(exc)
    elif complete:
        problem = "the received fax file is missing"
    now = hotline.domain.clock()
    ctx = CallContext(hotline, caller, "")
    ctx.open_call_with_first_tx(uniqueid=uniqueid, linkedid=linkedid, direction="inbound", purpose="fax",
                                caller_number=caller, callee_number=env.get("agi_extension", ""),
                                started_at=now, answered_at=now)

    def store(session):
        case = accept_fax(session, hotline.domain.workflow(session), caller=caller, pdf=pdf, pages=pages,
                          complete=complete and not problem, call_id=ctx.call_id, now=now)
        calls.finish_call(on_session(session), ctx.call_id, outcome="completed" if case is not None else "failed",
                          reason=(f"fax: {problem}"[:64] if problem else f"fax: {pages} pages"), ended_at=now,
                          case_id=case.id if case is not None else None)
        return case.number if case is not None else None

    try:
        number = await ctx.tx(store)
    finally:
        ctx.close()
    if number is None:
        log.warning("fax call %s from %s: nothing received (%s); on the call log as failed", uniqueid,
                    mask_phone(caller) or "unknown", problem)
    else:
        log.info("fax call %s from %s: %d pages%s, case %s", uniqueid, mask_phone(caller) or "unknown", pages,
                 "" if not problem else f" (incomplete: {problem})", number)


__all__ = ["receive_fax", "tiff_to_pdf"]
