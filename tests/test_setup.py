"""Evaluation set-up per run, read from every results source, and checked before any rule."""

from __future__ import annotations

import json

import pytest

from slicelab.service.comparison import compare
from slicelab.service.errors import ConfigError
from slicelab.service.mapping import diagnose
from slicelab.service.results import load_results
from slicelab.service.setup import compare_setups
from tests.conftest import DATA, run_cli
from tests.loop_data import BBH_OUTPUTS, COT, MATH_OUTPUTS, STRONG, WEAK, bbh_labels, math_labels

DIRECT_OUTPUTS = DATA / "loop" / "bbh_direct_model_outputs.jsonl"
DIRECT = "code-davinci-002:direct"
LM_EVAL = DATA / "lm_eval"


@pytest.fixture(scope="module")
def cot_direct():
    return load_results([BBH_OUTPUTS, DIRECT_OUTPUTS])


def test_cot_vs_direct_prompting_is_a_set_up_difference_not_a_data_problem(cot_direct):
    assert cot_direct.attrs["setup"] == {COT: {"prompt_template": "cot"}, DIRECT: {"prompt_template": "direct"}}
    cmp = compare(bbh_labels(), cot_direct, COT, DIRECT)
    assert cmp.overall["delta"] < -0.15  # a real drop: 74% -> 52% overall on these items
    result = diagnose(cmp)
    assert result["verdict"] == "non_data" and result["interventions"] == []
    assert result["summary"].startswith("evaluation set-up differs: prompt_template")
    assert '"cot" (baseline) vs "direct" (candidate)' in result["summary"]
    assert result["setup"]["differs"] == [{"field": "prompt_template", "baseline": "cot", "candidate": "direct"}]
    assert [f["id"] for f in result["fired_rules"]] == ["evaluation-setup-differs"]
    assert [c["id"] for c in result["checks"]] == ["evaluation_setup"]
    # the rules were still evaluated; any data rule they fired is suppressed, not proposed
    assert result["rules_evaluated"]
    assert all(s["reason"].startswith("evaluation set-up differs") for s in result["suppressed_rules"]
               if not s["reason"].startswith("non-data verdict"))
    json.dumps(result, allow_nan=False)


def test_ignore_setup_lets_the_rules_decide_and_is_recorded(cot_direct):
    cmp = compare(bbh_labels(), cot_direct, COT, DIRECT)
    result = diagnose(cmp, ignore_setup=["prompt_template"])
    assert result["setup"]["ignored"] == ["prompt_template"] and result["setup"]["differs"] == []
    assert not result["summary"].startswith("evaluation set-up differs")
    assert not any(f["id"] == "evaluation-setup-differs" for f in result["fired_rules"])
    with pytest.raises(ConfigError, match="unknown field.*prompt; allowed: prompt_template"):
        diagnose(cmp, ignore_setup=["prompt"])


def test_same_set_up_changes_nothing():
    """Both MATH-500 runs used qwen25-math-cot greedy: the verdict of the rules stands (a broad regression)."""
    res = load_results([MATH_OUTPUTS])
    assert res.attrs["setup"][STRONG] == res.attrs["setup"][WEAK] == {
        "n_samples": 1, "prompt_template": "qwen25-math-cot", "temperature": 0.0}
    result = diagnose(compare(math_labels(), res, STRONG, WEAK))
    assert result["verdict"] == "broad_regression" and result["setup"]["differs"] == []


def test_slicelab_columns_lm_eval_and_inspect_logs_carry_their_set_up(tmp_path):
    path = tmp_path / "runs.jsonl"
    rows = [{"sample_id": f"s{i}", "run": run, "correct": i % 2 == 0, "output": "So the answer is 1.",
             "max_new_tokens": cap, "temperature": 0.0, "stop": ["\n\nQ:"]}
            for run, cap in (("a", 512), ("b", 256)) for i in range(4)]
    rows.append({**rows[0], "sample_id": "s9", "temperature": 0.7})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    setup = load_results([path]).attrs["setup"]
    assert setup["a"] == {"max_tokens": 512, "stop": ["\n\nQ:"], "temperature": {"mixed": [0.0, 0.7]}}
    diff = compare_setups(setup, "a", "b")
    assert [d["field"] for d in diff["differs"]] == ["max_tokens", "temperature"]

    gsm = load_results(sorted((LM_EVAL / "gsm8k_tinyllama").glob("samples_*.jsonl"))).attrs["setup"]["tinyllama"]
    assert gsm["stop"] == ["Question:", "</s>", "<|im_end|>"] and gsm["do_sample"] is False
    assert gsm["num_fewshot"] == 5 and gsm["prompt_template"].startswith("sha256:")
    assert gsm["extractor"] == "strict-match"
    math = load_results(sorted((LM_EVAL / "math_perturbed_qwen3-93m").glob("samples_*.jsonl"))).attrs["setup"]
    (m,) = math.values()
    assert m["max_tokens"] == 512 and m["stop"] == ["Problem:", "\n\n"] and m["num_fewshot"] == 0

    res = load_results([DATA / "inspect_ai" / "arc_easy_claude-sonnet-4-0.json"])
    assert len(res) == 5 and res["correct"].dtype == bool
    (s,) = res.attrs["setup"].values()
    assert s["n_samples"] == 1 and s["extractor"] == "choice" and s["prompt_template"].startswith("sha256:")


