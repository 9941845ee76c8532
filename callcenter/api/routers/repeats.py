"""Repeated requests (重复诉求并单): the desk's flag and the back office's merge.

The rule of what repeats what is `ticketing.repeats`; the merge is `Workflow.merge`."""
from __future__ import annotations

from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import select

from callcenter.api.deps import (
    ActorDep,
    DomainDep,
    SessionDep,
    WorkflowDep,
    commit,
    require_roles,
)
from callcenter.api.routers.cases import _load, _out
from callcenter.api.schemas import CaseOut, Out, Strict
from ticketing.enums import Role
from ticketing.merge_model import CaseMerge
from ticketing.models import Case

router = APIRouter(prefix="/cases", tags=["cases"])

FLAG_ROLES = (Role.FRONT_DESK, Role.BACK_OFFICE, Role.SUPERVISOR)


class RepeatOut(Out):
    number: str
    status: str
    ground: str  # same_caller | same_place


class MergeIn(Strict):
    into: str  # the surviving case's number
    expected_version: int | None = None  # the duplicate's version you acted on (required)


class MergedOut(Out):
    number: str
    ground: str
    merged_at: str
    satisfaction: str | None = None  # the merged case's citizen's rating in the surviving case's callback


class MergesOut(BaseModel):
    merged_into: str | None
    merged: list[MergedOut]


@router.get("/{number}/repeats", response_model=list[RepeatOut],
            summary="Open earlier cases this one repeats (same caller or same place, same category)")
def repeats(number: str, actor: ActorDep, wf: WorkflowDep) -> list[RepeatOut]:
    require_roles(actor, *FLAG_ROLES, rule="R5.2", what="see repeated requests")
    case = _load(wf, actor, number)
    return [RepeatOut(number=r.number, status=r.status, ground=r.ground) for r in wf.repeats_of(case)]


@router.post("/{number}/merge", response_model=CaseOut,
             summary="Back office: close this case as a repeat of an open case (并单)")
def merge(number: str, body: MergeIn, actor: ActorDep, wf: WorkflowDep, session: SessionDep,
          domain: DomainDep) -> CaseOut:
    duplicate = _load(wf, actor, number)
    survivor = _load(wf, actor, body.into)
    wf.merge(actor, duplicate, survivor, expected_version=body.expected_version)
    commit(session)
    return _out(survivor, actor, domain)


@router.get("/{number}/merges", response_model=MergesOut,
            summary="Which case this one was merged into, and which repeats were merged into it")
def merges(number: str, actor: ActorDep, wf: WorkflowDep, session: SessionDep) -> MergesOut:
    case = _load(wf, actor, number)
    into = session.execute(select(Case.number).join(CaseMerge, CaseMerge.surviving_case_id == Case.id)
                           .where(CaseMerge.duplicate_case_id == case.id)).scalar_one_or_none()
    rows = session.execute(select(Case.number, CaseMerge.ground, CaseMerge.merged_at, Case.satisfaction)
                           .join(CaseMerge, CaseMerge.duplicate_case_id == Case.id)
                           .where(CaseMerge.surviving_case_id == case.id).order_by(CaseMerge.id)).all()
    return MergesOut(merged_into=into, merged=[MergedOut(number=n, ground=g, merged_at=at.isoformat(),
                                                            satisfaction=sat.value if sat else None)
                                                  for n, g, at, sat in rows])
