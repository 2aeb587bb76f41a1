"""Run comparison on real outputs: paired per-slice change, spread, failure modes; the CLI end to end."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from slicelab.service.comparison import UNCLASSIFIED, classify_failure, compare
from slicelab.service.errors import ConfigError
from slicelab.service.mapping import diagnose
from slicelab.service.results import load_results
from tests.conftest import run_cli
from tests.loop_data import COT, MATH_OUTPUTS, STRONG, WEAK, bbh_labels, doc_labels, math_labels, truncated_bbh
from tests.verdict_data import math_subject_candidate


@pytest.fixture(scope="module")
def truncated(tmp_path_factory):
    path, run = truncated_bbh(tmp_path_factory.mktemp("bbh") / "bbh_truncated.jsonl")
    return path, run, load_results([path])


def test_truncated_outputs_rule_the_data_out(truncated):
    """30% of real BBH CoT outputs, spread over every task, cut off before the answer: not a data problem."""
    _, run, res = truncated
    cmp = compare(bbh_labels(), res, COT, run)
    fm = cmp.failure_modes
    assert fm["n_newly_failing"] == cmp.overall["n10"] > 200
    assert fm["shares"]["non_termination"] == 1.0
    assert fm["checks"] == {"finish_reason=length, no final answer": fm["n_newly_failing"]}
    spread = cmp.spread["capability"]
    assert spread["share_slices_significant_drop"] >= 0.5 and spread["n_tested"] >= 10
    assert cmp.overall["n01"] == 0 and cmp.overall["delta"] < -0.15

    result = diagnose(cmp)
    assert result["verdict"] == "non_data"
    assert result["interventions"] == []
    assert result["fired_rules"][0]["id"] == "training-decoding-issue"
    assert all(f["kind"] == "non_data" for f in result["fired_rules"])
    assert {c["id"] for c in result["checks"]} >= {"eos_loss_mask", "stop_tokens", "chat_template", "answer_extraction"}
    # the slices dropped significantly, but evenly: none is a localised weakness, so no data rule fires
    assert result["localisation"]["dropped_not_localised"] and not result["localisation"]["standing_out"]
    assert result["weak_slices"] == {} and result["suppressed_rules"] == []
    json.dumps(result, allow_nan=False)


def test_compare_counts_and_intervals_on_real_math_outputs():
    labels, res = math_labels(), load_results([MATH_OUTPUTS])
    cmp = compare(labels, res, STRONG, WEAK)
    wide = res.pivot(index="sample_id", columns="run", values="correct")
    o = cmp.overall
    assert o["n"] == 300 and o["n10"] == int((wide[STRONG] & ~wide[WEAK]).sum())
    assert o["n01"] == int((~wide[STRONG] & wide[WEAK]).sum())
    assert o["baseline_pass"] == pytest.approx(wide[STRONG].mean())
    assert o["delta_ci_low"] < o["delta"] < o["delta_ci_high"] < 0
    s = cmp.slices
    assert (s["n"] == s[["n11", "n10", "n01", "n00"]].sum(axis=1)).all()
    assert (s["low_support"] == (s["n"] < 10)).all() and not s.loc[s["low_support"], "significant_drop"].any()
    assert s.loc[s["significant_drop"], "delta"].lt(0).all()
    # gemma's new failures all stopped with a boxed answer: no deterministic check applies
    assert cmp.failure_modes["counts"] == {UNCLASSIFIED: cmp.failure_modes["n_newly_failing"]}
    json.dumps(cmp.to_dict(), allow_nan=False)


def test_compare_refuses_unknown_or_equal_runs():
    labels, res = math_labels(), load_results([MATH_OUTPUTS])
    with pytest.raises(ConfigError, match="runs present: .*gemma"):
        compare(labels, res, STRONG, "nope")
    with pytest.raises(ConfigError, match="same run"):
        compare(labels, res, STRONG, STRONG)


def test_classify_failure_checks_win_in_order():
    assert classify_failure("", "stop") == ("refusal_or_empty", "empty output")
    assert classify_failure("Let me think" * 3, "length")[0] == "non_termination"
    assert classify_failure("We compute the sum. " * 20, "stop")[0] == "non_termination"  # repetition
    assert classify_failure("I think it is 5", "stop") == ("format_violation", "no final answer")
    assert classify_failure("So the answer is 5.", "stop", "5") == (UNCLASSIFIED, "none")
    assert classify_failure("So the answer is 5.", "stop", "5", "calculation_error") == ("calculation_error", "labels")
    assert classify_failure("The answer is \\boxed{5}", None, None, "wrong_reasoning")[0] == "wrong_reasoning"


def test_label_failure_mode_is_used_only_for_the_labeled_output():
    labels = math_labels().copy()
    res = load_results([MATH_OUTPUTS])
    cand = res[res["run"] == WEAK].set_index("sample_id")
    base = res[res["run"] == STRONG].set_index("sample_id")
    lost = [i for i in cand.index if base.at[i, "correct"] and not cand.at[i, "correct"]]
    first, second = lost[0], lost[1]
    pos = labels.index[labels["id"] == first][0]
    labels.at[pos, "failure_mode"], labels.at[pos, "model_output"] = "calculation_error", cand.at[first, "output"]
    pos = labels.index[labels["id"] == second][0]
    labels.at[pos, "failure_mode"], labels.at[pos, "model_output"] = "knowledge_gap", "another output"
    cmp = compare(labels, res, STRONG, WEAK)
    got = cmp.newly_failing.set_index("sample_id")["failure_mode"]
    assert got[first] == "calculation_error" and got[second] == UNCLASSIFIED


def test_cli_compare_diagnose_sample_end_to_end(tmp_path):
    labels = tmp_path / "math_labels.parquet"
    math_labels().to_parquet(labels)
    docs = tmp_path / "docs.parquet"
    doc_labels().to_parquet(docs)

    r = run_cli("compare", "--labels", str(labels), "--results", str(MATH_OUTPUTS), "--baseline", STRONG,
                "--candidate", WEAK, "-o", str(tmp_path / "cmp.json"), timeout_s=120)
    assert r.returncode == 0, r.stderr
    assert "shared samples" in r.stdout and "drop" in r.stdout
    cmp = json.loads((tmp_path / "cmp.json").read_text())
    assert cmp["overall"]["n"] == 300 and cmp["slices"]
    page = (tmp_path / "cmp.html").read_text()
    assert page.count("data:image/png;base64,") == 2 and "<style>" in page
    assert not re.search(r"""(src|href)=["']https?:""", page) and "<script" not in page
    assert "| slice |" in (tmp_path / "cmp.md").read_text()

    r = run_cli("diagnose", "--labels", str(labels), "--results", str(MATH_OUTPUTS), "--baseline", STRONG,
                "--candidate", WEAK, "-o", str(tmp_path / "broad.json"), timeout_s=120)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "broad.json").read_text())["verdict"] == "broad_regression"
    assert "weaker across the board" in r.stdout

    # a candidate that loses only the Algebra problems: localised, data rules fire
    one = math_subject_candidate(tmp_path / "one_subject.jsonl", {"Algebra"}, run="one-subject")
    diag = tmp_path / "diagnosis.json"
    r = run_cli("diagnose", "--labels", str(labels), "--results", str(one), "--baseline", STRONG,
                "--candidate", "one-subject", "-o", str(diag), timeout_s=120)
    assert r.returncode == 0, r.stderr
    d = json.loads(diag.read_text())
    assert d["verdict"] == "data_intervention" and d["fired_rules"] and d["interventions"]
    assert {"verdict", "fired_rules", "interventions"} <= set(d)
    assert (tmp_path / "diagnosis.html").exists() and (tmp_path / "diagnosis.md").exists()

    manifest = tmp_path / "manifest.jsonl"
    r = run_cli("sample", "--docs", str(docs), "--diagnosis", str(diag), "--budget-tokens", "1500",
                "-o", str(manifest), timeout_s=120)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert rows and sum(x["tokens"] for x in rows) <= 1500
    assert set(rows[0]) >= {"doc_id", "weight", "rule_id", "matched_operations", "tokens"}
    summary = json.loads((tmp_path / "manifest.summary.json").read_text())
    assert summary["tokens_selected"] == sum(x["tokens"] for x in rows)
    assert set(summary["mixture"]["before"]) == {"tokens", "domain", "document_format", "operation"}
    assert "Token share by operation" in (tmp_path / "manifest.summary.md").read_text()

    # errors name what is wrong and what is allowed
    r = run_cli("compare", "--labels", str(labels), "--results", str(MATH_OUTPUTS), "--baseline", STRONG,
                "--candidate", "no-such-run", timeout_s=120)
    assert r.returncode == 2 and "runs present" in r.stderr


