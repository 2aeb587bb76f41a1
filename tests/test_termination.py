"""Termination checks that do not depend on an answer marker, on real BBH and Sky-T1 outputs."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from slicelab.service.checks import FAILURE_DETAILS, classify_output, failure_check, repeated_suffix, tail_compression_ratio
from slicelab.service.comparison import compare
from slicelab.service.mapping import diagnose, load_rules
from slicelab.service.results import load_results
from slicelab.service.samples import EvalSample
from slicelab.service.termination import length_capped
from tests.conftest import DATA
from tests.loop_data import BBH_OUTPUTS, COT, bbh_labels
from tests.runon_data import runon_bbh

SKY_T1 = DATA / "sky_t1" / "aime2024_long_cot_checkpoints.jsonl"


@pytest.fixture(scope="module", params=[True, False], ids=["finish_reason", "no_finish_reason"])
def runon(request, tmp_path_factory):
    path, run = runon_bbh(tmp_path_factory.mktemp("bbh") / "bbh_runon.jsonl", finish_reason=request.param)
    return request.param, path, run, load_results([path])


def test_answer_then_runon_is_not_a_data_problem(runon):
    """Right answers followed by an invented next turn up to a length limit: non_data naming EOS and stop tokens."""
    with_finish, _, run, res = runon
    assert ("finish_reason" in res) and res["finish_reason"].notna().any() == with_finish
    cmp = compare(bbh_labels(), res, COT, run)
    fm = cmp.failure_modes
    assert fm["n_newly_failing"] >= 100
    assert fm["detail_counts"]["answer_then_runon"] == fm["n_newly_failing"]
    assert fm["shares"]["non_termination"] == 1.0
    newly = cmp.newly_failing
    assert list(newly.columns) == ["sample_id", "failure_mode", "failure_mode_detail", "check", "excerpt"]
    assert newly["check"].str.contains("new turn 'Q:'").all()
    result = diagnose(cmp)
    assert result["verdict"] == "non_data" and result["interventions"] == []
    assert result["fired_rules"][0]["id"] == "answer-then-runon"
    assert {"eos_loss_mask", "stop_tokens"} <= {c["id"] for c in result["checks"]}
    assert "end-of-sequence" in result["summary"] and "loss mask" in result["summary"]
    evidence = result["fired_rules"][0]["conditions"][0]["evidence"]
    assert evidence["details"] == ["answer_then_runon"] and evidence["share"] == 1.0
    # the evidence quotes example samples: the answer, then the invented turn
    assert len(evidence["examples"]) == 3
    for ex in evidence["examples"]:
        assert ex["sample_id"] in set(newly["sample_id"]) and "So the answer is" in ex["excerpt"]
        assert "\n\nQ: " in ex["excerpt"]
    json.dumps(result, allow_nan=False)


def test_a_character_cap_is_inferred_from_the_length_spike(tmp_path):
    """Run-on outputs cut at one character limit, with no "Q:"/"A:" labels and no finish_reason: the spike
    at the longest length marks exactly them, and the check calls them run-ons at the inferred cap."""
    path, run = runon_bbh(tmp_path / "runon.jsonl", finish_reason=False, char_cap=True, markers=False)
    res = load_results([path])
    cand = res[res["run"] == run].set_index("sample_id")
    base = res[res["run"] == COT].set_index("sample_id")
    runon_ids = cand.index[cand["output"] != base.loc[cand.index, "output"]]
    capped, evidence = length_capped(cand)
    assert evidence["method"] == "length_spike" and evidence["max_chars"] == cand["output_chars"].max()
    assert capped[runon_ids].all()
    natural = capped.drop(runon_ids).astype(bool)  # the few natural outputs as long as the cap count as cut too
    assert natural.sum() <= 5 and (cand.loc[natural[natural].index, "output_chars"] >= evidence["threshold_chars"]).all()
    cmp = compare(bbh_labels(), res, COT, run)
    assert cmp.failure_modes["length_cap"]["method"] == "length_spike"
    newly = cmp.newly_failing.set_index("sample_id")
    assert (newly["failure_mode_detail"] == "answer_then_runon").mean() > 0.9
    assert newly["check"].str.contains(r"length cap \(inferred\), \d+ characters after the final answer").mean() > 0.9
    result = diagnose(cmp)
    assert result["verdict"] == "non_data" and result["fired_rules"][0]["id"] == "answer-then-runon"


def test_natural_runs_show_no_length_spike():
    """The real CoT run (no cap reached) gets no inferred cap: nothing is called non_termination for its length."""
    res = load_results([BBH_OUTPUTS])
    capped, evidence = length_capped(res[res["run"] == COT].assign(finish_reason=None))
    assert evidence["method"] is None and not capped.astype(bool).any()


def test_repetition_of_any_unit_length():
    loop = "Let me recompute the sum of the first two terms of the sequence once more. " * 5
    assert repeated_suffix("Intro. " + loop)[0] == len(loop) // 5
    long_unit = "".join(f"step {i}: carry the digit and add the next column; " for i in range(6))  # ~300 chars
    assert repeated_suffix("We add. " + long_unit * 3 + long_unit[:40])[0] == len(long_unit)
    assert repeated_suffix("A normal sentence that ends. So the answer is 5.") is None
    counting = "".join(f"Now check n = {i}: it does not work. " for i in range(200))  # numbers change: no exact period
    assert repeated_suffix(counting) is None and tail_compression_ratio(counting) < 0.15
    sample = EvalSample(id="x", question="q", model_output="So the answer is 3. " + counting, correct=False)
    assert failure_check(sample).detail == "repetition_loop"


@pytest.mark.parametrize("output,finish,extracted,detail", [
    ("", "stop", None, "empty"),
    ("Step 1, step 2, step", "length", None, "cut_before_answer"),
    ("So the answer is (B).", "length", None, "capped_with_answer"),
    ("So the answer is (B).\n\nQ: Is the following sentence plausible?\nA: Let's think", "stop", None, "answer_then_runon"),
    ("The answer is 4.<|im_end|>\n<|im_start|>user\nNext question", None, None, "answer_then_runon"),
    ("The answer is 4.\n\n### Instruction:\nWrite a poem", None, None, "answer_then_runon"),
    ("So the answer is 7. " + " ".join(f"Next, suppose the {w} box held {i} more marbles than before." for i, w in
                                       enumerate(["red", "blue", "green", "black", "white", "grey"])), "length",
     None, "answer_then_runon"),
    ("I reasoned badly.", "stop", None, "no_final_answer"),
    ("So the answer is (B).<|im_end|>\n", "stop", None, None),  # the stop token kept at the end: a proper stop
    ("So the answer is (B).</s>Q: next", "stop", None, "answer_then_runon"),
])
def test_failure_mode_detail(output, finish, extracted, detail):
    check = classify_output(output, finish, extracted)
    assert check.detail == detail and (detail is None or detail in FAILURE_DETAILS)


# --------------------------------------------------------------------------- Sky-T1 checkpoints


def test_sky_t1_length_cut_outputs_are_non_termination_even_with_an_extracted_answer():
    rows = [json.loads(line) for line in SKY_T1.read_text(encoding="utf-8").splitlines()]
    cut = [r for r in rows if r["finish_reason_inferred"] == "length" and r["extracted_answer"] and not r["correct"]]
    assert len(cut) > 50
    res = load_results([SKY_T1], run_field="model+checkpoint")
    assert (res["finish_reason"] == "length").sum() == sum(r["finish_reason_inferred"] == "length" for r in rows)
    for r in cut:
        check = classify_output(r["output"], r["finish_reason_inferred"], r["extracted_answer"])
        assert check.mode == "non_termination", r["problem_id"]
    details = {classify_output(r["output"], "length", r["extracted_answer"]).detail for r in cut}
    assert details <= {"capped_with_answer", "repetition_loop", "answer_then_runon"} and "capped_with_answer" in details
    # the same outputs without finish_reason: their full lengths (output_chars) spike at the 32,768-token cap
    one = res[res["run"] == "Sky-T1-math-correct-5K-32B (long CoT):21"]
    assert one["output_chars"].max() > 40_000


def test_sky_t1_checkpoints_read_as_repeated_generations_of_one_model():
    res = load_results([SKY_T1], run_field="model", generation_field="checkpoint")
    rows = [json.loads(line) for line in SKY_T1.read_text(encoding="utf-8").splitlines()]
    assert list(res["run"].unique()) == ["Sky-T1-math-correct-5K-32B (long CoT)"]
    assert len(res) == 30 and (res["n_samples"] == 11).all()
    c = pd.DataFrame(rows).groupby("problem_id")["correct"].sum()
    assert res.set_index("sample_id")["n_correct"].to_dict() == c.to_dict()
    assert res["n_correct"].sum() == 109  # 11+10+11+8+9+8+10+10+11+12+9 correct over the 11 checkpoints
    first = {r["problem_id"]: r["correct"] for r in rows if r["checkpoint"] == 21}
    assert res.set_index("sample_id")["correct"].to_dict() == first  # correct = the first generation (step 21)
    assert res.attrs["setup"]["Sky-T1-math-correct-5K-32B (long CoT)"] == {
        "max_tokens": 32768, "n_samples": 1, "prompt_template": "Sky-T1", "temperature": 0.0}


def test_unmarked_repeats_are_refused_and_marked_ones_aggregated(tmp_path):
    from slicelab.service.errors import RecordError

    with pytest.raises(RecordError, match=r"duplicate \(sample_id, run\).*--generation-field FIELD \(e.g. checkpoint\)"):
        load_results([SKY_T1], run_field="model")
    path = tmp_path / "repeats.jsonl"
    rows = [{"sample_id": "p1", "run": "m", "correct": c, "output": "x", "sample_index": i}
            for i, c in enumerate([False, True, True])]
    rows += [{"sample_id": "p2", "run": "m", "correct": True, "output": "y"},
             {"sample_id": "p2", "run": "m", "correct": False, "output": "z"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(RecordError, match="duplicate"):
        load_results([path])
    res = load_results([path], aggregate_repeats=True).set_index("sample_id")
    assert (res.at["p1", "n_samples"], res.at["p1", "n_correct"], res.at["p1", "correct"]) == (3, 2, False)
    assert (res.at["p2", "n_samples"], res.at["p2", "n_correct"], res.at["p2", "output"]) == (2, 1, "y")
    rows.append({"sample_id": "p1", "run": "m", "correct": True, "output": "x", "sample_index": 1})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rejects: list = []
    load_results([path], aggregate_repeats=True, rejects=rejects)
    assert [r["line"] for r in rejects] == [6] and "duplicate generation 1" in rejects[0]["reason"]


def test_rules_accept_details_and_refuse_unknown_ones(tmp_path):
    import yaml

    from slicelab.service.errors import ConfigError
    from slicelab.service.mapping import DEFAULT_RULES

    data = yaml.safe_load(DEFAULT_RULES.read_text())
    (rule,) = [r for r in data["rules"] if r["id"] == "answer-then-runon"]
    assert rule["when"][0]["details"] == ["answer_then_runon"]
    rule["when"][0]["details"] = ["runaway"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(ConfigError, match="failure_mode_share.details: unknown label 'runaway'; allowed: empty"):
        load_rules(path)


def test_sky_t1_length_spike_without_finish_reason_marks_only_cut_outputs():
    """Without any finish_reason, the spike finds the 32,768-token cap in the checkpoints where several
    generations hit it, and every output it marks is one the source inferred as cut by length."""
    res = load_results([SKY_T1], run_field="model+checkpoint")
    found = {}
    for run, g in res.groupby("run"):
        capped, evidence = length_capped(g.assign(finish_reason=None))
        marked = g.loc[capped.astype(bool)]
        assert (marked["finish_reason"] == "length").all(), run
        if evidence["method"] == "length_spike":
            found[run.rsplit(":", 1)[1]] = int(len(marked))
    assert found == {"84": 3, "105": 5, "133": 4}
