"""The 回访 survey over our FastAGI server as the composition root builds it (issue 10 item 3):
agi/ gets the callback scheduler's side of the survey from callcenter, not by importing callback/.
R7.4: the citizen's rating is stored with the call; R7.5: a satisfied case is closed."""
from __future__ import annotations

from sqlalchemy import select

from agi.testing import FakeAsterisk, pressing
from callback import attempts as A
from callcenter.runtime import agi_server
from callcenter.settings import Settings
from tests.conftest import CONFIG_DIR
from tests.live.callback_helpers import reported_case
from ticketing.enums import CaseStatus, Satisfaction
from ticketing.models import Call, CallbackAttempt, Case
from ticketing.store import session_scope


async def test_r7_4_survey_call_rates_and_closes_through_the_composed_server(seeded, domain, engine, tmp_path):
    number = reported_case(seeded, domain, "13800000001")
    with session_scope(seeded) as s:
        A.plan_due(s, domain)
    with session_scope(seeded) as s:
        (claimed,) = A.claim(s, domain, 10)
    server = agi_server(Settings(state_dir=tmp_path, config_dir=CONFIG_DIR), domain=domain, engine=engine, port=0)
    await server.start()
    try:
        fake = FakeAsterisk("127.0.0.1", server.port, "ivr/survey", query={"key": claimed.key, "case": number},
                            uniqueid="cb-survey-1", callerid="12345", context="outbound-callback")
        await fake.connect()
        await fake.run(pressing("1"), timeout=20)  # 1: satisfied
    finally:
        await server.stop()
    with session_scope(seeded) as s:
        case = s.execute(select(Case).where(Case.number == number)).scalar_one()
        attempt = s.execute(select(CallbackAttempt).where(CallbackAttempt.idempotency_key == claimed.key)).scalar_one()
        call = s.execute(select(Call).where(Call.uniqueid == "cb-survey-1")).scalar_one()
        assert (case.status, case.satisfaction) == (CaseStatus.CLOSED, Satisfaction.SATISFIED)
        assert (attempt.state, attempt.result, attempt.call_id) == (A.DONE, Satisfaction.SATISFIED, call.id)
        assert (call.purpose, call.case_id) == ("callback", case.id)