def test_cli_slices_with_results_keeps_the_plain_mode(tmp_path):
    labels = tmp_path / "labels.parquet"
    math_labels().to_parquet(labels)
    r = run_cli("slices", str(labels), "-o", str(tmp_path / "plain.json"), timeout_s=120)
    assert r.returncode == 0, r.stderr
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert "run" not in plain["slices"][0] and plain["axes_used"]
    r = run_cli("slices", str(labels), "-o", str(tmp_path / "runs.json"), "--results", str(MATH_OUTPUTS),
                "--run", WEAK, "--report-dir", str(tmp_path / "rep"), timeout_s=120)
    assert r.returncode == 0, r.stderr
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert runs["runs"] == [WEAK] and {s["run"] for s in runs["slices"]} == {WEAK}
    assert {s["key"] for s in runs["slices"]} == {"capability", "combination", "marginal"}
    assert "data:image/png;base64," in (tmp_path / "rep" / "slices.html").read_text()
    # ungated labels: every axis left out unless --allow-ungated, which is recorded
    ungated = tmp_path / "ungated.parquet"
    df = math_labels().copy()
    df[[c for c in df.columns if c.startswith("gate_")]] = "ungated"
    df.to_parquet(ungated)
    assert compare(pd.read_parquet(ungated), load_results([MATH_OUTPUTS]), STRONG, WEAK).slices.empty
    r = run_cli("compare", "--labels", str(ungated), "--results", str(MATH_OUTPUTS), "--baseline", STRONG,
                "--candidate", WEAK, "-o", str(tmp_path / "u.json"), "--allow-ungated", timeout_s=120)
    meta = json.loads((tmp_path / "u.json").read_text())["meta"]
    assert meta["allow_ungated"] and len(meta["ungated_axes_used"]) == 4
    assert r.returncode == 0 and "--allow-ungated" in r.stdout
