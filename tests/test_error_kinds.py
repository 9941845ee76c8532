"""Errors carry rules, not HTTP (issue 10 item 5): domain errors name a rule and a kind, the
application's own failures (telephony, login) are AppErrors, and the API's edge answers each with
the same status and body as before the move."""
from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

import callcenter.api.deps as deps
import callcenter.api.routers.operators as operators
import callcenter.callcontrol.link as link
import callcenter.callcontrol.queue as queue
import callcenter.callcontrol.transfer as transfer
import ticketing.errors as domain
from callcenter import errors as app_errors
from callcenter.api import errors as edge

CASES = [  # the error, the status and body the API answered before issue 10
    (lambda: domain.DomainError("R3.1", "x"), 409, "R3.1", "x"),
    (lambda: domain.NotFound("case", 5), 404, "not_found", "case 5 does not exist"),
    (lambda: domain.Forbidden("R5.3", "y"), 403, "R5.3", "y"),
    (lambda: domain.InvalidInput("users", "z"), 422, "users", "z"),
    (lambda: domain.Conflict(), 409, "concurrent_update", "the case was changed by someone else; reload and try again"),
    (lambda: link.LinkDown(), 503, "telephony_unavailable",
     "the telephone system (Asterisk AMI link) is not connected; try again shortly"),
    (lambda: link.UnknownChannel("c1"), 404, "unknown_channel", "no call leg 'c1' is known to the telephone system"),
    (lambda: link.ChannelGone("c1"), 410, "call_ended", "call leg 'c1' has already hung up"),
    (lambda: link.NotYourCall("c1", "8001"), 403, "not_your_call", "call leg 'c1' is not a call of operator 8001"),
    (lambda: queue.NotInQueue("8001"), 409, "not_in_queue", "operator 8001 is not logged in to the queue; log in first"),
    (lambda: queue.QueueActionFailed("m"), 502, "queue_action_failed", "m"),
    (lambda: queue.OutcomeUnknown("the login"), 503, "telephony_outcome_unknown",
     "the link to Asterisk dropped before it answered the login; the state is checked again as soon as the link "
     "is back: read the queue state and retry if needed"),
    (lambda: transfer.UnknownCall("u1"), 404, "call_unknown", "no call with channel id 'u1'"),
    (lambda: transfer.CallHungUp("u1"), 410, "call_ended", "the call 'u1' has ended (the citizen hung up)"),
    (lambda: transfer.NotCallOwner("u1"), 403, "call_owner",
     "the call 'u1' is held by another operator; only the operator on the call may transfer or conference it"),
    (lambda: transfer.CallStateError("m"), 409, "call_state", "m"),
    (lambda: transfer.PbxUnavailable(), 503, "pbx_unavailable", "the telephone system is not reachable; try again"),
    (lambda: operators.TelephonyOff(), 503, "telephony_unavailable",
     "this API server runs without the telephone link (no AMI connection configured); queue and call functions "
     "are unavailable here"),
    (lambda: operators.NoExtension(), 403, "operator_extension",
     "your account has no operator extension (softphone); an administrator sets it (operator_extension)"),
    (lambda: operators.UnknownPauseReason("nap"), 422, "pause_reason",
     "unknown pause reason 'nap'; use one of break, meal, training, meeting, after_call_work, other"),
    (lambda: deps.Unauthorized(), 401, "unauthorized", "log in first: send 'Authorization: Bearer <token>'"),
]


@pytest.fixture(scope="module")
def client():
    app = FastAPI()
    edge.install(app)

    @app.get("/raise/{i}")
    def boom(i: int):
        raise CASES[i][0]()
    return TestClient(app)


@pytest.mark.parametrize("i", range(len(CASES)))
def test_issue10_each_error_is_answered_as_before(client, i):
    _make, status, error, detail = CASES[i]
    r = client.get(f"/raise/{i}")
    assert (r.status_code, r.json()) == (status, {"error": error, "detail": detail})


def test_issue10_domain_errors_carry_no_http():
    for cls in (domain.DomainError, domain.NotFound, domain.Forbidden, domain.InvalidInput, domain.Conflict):
        assert not hasattr(cls, "status_code"), cls
        assert cls.kind in domain.KINDS


def test_issue10_telephony_failures_are_not_domain_errors():
    for cls in (queue.NotInQueue, queue.QueueActionFailed, queue.OutcomeUnknown, transfer.UnknownCall,
                transfer.CallHungUp, transfer.NotCallOwner, transfer.CallStateError, transfer.PbxUnavailable,
                operators.TelephonyOff, operators.NoExtension, operators.UnknownPauseReason, deps.Unauthorized):
        assert issubclass(cls, app_errors.AppError) and not issubclass(cls, domain.DomainError), cls
        assert cls.kind in app_errors.KINDS


def test_issue10_every_kind_has_a_status():
    assert set(edge.STATUS) == app_errors.KINDS | domain.KINDS
