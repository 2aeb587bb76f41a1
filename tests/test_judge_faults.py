"""A misbehaving OpenAI-compatible judge server: hedged prose, context overflow, malformed 200s, cut replies."""

from __future__ import annotations

import json

import pytest

from slicelab.service.judge import parse_reply
from slicelab.service.judge.openai_backend import OpenAIJudge
from slicelab.service.output import read_table
from slicelab.service.samples import Status
from slicelab.service.taxonomy import load_taxonomy
from tests.conftest import make_samples, run_cli

GOOD = {"background_condition": "pure_math", "task_type": "numeric_answer",
        "solving_operations": ["arithmetic"], "output_constraint": "integer"}


def judge(server, **kw) -> OpenAIJudge:
    return OpenAIJudge(base_url=server.base_url, model="test-judge", **({"transport_retries": 0} | kw))


def both_paths(j: OpenAIJudge, marker: str, n: int = 2):
    """The same items through the sync path (one by one) and the async path (label_many)."""
    items = make_samples(n, marker=marker)
    return [j.label(items[0])] + j.label_many(items)


def test_parse_reply_takes_only_a_whole_json_object_optionally_fenced():
    model = load_taxonomy().label_model("eval")
    assert parse_reply(json.dumps(GOOD), "stop", model)[:2] == (GOOD, "labeled")
    assert parse_reply(f"```json\n{json.dumps(GOOD)}\n```", "stop", model)[:2] == (GOOD, "labeled")
    assert parse_reply(f"```\n{json.dumps(GOOD, indent=2)}\n```\n", "stop", model)[:2] == (GOOD, "labeled")
    for hedged in (f"One option could be {json.dumps(GOOD)} but maybe it is everyday_world",
                   "Sure! " + json.dumps(GOOD), json.dumps(GOOD) + " Done.",
                   f"```json\n{json.dumps(GOOD)}\n``` or maybe not"):
        labels, status, error = parse_reply(hedged, "stop", model)
        assert (labels, status) == (None, "format_error") and "whole reply must be one JSON object" in error


def test_hedged_prose_is_a_format_error_on_both_paths_and_a_fence_is_labeled(judge_server):
    for r in both_paths(judge(judge_server, max_attempts=2), "[[hedged]]"):
        assert r.status == Status.format_error and r.labels is None and r.attempts == 2
        assert r.raw_texts[0].startswith("One option could be {") and "text around the JSON object" in r.error
    for r in both_paths(judge(judge_server), "[[fenced]]"):
        assert r.status == Status.labeled and r.labels["task_type"] == "binary_judgment"


@pytest.mark.parametrize("marker,status_code,words", [
    ("[[ctx_llamacpp]]", 400, "exceeds the available context size"),
    ("[[ctx_llamacpp_py]]", 500, "exceed context window"),
])
def test_llama_cpp_context_overflow_is_input_too_long_and_sent_once(judge_server, marker, status_code, words):
    j = judge(judge_server, transport_retries=3, max_attempts=3)
    results = both_paths(j, marker)
    for r in results:
        assert r.status == Status.input_too_long and r.attempts == 1
        assert words in r.error and f"({status_code})" in r.error
    assert len(judge_server.requests) == len(results)  # never retried


def test_a_cut_question_is_recorded_on_its_row(tmp_path, redis_url, judge_server):
    long_q = "Compute the sum. " + "x" * 400_000
    rows = [{"id": "long", "question": long_q}, {"id": "short", "question": "What is 2 + 2?"},
            {"id": "ctx", "question": "Q [[ctx_llamacpp_py]]"}]
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "labels.parquet"
    args = ("label-benchmark", str(inp), "-o", str(out), "--judge-url", judge_server.base_url, "--judge-model", "m")
    r = run_cli(*args, timeout_s=180)
    assert r.returncode == 0, r.stderr
    df = read_table(out).set_index("id")
    assert df.at["long", "input_truncated"] and df.at["long", "input_chars_kept"] == 4000
    assert not df.at["short", "input_truncated"] and df.at["short", "input_chars_kept"] == len("What is 2 + 2?")
    assert df.at["ctx", "status"] == "input_too_long"
    sent = len(judge_server.requests)
    r = run_cli(*args, timeout_s=180)  # a re-run redoes judge errors, never input_too_long
    assert r.returncode == 0, r.stderr
    assert len(judge_server.requests) == sent


@pytest.mark.parametrize("marker,what", [("[[html200]]", "the body is not JSON (an HTML page)"),
                                         ("[[nochoices]]", "'choices' is empty")])
def test_malformed_200_keeps_the_body_says_why_and_counts_the_attempt(judge_server, marker, what):
    for r in both_paths(judge(judge_server), marker):
        assert r.status == Status.judge_error and r.attempts == 1 and r.labels is None
        assert r.error == f"judge server: HTTP 200 reply is not a chat completion ({what})"
        assert "Traceback" not in r.error
        assert ("502 Bad Gateway" if marker == "[[html200]]" else '"choices":[]') in r.raw_texts[0]


def test_malformed_200s_in_a_chunk_are_not_resent_item_by_item(tmp_path, redis_url, judge_server):
    items = make_samples(8) + make_samples(4, marker="[[html200]]") + make_samples(4, marker="[[nochoices]]")
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": f"s{i}", "question": s.question}) + "\n" for i, s in enumerate(items)))
    out = tmp_path / "labels.parquet"
    r = run_cli("label-benchmark", str(inp), "-o", str(out), "--chunk-size", "16", "--judge-url",
                judge_server.base_url, "--judge-model", "m", timeout_s=180)
    assert r.returncode == 0, r.stderr
    df = read_table(out)
    assert len(judge_server.requests) == 16  # one request per item, none resent
    bad = df[df["status"] == "judge_error"]
    assert len(bad) == 8 and (bad["judge_attempts"] == 1).all()
    assert bad["judge_raw_output"].map(len).eq(1).all() and (df["status"] == "labeled").sum() == 8


def test_a_cut_reply_is_asked_once_more_with_twice_the_budget(judge_server):
    j = judge(judge_server, max_attempts=3)
    for r in both_paths(j, "[[budget]]"):
        assert r.status == Status.labeled and r.attempts == 2 and r.max_tokens == 320
    assert sorted(q["max_tokens"] for q in judge_server.requests) == [160] * 3 + [320] * 3  # concurrent: any order
    judge_server.requests.clear()
    for r in both_paths(j, "[[truncated]]"):  # cut whatever the budget: truncated after the doubled retry
        assert r.status == Status.truncated and r.attempts == 2 and r.max_tokens == 320
        assert "twice the budget (320 tokens)" in r.error
    assert sorted(q["max_tokens"] for q in judge_server.requests) == [160] * 3 + [320] * 3  # concurrent: any order


def test_the_doubled_budget_is_a_row_column(tmp_path, redis_url, judge_server):
    inp = tmp_path / "in.jsonl"
    inp.write_text(json.dumps({"id": "a", "question": "Q [[budget]]"}) + "\n"
                   + json.dumps({"id": "b", "question": "Q"}) + "\n")
    out = tmp_path / "labels.jsonl"
    r = run_cli("label-benchmark", str(inp), "-o", str(out), "--judge-url", judge_server.base_url,
                "--judge-model", "m", timeout_s=180)
    assert r.returncode == 0, r.stderr
    df = read_table(out).set_index("id")
    assert df.at["a", "judge_max_tokens"] == 320 and df.at["a", "judge_attempts"] == 2
    assert df.at["b", "judge_max_tokens"] == 160 and set(df["status"]) == {"labeled"}
