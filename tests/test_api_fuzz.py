"""A1 / issue 11 §6: schema-driven fuzzing of every operation in the OpenAPI schema, on SQLite (the
answers are the API's, the same on both stores; PostgreSQL would add four minutes to the suite's
20-minute budget, and the store tests run there). Each generated request (valid and invalid data) is sent as a front-desk operator, as the
back office and without a login; no answer may be a 5xx, and every answer must match the schema the
API publishes for its status. Seeded (derandomized), 50 examples per operation: the same requests on
every run. New routes are fuzzed without editing this test."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance

from tests.conftest import CONFIG_DIR

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

ROLES = ("op1", "bo1", None)  # front desk, back office, nobody
EXAMPLES = 50
# This server runs without the telephone link (no AMI): its call-control endpoints answer 503 on
# purpose and say so. That one refusal is expected; any other 5xx is a fault.
TELEPHONY_OFF = {"telephony_unavailable", "pbx_unavailable"}
# Logging out as a role would revoke the token the other examples use.
NO_ROLE_TOKENS = {("POST", "/api/v1/auth/logout")}


def _operations() -> dict:
    """The published schema, read once at collection: it does not depend on the store."""
    from callcenter.api.app import create_app
    from callcenter.settings import Settings
    from ticketing.store import make_engine

    app = create_app(Settings(config_dir=CONFIG_DIR), engine=make_engine("sqlite://"))
    loaded = schemathesis.openapi.from_dict(app.openapi())
    return {op.label: op for op in (r.ok() for r in loaded.get_all_operations())}


OPERATIONS = _operations()


def _telephony_off(response) -> bool:
    if response.status_code not in (502, 503):
        return False
    try:
        return response.json().get("error") in TELEPHONY_OFF
    except ValueError:
        return False


@pytest.mark.parametrize("label", sorted(OPERATIONS))
def test_a1_no_server_error_and_answers_match_the_schema(api, label):
    operation = OPERATIONS[label]
    roles = (None,) if (operation.method.upper(), operation.path) in NO_ROLE_TOKENS else ROLES
    tokens = {username: api.login(username) for username in roles if username}
    cases = st.one_of(operation.as_strategy(GenerationMode.POSITIVE), operation.as_strategy(GenerationMode.NEGATIVE))

    @settings(max_examples=EXAMPLES, derandomize=True, database=None, deadline=None,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=cases)
    def run(case):
        for username in roles:
            headers = dict(case.headers or {})
            if username:
                headers["Authorization"] = f"Bearer {tokens[username]}"
            kwargs = case.as_transport_kwargs(base_url="http://testserver", headers=headers)
            kwargs.pop("cookies", None)
            response = api.client.request(**kwargs)
            if _telephony_off(response):
                continue
            case.validate_response(response, checks=[not_a_server_error, response_schema_conformance,
                                                     content_type_conformance])

    run()
