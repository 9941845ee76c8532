"""A case's attached files (issue 14: a citizen's photo from the web portal): listed and read by
whoever may read the case's content (ticketing/access.py; R7.3c: a discipline report's files only
by the commission). The bytes go out with the type their own signature named when they were
checked (ticketing/attachments.py), never as HTML: a browser shows an image, never runs a page."""
from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import Response
from pydantic import BaseModel

from callcenter.api.deps import ActorDep, IdPath, SessionDep, WorkflowDep
from callcenter.api.routers.cases import _load
from ticketing import attachments
from ticketing.access import may_read_content
from ticketing.errors import Forbidden

router = APIRouter(prefix="/cases", tags=["cases"])
_TYPES = {"image/jpeg": {}, "image/png": {}, "image/webp": {}, "application/pdf": {}}


class AttachmentOut(BaseModel):
    id: int
    source: str
    media_type: str
    size: int
    sha256: str
    created_at: datetime


def _readable(wf, actor, number: str):
    case = _load(wf, actor, number)
    if not may_read_content(actor, case):
        raise Forbidden("R7.3c", "the files of this case are for the discipline commission alone")
    return case


@router.get("/{number}/attachments", response_model=list[AttachmentOut], summary="The case's attached files")
def list_attachments(number: str, actor: ActorDep, wf: WorkflowDep, session: SessionDep) -> list[AttachmentOut]:
    case = _readable(wf, actor, number)
    return [AttachmentOut(id=a.id, source=a.source, media_type=a.media_type, size=a.size, sha256=a.sha256,
                          created_at=a.created_at) for a in attachments.of_case(session, case.id)]


@router.get("/{number}/attachments/{attachment_id}", response_class=Response,
            responses={200: {"content": _TYPES, "description": "The file's bytes"}}, summary="One attached file")
def read_attachment(number: str, attachment_id: IdPath, actor: ActorDep, wf: WorkflowDep,
                    session: SessionDep) -> Response:
    case = _readable(wf, actor, number)
    row = attachments.one(session, case.id, attachment_id)
    ext = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp", "application/pdf": "pdf"}[row.media_type]
    return Response(row.content, media_type=row.media_type, headers={
        "Content-Disposition": f'inline; filename="{case.number}-{row.id}.{ext}"'})
