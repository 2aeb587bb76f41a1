"""lm-evaluation-harness logs read as the harness means them: array logs, multiple choice, boolean metrics."""

from __future__ import annotations

import json
from pathlib import Path

from slicelab.service.lm_eval_log import MC_NO_OUTPUT
from slicelab.service.output import read_table
from slicelab.service.readers import detect_format, read_eval_samples
from slicelab.service.samples import EvalSample, Rejected
from tests.conftest import DATA, run_cli

GSM8K = next((DATA / "lm_eval" / "gsm8k_tinyllama").glob("samples_*.jsonl"))


def mc_record(doc_id: int, lls: list[float], target: int, acc) -> dict:
    """An arc_easy-style multiple-choice record as lm_eval 0.4 writes it (stringified log-likelihood pairs)."""
    options = [" Paris", " Rome", " Berlin", " Madrid"][: len(lls)]
    ctx = f"Question: What is the capital of country {doc_id}?\nAnswer:"
    return {
        "doc_id": doc_id,
        "doc": {"id": f"Q{doc_id}", "question": f"What is the capital of country {doc_id}?",
                "choices": {"text": [o.strip() for o in options], "label": list("ABCD")[: len(lls)]},
                "answerKey": "ABCD"[target]},
        "target": target,
        "arguments": {f"gen_args_{i}": {"arg_0": ctx, "arg_1": o} for i, o in enumerate(options)},
        "resps": [[[str(ll), "False"]] for ll in lls],
        "filtered_resps": [[str(ll), "False"] for ll in lls],
        "filter": "none", "metrics": ["acc", "acc_norm"], "doc_hash": "d", "prompt_hash": "p", "target_hash": "t",
        "acc": acc, "acc_norm": acc,
    }


def test_multiple_choice_answer_is_the_argmax_option_and_there_is_no_output_to_judge(tmp_path: Path):
    path = tmp_path / "samples_arc_easy_2025-01-01T00-00-00.123456.jsonl"
    recs = [mc_record(0, [-1.25, -0.5, -3.0, -2.0], 1, 1.0), mc_record(1, [-0.25, -4.0, -3.5, -2.0], 2, 0.0)]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    right, wrong = list(read_eval_samples(path))
    assert right.model_output is None and right.extracted_answer == "1" and right.correct is True
    assert wrong.model_output is None and wrong.extracted_answer == "0" and wrong.correct is False
    assert wrong.extra["chosen_option"] == "Paris" and wrong.extra["chosen_index"] == 0
    assert wrong.extra["option_loglikelihoods"] == [-0.25, -4.0, -3.5, -2.0]
    assert wrong.extra["response_type"] == "loglikelihood"
    assert not wrong.scored_wrong  # no failure-mode judging without generated text


def test_true_false_metric_strings_are_scores_and_bad_values_are_rejected_by_name(tmp_path: Path):
    path = tmp_path / "samples_boolq_2025-01-01T00-00-00.jsonl"
    recs = [mc_record(0, [-1.0, -2.0], 0, "True"), mc_record(1, [-1.0, -2.0], 1, "False"),
            mc_record(2, [-1.0, -2.0], 1, "maybe")]
    path.write_text("".join(json.dumps(r) + "\n" for r in recs))
    a, b, c = list(read_eval_samples(path))
    assert (a.correct, b.correct) == (True, False)
    assert isinstance(c, Rejected) and "metric 'acc' has value 'maybe'" in c.reason and "true/false" in c.reason


def test_a_log_saved_as_a_json_array_is_read_as_the_log_it_is(tmp_path: Path):
    records = [json.loads(line) for line in GSM8K.read_text().splitlines() if line.strip()]
    as_jsonl = list(read_eval_samples(GSM8K))
    for name, text in (("samples_gsm8k_2025-04-30T18-24-41.082644.json", json.dumps(records, indent=2)),
                       ("samples_gsm8k_2025-04-30T18-24-41.082644.jsonl", json.dumps(records)),
                       ("gsm8k_log.json", json.dumps(records, indent=2))):
        path = tmp_path / name
        path.write_text(text)
        assert detect_format(path) == "lm_eval"
        got = list(read_eval_samples(path))
        assert all(isinstance(s, EvalSample) for s in got) and len(got) == len(as_jsonl)
        named = name.startswith("samples_gsm8k_")  # the task comes from the file name
        assert [s.id for s in got] == [s.id if named else s.id.replace("gsm8k/", "gsm8k_log/", 1) for s in as_jsonl]
        assert [(s.model_output, s.extracted_answer, s.correct) for s in got] == \
               [(s.model_output, s.extracted_answer, s.correct) for s in as_jsonl]


def test_cli_labels_multiple_choice_without_a_failure_mode_and_says_why(tmp_path: Path, redis_url, judge_server):
    path = tmp_path / "samples_arc_easy_2025-01-01T00-00-00.json"
    recs = [mc_record(0, [-1.25, -0.5, -3.0, -2.0], 1, 1.0), mc_record(1, [-0.25, -4.0, -3.5, -2.0], 2, 0.0)]
    path.write_text(json.dumps(recs, indent=2))
    out = tmp_path / "labels.parquet"
    r = run_cli("label-benchmark", str(path), "-o", str(out), "--judge-url", judge_server.base_url,
                "--judge-model", "m", timeout_s=180)
    assert r.returncode == 0, r.stderr
    df = read_table(out).set_index("id")
    assert set(df["status"]) == {"labeled"}
    wrong = df.loc["arc_easy/1/none"]
    assert wrong["failure_mode"] is None and wrong["failure_mode_source"] == MC_NO_OUTPUT
    assert wrong["extracted_answer"] == "0" and wrong["model_output"] is None
    asked = [q["response_format"]["json_schema"]["schema"]["properties"] for q in judge_server.requests]
    assert all("failure_mode" not in p for p in asked)  # never asked for a failure mode
