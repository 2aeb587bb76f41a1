"""The openai judge backend (instructor + openai client) against the localhost test server."""

from __future__ import annotations

import json

import pytest

from slicelab.service.judge import judge_spec, parse_reply
from slicelab.service.judge.openai_backend import OpenAIJudge
from slicelab.service.labeler_factory import make_judge
from slicelab.service.samples import EvalSample, Status
from slicelab.service.taxonomy import load_taxonomy
from tests.conftest import make_samples


def judge(server, **kw) -> OpenAIJudge:
    return OpenAIJudge(base_url=server.base_url, model="test-judge", transport_retries=0, **kw)


def one(marker: str = "", **update) -> EvalSample:
    return make_samples(1, marker=marker)[0].model_copy(update=update)


def test_valid_reply_is_labeled_with_provenance(judge_server):
    r = judge(judge_server).label(one())
    assert r.status == Status.labeled and r.error is None
    assert r.labels["task_type"] == "binary_judgment"
    assert r.labels["solving_operations"] == ["algorithm_execution", "logical_deduction"]  # deduped, order kept
    assert "failure_mode" not in r.labels  # not scored wrong
    assert r.attempts == 1 and len(r.raw_texts) == 1 and r.finish_reason == "stop"
    assert r.prompt_tokens > 0 and r.completion_tokens > 0
    assert (r.backend, r.model, r.prompt_ref) == ("openai", "test-judge", "eval-label@1")
    sent = judge_server.requests[0]
    assert sent["response_format"]["type"] == "json_schema"
    schema = sent["response_format"]["json_schema"]["schema"]
    assert set(schema["properties"]) == {"background_condition", "task_type", "solving_operations", "output_constraint"}
    assert sent["max_tokens"] == 160 and sent["temperature"] == 0.0


def test_request_hash_is_stable_and_item_specific(judge_server):
    j = judge(judge_server)
    a, b = make_samples(2)
    assert j.label(a).request_hash == j.label(a).request_hash
    assert j.label(a).request_hash != j.label(b).request_hash


def test_wrong_sample_gets_failure_mode_from_judge(judge_server):
    s = one(model_output="I think it is 5. So the answer is 5.", correct=False)
    r = judge(judge_server).label(s)
    assert r.status == Status.labeled
    assert r.labels["failure_mode"] == "wrong_reasoning" and r.failure_mode_source == "judge"
    assert "failure_mode" in judge_server.requests[0]["response_format"]["json_schema"]["schema"]["properties"]


@pytest.mark.parametrize("output,finish,expected", [
    ("", None, "refusal_or_empty"),
    ("Let me think step by step and keep going", "length", "non_termination"),
    ("x = 1. x = 1. x = 1. x = 1. x = 1. x = 1. x = 1. x =", None, "non_termination"),
])
def test_deterministic_failure_mode_wins_over_judge(judge_server, output, finish, expected):
    s = one(model_output=output, correct=False, finish_reason=finish)
    r = judge(judge_server).label(s)
    assert r.status == Status.labeled
    assert r.labels["failure_mode"] == expected  # the server said wrong_reasoning
    assert r.failure_mode_source.startswith("rule: ")


def test_invalid_output_retries_without_growing_the_prompt(judge_server):
    r = judge(judge_server, max_attempts=3).label(one("[[invalid]]"))
    assert r.status == Status.format_error and "not JSON" in r.error
    assert r.attempts == 3 and len(r.raw_texts) == 3 and r.raw_texts[0].startswith("I think")
    sent = [json.dumps(q["messages"]) for q in judge_server.requests]
    assert len(sent) == 3 and len(set(sent)) == 1  # same messages every attempt


def test_label_outside_taxonomy_is_format_error(judge_server):
    r = judge(judge_server, max_attempts=2).label(one("[[outside]]"))
    assert r.status == Status.format_error and "task_type" in r.error
    assert "essay_writing" in r.raw_texts[-1]


def test_truncated_reply_is_not_parsed(judge_server):
    r = judge(judge_server, max_attempts=2).label(one("[[truncated]]"))
    assert r.status == Status.truncated and r.finish_reason == "length" and r.attempts == 2


def test_flaky_reply_recovers_on_second_attempt(judge_server):
    r = judge(judge_server, max_attempts=3).label(one("[[flaky]]"))
    assert r.status == Status.labeled and r.attempts == 2 and r.raw_texts[0].startswith("I think")


def test_server_error_is_judge_error(judge_server):
    r = judge(judge_server).label(one("[[error500]]"))
    assert r.status == Status.judge_error and "500" in r.error and r.labels is None


def test_context_length_400_is_input_too_long_and_not_retried(judge_server):
    r = OpenAIJudge(base_url=judge_server.base_url, model="m", transport_retries=2, max_attempts=3).label(one("[[toolong]]"))
    assert r.status == Status.input_too_long and "maximum context length" in r.error
    assert len(judge_server.requests) == 1


def test_slow_server_times_out_as_judge_error(judge_server):
    r = judge(judge_server, request_timeout_s=0.5).label(one("[[slow]]"))
    assert r.status == Status.judge_error and "Timeout" in r.error


def test_unreachable_server_is_judge_error():
    r = OpenAIJudge(base_url="http://127.0.0.1:9/v1", model="m", transport_retries=0).label(one())
    assert r.status == Status.judge_error and "Connection" in r.error


def test_parse_reply_refuses_text_around_json_and_checks_finish_reason_first():
    model = load_taxonomy().label_model("eval")
    good = {"background_condition": "pure_math", "task_type": "numeric_answer",
            "solving_operations": ["arithmetic"], "output_constraint": "integer"}
    labels, status, _ = parse_reply("Sure! " + json.dumps(good) + " Done.", "stop", model)
    assert status == "format_error" and labels is None  # prose around the object is not a label
    assert parse_reply(json.dumps(good), "stop", model)[:2] == (good, "labeled")
    assert parse_reply(json.dumps(good), "length", model)[1] == "truncated"
    assert parse_reply("   ", "stop", model)[1] == "format_error"
    assert parse_reply("[1, 2]", "stop", model)[1] == "format_error"


def test_judge_spec_validation():
    assert judge_spec() == {"backend": "embedded"}
    assert judge_spec(judge_url="http://x/v1", judge_model="m")["backend"] == "openai"
    with pytest.raises(Exception, match="--judge-model"):
        judge_spec(judge_url="http://x/v1")
    with pytest.raises(Exception, match="allowed: embedded, openai"):
        judge_spec(backend="magic")
    assert make_judge({"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"}).backend == "openai"