def test_cli_diagnose_names_the_set_up_field_and_records_ignore_setup(tmp_path):
    labels = tmp_path / "bbh_labels.parquet"
    bbh_labels().to_parquet(labels)
    out = tmp_path / "diagnosis.json"
    args = ("diagnose", "--labels", str(labels), "--results", str(BBH_OUTPUTS), "--results", str(DIRECT_OUTPUTS),
            "--baseline", COT, "--candidate", DIRECT, "-o", str(out))
    r = run_cli(*args, timeout_s=180)
    assert r.returncode == 0, r.stderr
    assert "evaluation set-up differs: prompt_template" in r.stdout
    assert 'set-up prompt_template: "cot" (baseline) vs "direct" (candidate)' in r.stdout
    for page in (out.with_suffix(".html"), out.with_suffix(".md")):  # the reports show both set-ups side by side
        text = page.read_text(encoding="utf-8")
        assert "Evaluation set-up" in text and "Fields that differ: prompt_template" in text
    d = json.loads(out.read_text())
    assert d["verdict"] == "non_data" and d["interventions"] == []
    assert "evaluation set-up differs" in (tmp_path / "diagnosis.md").read_text()
    r = run_cli(*args, "--ignore-setup", "prompt_template", timeout_s=180)
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["setup"]["ignored"] == ["prompt_template"]
    assert "set-up fields ignored (--ignore-setup): prompt_template" in r.stdout
    r = run_cli(*args, "--ignore-setup", "prompt", timeout_s=180)
    assert r.returncode == 2 and "allowed: prompt_template" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("compare", *args[1:-2], timeout_s=180)  # compare warns; it gives no verdict
    assert r.returncode == 0, r.stderr
    assert 'evaluation set-up differs: prompt_template "cot" (baseline) vs "direct" (candidate)' in r.stdout


def test_lm_eval_repeats_become_n_samples_when_every_answer_was_kept(tmp_path):
    """A gsm8k log re-run with ``repeats: 3`` and a filter that keeps every answer: each answer is scored
    with the task's exact_match options (the logged metric scores the first), giving n = 3 and c."""
    src = LM_EVAL / "gsm8k_tinyllama"
    (results_file,) = src.glob("results_*.json")
    (samples_file,) = src.glob("samples_*.jsonl")
    results = json.loads(results_file.read_text())
    results["configs"]["gsm8k"]["repeats"] = 3
    (tmp_path / results_file.name).write_text(json.dumps(results))
    recs = [json.loads(line) for line in samples_file.read_text().splitlines()]
    first = recs[0]  # target "... #### 18"
    answers = [["18", "#### 17", "$18."], ["17", "18", "18"], ["[invalid]"] * 3]
    for rec, kept in zip(recs, answers):
        rec["resps"] = [[f"The answer is {a}" for a in kept]]
        rec["filtered_resps"] = kept
        rec["target"] = first["target"]
        rec["exact_match"] = 1.0 if kept[0] == "18" else 0.0
    (tmp_path / samples_file.name).write_text("".join(json.dumps(r) + "\n" for r in recs))
    res = load_results([tmp_path / samples_file.name]).sort_values("source_line")
    # "$18." -> "18" after the task's regexes_to_ignore (",", "\$", "(?s).*#### ", "\.$"); "#### 17" -> "17"
    assert list(zip(res["n_samples"], res["n_correct"], res["correct"])) == [(3, 2, True), (3, 2, False), (3, 0, False)]
    assert res.attrs["setup"]["tinyllama"]["n_samples"] == 3


def test_per_item_values_are_summarised_and_still_compared(tmp_path):
    path = tmp_path / "hashes.jsonl"
    rows = [{"sample_id": f"s{i}", "run": run, "correct": True, "output": "x", "prompt_hash": f"{salt}{i}"}
            for run, salt in (("a", "h"), ("b", "h"), ("c", "k")) for i in range(12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    setup = load_results([path]).attrs["setup"]
    assert setup["a"]["prompt_template"]["mixed_count"] == 12
    assert compare_setups(setup, "a", "b")["differs"] == []
    assert [d["field"] for d in compare_setups(setup, "a", "c")["differs"]] == ["prompt_template"]
