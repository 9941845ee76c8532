"""The 回访 callback survey (ivr_flows/survey.yaml), R7.4."""
from __future__ import annotations

import pytest

from ivr_flows import flow_path
from ivr_flows.engine import FlowRunner, load_flow
from ivr_flows.scripted import ScriptedDriver
from ticketing.enums import Satisfaction

CASE = "20250301-000123"


@pytest.fixture(scope="module")
def survey():
    return load_flow(flow_path("survey"))


class Recorder:
    def __init__(self) -> None:
        self.calls: list[dict] = []

    async def record_satisfaction(self, case_number: str, value: str) -> dict:
        self.calls.append({"case_number": case_number, "value": value})
        return {}


async def run(flow, keys, **driver_kw):
    driver, app = ScriptedDriver(keys, **driver_kw), Recorder()
    runner = FlowRunner(flow, driver, {"record_satisfaction": app.record_satisfaction},
                        {"caller": "13812345678", "case_number": CASE})
    return await runner.run(), driver, app


@pytest.mark.parametrize("key, value", [("1", "satisfied"), ("2", "basically_satisfied"),
                                        ("3", "unsatisfied")])
async def test_r7_4_survey_records_the_rating(survey, key, value):
    result, driver, app = await run(survey, [key])
    assert result.outcome == "self_served"
    assert result.variables["satisfaction"] == value
    assert app.calls == [{"case_number": CASE, "value": value}]
    assert Satisfaction(value)  # the values the store accepts
    assert driver.played()[0] == "survey_greeting"
    assert ("say_digits", "20250301000123") in driver.events
    assert driver.played()[-1] == "survey_thanks"


async def test_r7_4_survey_silence_twice_is_not_rated_and_records_nothing(survey):
    result, driver, app = await run(survey, ["", "", "1"])
    assert (result.outcome, result.variables["satisfaction"]) == ("self_served", Satisfaction.NOT_RATED)
    assert app.calls == []
    assert driver.keys == ["1"]  # asked twice, not three times
    assert driver.played()[-1] == "survey_no_answer_goodbye"


async def test_r7_4_survey_invalid_key_then_2_is_basically_satisfied(survey):
    result, driver, app = await run(survey, ["9", "2"])
    assert result.variables["satisfaction"] == "basically_satisfied"
    assert app.calls == [{"case_number": CASE, "value": "basically_satisfied"}]
    assert "invalid_key" in driver.played()


async def test_survey_invalid_twice_is_not_rated(survey):
    result, _, app = await run(survey, ["7", "8"])
    assert result.variables["satisfaction"] == "not_rated"
    assert app.calls == []


async def test_survey_key_during_greeting_answers_the_question(survey):
    result, driver, app = await run(survey, [], barge={"survey_greeting": "3"})
    assert result.variables["satisfaction"] == "unsatisfied"
    assert ("say_digits", "20250301000123") in driver.events  # the case number is still said


async def test_survey_hangup_before_rating_is_abandoned_without_rating(survey):
    result, _, app = await run(survey, [])
    assert result.outcome == "abandoned"
    assert "satisfaction" not in result.variables
    assert app.calls == []


async def test_survey_hangup_after_rating_keeps_the_rating(survey):
    result, _, app = await run(survey, ["1"], hangup_on_prompt="survey_thanks")
    assert (result.outcome, result.variables["satisfaction"]) == ("self_served", "satisfied")
    assert len(app.calls) == 1


async def test_survey_without_case_number_goes_to_an_operator(survey):
    runner = FlowRunner(survey, ScriptedDriver(["1"]), {"record_satisfaction": Recorder().record_satisfaction},
                        {"caller": "13812345678"})
    result = await runner.run()
    assert (result.outcome, result.reason) == ("queued", "error")
    assert "case_number" in result.error
