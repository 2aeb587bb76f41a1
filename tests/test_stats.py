"""Statistics behind slices and comparisons, checked against brute force and statsmodels; results loading."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.proportion import proportion_confint

from slicelab.service.comparison import compare
from slicelab.service.errors import ConfigError, InputFormatError, RecordError
from slicelab.service.results import load_results
from slicelab.service.slice_stats import slice_index, slice_stats
from slicelab.service.stats import gini, hhi, mcnemar_exact, paired_delta_interval, pass_at_k, wilson_interval
from tests.conftest import DATA
from tests.loop_data import BBH_OUTPUTS, COT, MATH_OUTPUTS, STRONG, WEAK, math_labels


# --------------------------------------------------------------------------- formulas


def _brute_pass_at_k(n: int, c: int, k: int) -> float:
    """Share of the k-subsets of n generations (c correct) that hold a correct one."""
    gens = [True] * c + [False] * (n - c)
    subsets = list(combinations(range(n), k))
    return sum(any(gens[i] for i in s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n", range(1, 9))
def test_pass_at_k_matches_enumeration(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_brute_pass_at_k(n, c, k), abs=1e-12)


def test_pass_at_k_is_stable_for_large_n_and_refuses_bad_input():
    # 1 - C(190, 10)/C(200, 10) evaluated with exact integers
    from math import comb

    exact = 1 - comb(190, 10) / comb(200, 10)
    assert pass_at_k(200, 10, 10) == pytest.approx(exact, rel=1e-12)
    assert pass_at_k(200, 0, 10) == 0.0 and pass_at_k(200, 195, 10) == 1.0
    for bad in ((0, 0, 1), (5, 6, 1), (5, 2, 0), (5, 2, 6)):
        with pytest.raises(ValueError):
            pass_at_k(*bad)


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (37, 166), (1, 3), (250, 300)])
def test_wilson_matches_statsmodels(k, n):
    lo, hi = proportion_confint(k, n, alpha=0.05, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((lo, hi), abs=1e-10)


@pytest.mark.parametrize("n10,n01", [(0, 0), (0, 5), (5, 0), (3, 4), (41, 3), (10, 10), (1, 30), (126, 10)])
def test_exact_mcnemar_matches_statsmodels(n10, n01):
    table = np.array([[50, n10], [n01, 20]])
    assert mcnemar_exact(n10, n01) == pytest.approx(mcnemar(table, exact=True).pvalue, abs=1e-12)


def test_agresti_min_interval_contains_the_change_and_stays_in_bounds():
    for table in ((276, 126, 10, 88), (0, 0, 0, 5), (0, 10, 0, 0), (50, 3, 4, 20)):
        n11, n10, n01, n00 = table
        lo, hi = paired_delta_interval(*table)
        d = (n01 - n10) / sum(table)
        assert -1 <= lo <= d <= hi <= 1
    # worked by hand: cells + 1/2 -> b=10.5, c=2.5, n=22; d=-8/22; se=sqrt(13 - 64/22)/22
    lo, hi = paired_delta_interval(4, 10, 2, 4)
    d, se = -8 / 22, np.sqrt(13 - 64 / 22) / 22
    assert (lo, hi) == pytest.approx((d - 1.959963985 * se, d + 1.959963985 * se), abs=1e-8)
    assert paired_delta_interval(0, 0, 0, 0) is None


def test_gini_and_hhi():
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.random(rng.integers(2, 12))
        mad = np.abs(x[:, None] - x[None, :]).sum() / (2 * x.size ** 2 * x.mean())
        assert gini(x) == pytest.approx(mad, abs=1e-12)
    assert gini([1, 1, 1, 1]) == pytest.approx(0.0) and gini([0, 0, 0, 1]) == pytest.approx(0.75)
    assert gini([0, 0]) is None and hhi([]) is None
    assert hhi([2, 2, 2, 2]) == pytest.approx((0.25, 0.0)) and hhi([0, 0, 5]) == pytest.approx((1.0, 1.0))


# --------------------------------------------------------------------------- results


def test_load_results_reads_the_shared_files_as_they_are():
    df = load_results([BBH_OUTPUTS, MATH_OUTPUTS])
    assert set(df.columns) >= {"sample_id", "run", "correct", "output", "finish_reason", "n_samples", "n_correct"}
    counts = df.groupby("run").size().to_dict()
    assert counts == {COT: 1080, STRONG: 300, WEAK: 300}
    assert df.loc[df["run"] == COT, "sample_id"].str.match(r"^[a-z_]+/\d+$").all()
    assert df.loc[df["run"] == STRONG, "sample_id"].str.startswith("test/").all()
    raw = [json.loads(line) for line in MATH_OUTPUTS.read_text().splitlines()]
    assert df.loc[df["run"] == WEAK, "correct"].mean() == pytest.approx(
        np.mean([r["correct"] for r in raw if r["model"] == WEAK]))
    assert (df["n_samples"] == 1).all() and (df["n_correct"] == df["correct"].astype(int)).all()


def test_load_results_reads_lm_eval_log_samples():
    files = sorted((DATA / "lm_eval").glob("*/samples_*.jsonl"))
    df = load_results(files)
    runs = set(df["run"])
    assert len(runs) == len(files) and df["sample_id"].str.count("/").ge(2).all()
    assert df["correct"].dtype == bool


def test_bad_result_rows_are_named_or_collected(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join([
        json.dumps({"sample_id": "a", "run": "x", "correct": True, "output": "4"}),
        json.dumps({"sample_id": "b", "run": "x", "output": "4"}),
        "{not json",
        json.dumps({"sample_id": "c", "run": "x", "score": 1.7}),
        json.dumps({"sample_id": "a", "run": "x", "correct": False}),
        json.dumps({"sample_id": "d", "run": "x", "correct": True, "n_samples": 4, "n_correct": 6}),
        json.dumps({"sample_id": "e", "correct": True}),
        json.dumps({"sample_id": "f", "run": "x", "score": 0.5, "n_samples": 4, "n_correct": 2}),
    ]) + "\n")
    with pytest.raises(RecordError) as e:
        load_results([path])
    assert str(path) in str(e.value) and "line 2" in str(e.value) and "'correct'" in str(e.value)
    rejects: list = []
    df = load_results([path], rejects=rejects)
    assert list(df["sample_id"]) == ["a", "f"] and not df.set_index("sample_id").at["f", "correct"]
    assert [(r["line"], r["field"]) for r in rejects] == [(2, "correct"), (3, None), (4, "score"), (5, "sample_id"),
                                                          (6, "n_correct"), (7, "run")]
    assert "duplicate" in rejects[3]["reason"] and "invalid JSON" in rejects[1]["reason"]
    with pytest.raises(InputFormatError):
        load_results([tmp_path / "missing.jsonl"])
    with pytest.raises(ConfigError):
        load_results([])


def test_id_and_run_fields_override(tmp_path):
    path = tmp_path / "r.parquet"
    pd.DataFrame({"qid": ["1", "2"], "model": ["m", "m"], "style": ["cot", "cot"], "correct": [1, 0],
                  "output": ["a", None]}).to_parquet(path)
    df = load_results([path], id_field="qid", run_field="model+style")
    assert list(df["run"]) == ["m:cot", "m:cot"] and list(df["correct"]) == [True, False]


# --------------------------------------------------------------------------- slices


def test_slice_stats_pass_rates_and_pass_at_k_on_real_outputs():
    labels, res = math_labels(), load_results([MATH_OUTPUTS])
    table, meta = slice_stats(labels, res)
    assert meta["ks"] == [] and set(table["run"]) == {STRONG, WEAK}
    index = slice_index(labels)
    joined = index.members.merge(res, on="sample_id")
    expected = joined.groupby(["slice_id", "run"])["correct"].agg(["size", "mean"])
    got = table.set_index(["slice_id", "run"]).loc[expected.index]
    assert len(got) == len(table) and (got["n"] == expected["size"]).all() and np.allclose(got["pass_rate"], expected["mean"])
    assert (got["low_support"] == (got["n"] < 10)).all()
    # pooling the two models' greedy outputs as two generations per problem: pass@1 is their mean,
    # pass@2 the share of problems either model solves
    wide = res.pivot(index="sample_id", columns="run", values="correct")
    pooled = pd.DataFrame({"sample_id": wide.index, "run": "pooled", "correct": wide[STRONG].to_numpy(),
                           "output": None, "extracted_answer": None, "finish_reason": None, "n_samples": 2,
                           "n_correct": wide.sum(axis=1).astype(int).to_numpy()})
    table, meta = slice_stats(labels, pooled, ks=(1, 2, 5))
    assert meta["ks"] == [1, 2]
    ops = table[table["slice_id"] == "marginal:task_type=numeric_answer"].iloc[0]
    ids = index.members.loc[index.members["slice_id"] == "marginal:task_type=numeric_answer", "sample_id"]
    sub = wide.loc[wide.index.isin(ids)]
    assert ops["pass_at_1"] == pytest.approx(sub.mean(axis=1).mean())
    assert ops["pass_at_2"] == pytest.approx(sub.any(axis=1).mean())


def test_ungated_axes_are_left_out_unless_allowed():
    from slicelab.service.slices import apply_gate
    from slicelab.service.taxonomy import load_taxonomy

    labels = apply_gate(math_labels(), {"id": "half", "verdicts": {"background_condition": "pass",
                                                                    "task_type": "fail"}}, load_taxonomy(), "eval")
    idx = slice_index(labels)
    assert idx.meta["axes_used"] == ["background_condition"] and "combination" not in idx.meta["keys"]
    assert idx.meta["axes_excluded"]["task_type"] == "fail"
    assert set(idx.slices["key"]) == {"capability", "marginal"}
    idx = slice_index(labels, allow_ungated=True)
    assert idx.meta["ungated_axes_used"] == ["task_type", "primary_operation", "output_constraint"]
    assert "combination" in idx.meta["keys"]


def test_benjamini_hochberg_matches_statsmodels():
    """One Benjamini-Hochberg family: every slice tested at every key (paired drops and loss rates)."""
    cmp = compare(math_labels(), load_results([MATH_OUTPUTS]), STRONG, WEAK)
    g = cmp.slices[cmp.slices["tested"]]
    assert cmp.meta["n_tests"] == len(g) and g["key"].nunique() == 3
    _, q, _, _ = multipletests(g["p_value"].to_numpy(), method="fdr_bh")
    assert np.allclose(g["q_value"].astype(float), q)
    _, q, _, _ = multipletests(g["loss_p"].astype(float).to_numpy(), method="fdr_bh")
    assert np.allclose(g["loss_q"].astype(float), q)
    assert cmp.slices.loc[~cmp.slices["tested"], "q_value"].isna().all()
    assert cmp.slices.loc[~cmp.slices["tested"], "loss_q"].isna().all()
