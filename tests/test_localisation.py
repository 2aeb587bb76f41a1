"""Localisation on real BBH outputs: broad vs localised regressions, unexplained drops, MDE, the join.

Candidates are built from the real code-davinci-002 CoT outputs (tests/verdict_data.py): a lost
sample keeps its real reasoning and ends with a wrong, complete answer.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import yaml
from scipy.stats import chi2_contingency, fisher_exact, norm

from slicelab.service.comparison import compare
from slicelab.service.errors import ConfigError
from slicelab.service.mapping import DEFAULT_RULES, diagnose, load_rules
from slicelab.service.results import load_results
from slicelab.service.stats import mde_paired
from tests.conftest import run_cli
from tests.loop_data import BBH_OUTPUTS, COT, MATH_OUTPUTS, STRONG, WEAK, bbh_labels, math_labels
from tests.verdict_data import bbh_candidate

STATE_TASKS = "tracking_shuffled_objects"


@pytest.fixture(scope="module")
def uniform(tmp_path_factory):
    """Half of the baseline-correct answers of every BBH task made wrong, at random."""
    path = bbh_candidate(tmp_path_factory.mktemp("u") / "uniform.jsonl", lambda r, rng: rng.random() < 0.5,
                         run="uniform")
    return compare(bbh_labels(), load_results([path]), COT, "uniform")


@pytest.fixture(scope="module")
def concentrated(tmp_path_factory):
    """80% of the baseline-correct answers of the three shuffled-objects tracking tasks made wrong, nothing else."""
    path = bbh_candidate(tmp_path_factory.mktemp("c") / "concentrated.jsonl",
                         lambda r, rng: r["task"].startswith(STATE_TASKS) and rng.random() < 0.8, run="concentrated")
    return path, compare(bbh_labels(), load_results([path]), COT, "concentrated")


def test_wrong_answers_spread_over_every_task_are_a_broad_regression(uniform):
    result = diagnose(uniform)
    assert result["verdict"] == "broad_regression"
    assert result["interventions"] == [] and not any(f["kind"] == "data" for f in result["fired_rules"])
    assert uniform.overall["n10"] > 350 and uniform.overall["p_value"] < 1e-50
    # every slice of the tested families lost at about the same rate
    loc = result["localisation"]
    assert not loc["localised"] and loc["standing_out"] == [] and len(loc["dropped_not_localised"]) > 10
    tested = [h for h in loc["heterogeneity"] if h["p_value"] is not None]
    assert tested and all(h["p_value"] > 0.05 for h in tested)
    assert "weaker across the board" in result["summary"] and "chi2=" in result["summary"]


def test_heterogeneity_and_loss_tests_match_scipy_by_hand(uniform):
    s = uniform.slices[uniform.slices["tested"]]
    o = uniform.overall
    r = s.iloc[0]
    table = [[r["n10"], r["n11"]], [o["n10"] - r["n10"], o["n11"] - r["n11"]]]
    assert r["loss_p"] == pytest.approx(fisher_exact(table, alternative="greater").pvalue)
    assert r["loss_rate"] == pytest.approx(r["n10"] / (r["n10"] + r["n11"]))
    cap = uniform.slices[uniform.slices["key"] == "capability"]
    rows = [[a, b] for a, b in zip(cap.loc[cap["tested"], "n10"], cap.loc[cap["tested"], "n11"]) if a + b]
    rest = cap[~cap["tested"]]
    if int(rest["n10"].sum() + rest["n11"].sum()):
        rows.append([rest["n10"].sum(), rest["n11"].sum()])
    het = next(h for h in uniform.heterogeneity if h["family"] == "capability")
    chi = chi2_contingency(np.array(rows, dtype=float), correction=False)
    assert het["chi2"] == pytest.approx(chi.statistic) and het["p_value"] == pytest.approx(chi.pvalue)
    assert het["dof"] == len(rows) - 1


def test_wrong_answers_in_one_operations_tasks_target_that_operation_only(concentrated):
    _, cmp = concentrated
    result = diagnose(cmp)
    assert result["verdict"] == "data_intervention"
    assert [i["rule_id"] for i in result["interventions"]] == ["op-state-tracking"]
    assert {op for i in result["interventions"] for op in i["operations"]} == {"state_tracking"}
    weak = result["weak_slices"]
    assert "marginal:primary_operation=state_tracking" in {s["slice_id"] for s in weak["marginal"]}
    for s in (s for ss in weak.values() for s in ss):
        assert s["localised"] and s["loss_rate"] > 0.15 and s["loss_rate_outside"] == 0.0
        assert s["examples"] and all(x["sample_id"].startswith(STATE_TASKS) for x in s["examples"])
        x = s["examples"][0]
        assert x["candidate_output_tail"].endswith(f"So the answer is {x['candidate_answer']}.")
        assert len(x["baseline_output_tail"]) <= 301
    assert "The drop is localised" in result["localisation"]["statement"]


def test_overwhelming_drop_without_a_matching_rule_is_unexplained(concentrated, tmp_path):
    _, cmp = concentrated
    data = yaml.safe_load(DEFAULT_RULES.read_text())
    data["rules"] = [r for r in data["rules"] if r["id"] != "op-state-tracking"]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = diagnose(cmp, load_rules(path))
    assert result["verdict"] == "unexplained_regression" and result["interventions"] == []
    assert cmp.overall["p_value"] < 1e-20
    missing = " ".join(result["explanation"]["missing"])
    assert "no matching data rule" in missing and "marginal:primary_operation=state_tracking" in missing
    assert result["summary"].count("Unexplained regression") == 1


def test_drop_with_the_operation_axis_gated_out_is_unexplained(concentrated):
    path, _ = concentrated
    labels = bbh_labels().copy()
    labels["gate_solving_operations"] = "fail"
    result = diagnose(compare(labels, load_results([path]), COT, "concentrated"))
    assert result["verdict"] == "unexplained_regression"
    assert any("operation axis is not usable (solving_operations gate: fail)" in m
               for m in result["explanation"]["missing"])
    cal = {a["axis"]: a for a in result["evidence"]["calibration"]["axes"]}
    assert cal["primary_operation"]["gate"] == "fail" and not cal["primary_operation"]["used"]
    assert cal["task_type"]["used"] and cal["task_type"]["labelers"]


def test_small_change_is_insufficient_evidence_with_the_minimum_detectable_effect(tmp_path):
    path = bbh_candidate(tmp_path / "small.jsonl", lambda r, rng: r["task"] == "navigate" and rng.random() < 0.1,
                         run="small")
    cmp = compare(bbh_labels(), load_results([path]), COT, "small")
    result = diagnose(cmp)
    assert result["verdict"] == "insufficient_evidence" and cmp.overall["p_value"] >= 0.05
    mde = result["explanation"]["mde"]
    assert "Connor (1987)" in mde["method"] and mde["power"] == 0.8
    assert [x["which"] for x in mde["slices"]] == ["smallest", "median", "largest"]
    smallest = mde["slices"][0]
    assert smallest["mde"] is None or smallest["mde"] > mde["overall"]["mde"]
    assert "smallest detectable change" in result["summary"]


@pytest.mark.parametrize("n,psi", [(300, 0.3), (50, 0.2), (1080, 0.05)])
def test_mde_solves_connors_sample_size_formula(n, psi):
    d = mde_paired(n, psi)
    za, zb = norm.ppf(0.975), norm.ppf(0.8)
    assert (za * math.sqrt(psi) + zb * math.sqrt(psi - d * d)) ** 2 / d ** 2 == pytest.approx(n, rel=1e-6)
    assert mde_paired(5, 0.01) is None
    with pytest.raises(ValueError):
        mde_paired(0, 0.1)


def test_results_that_match_no_label_stop_with_the_join_report(tmp_path):
    rows = [json.loads(x) for x in MATH_OUTPUTS.read_text().splitlines()]
    path = tmp_path / "renamed.jsonl"
    path.write_text("".join(json.dumps({**r, "problem_id": "x/" + r["problem_id"]}) + "\n" for r in rows))
    with pytest.raises(ConfigError, match=r"no result sample id matches a labeled sample: 300 labeled ids .*"
                                          r"x/test/.*--id-field"):
        compare(math_labels(), load_results([path]), STRONG, WEAK)
    labels = tmp_path / "labels.parquet"
    math_labels().to_parquet(labels)
    for cmd in ("compare", "diagnose"):
        r = run_cli(cmd, "--labels", str(labels), "--results", str(path), "--baseline", STRONG, "--candidate", WEAK,
                    "-o", str(tmp_path / f"{cmd}.json"), timeout_s=120)
        assert r.returncode == 2 and "no result sample id matches" in r.stderr and "Traceback" not in r.stderr
    # a partial match is reported, with example ids of both sides
    path.write_text("".join(json.dumps({**r, "problem_id": ("x/" if i < 100 else "") + r["problem_id"]}) + "\n"
                            for i, r in enumerate(rows)))
    cmp = compare(math_labels(), load_results([path]), STRONG, WEAK)
    j = cmp.evidence["join"]
    assert j["n_labeled"] == 300 and j["n_matched"] < 300 and j["n_results_unmatched"] > 0
    assert len(j["unmatched_result_ids"]) == 5 and all(i.startswith("x/") for i in j["unmatched_result_ids"])
    assert len(j["unmatched_label_ids"]) == 5


def test_runaway_generation_in_one_operation_is_not_a_data_problem(tmp_path):
    """The tracking tasks' answers are cut off (finish_reason length): the drop is localised, but the non-data
    verdict wins and the operation's data rule is suppressed, not proposed."""
    rows = [json.loads(x) for x in BBH_OUTPUTS.read_text(encoding="utf-8").splitlines() if x.strip()]
    path = tmp_path / "cut.jsonl"
    with path.open("w") as fh:
        for r in rows:
            base = {"sample_id": r["id"], "run": COT, "correct": r["correct"], "output": r["output"],
                    "extracted_answer": r["extracted_answer"], "finish_reason": "stop"}
            fh.write(json.dumps(base) + "\n")
            if r["task"].startswith(STATE_TASKS) and r["correct"]:
                cut = r["output"][: r["output"].rfind("So the answer is")].rstrip()
                base = {**base, "output": cut, "extracted_answer": None, "correct": False, "finish_reason": "length"}
            fh.write(json.dumps({**base, "run": "cut"}) + "\n")
    result = diagnose(compare(bbh_labels(), load_results([path]), COT, "cut"))
    assert result["verdict"] == "non_data" and result["interventions"] == []
    assert result["fired_rules"][0]["id"] == "runaway-generation"
    assert [s["id"] for s in result["suppressed_rules"]] == ["op-state-tracking"]
    assert "marginal:primary_operation=state_tracking" in result["localisation"]["standing_out"]
    assert result["failure_modes"]["counts"] == {"non_termination": result["overall"]["n10"]}

