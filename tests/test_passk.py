"""pass@k from several generations per problem, end to end: slices, paired comparison, reports, CLI.

Real data: Sky-T1 32B, 11 training checkpoints of a long-CoT and of a short-CoT fine-tune on the
30 AIME 2024 problems (tests/data/loop/aime2024_sky_t1_checkpoints.jsonl: n_samples = 11 per
problem and run, n_correct = checkpoints that solved it).
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
from scipy.stats import wilcoxon

from slicelab.service.comparison import compare
from slicelab.service.errors import ConfigError
from slicelab.service.mapping import diagnose
from slicelab.service.passk import item_pass_at_k, parse_ks
from slicelab.service.pool_labels import label_items
from slicelab.service.readers import read_eval_samples
from slicelab.service.results import load_results
from slicelab.service.slice_stats import slice_stats
from slicelab.service.stats import mean_interval, pass_at_k, wilcoxon_paired
from tests.conftest import run_cli
from tests.loop_data import LOOP, passing_record

SKY = LOOP / "aime2024_sky_t1_checkpoints.jsonl"
LONG, SHORT = "sky-t1-32b-long-cot-ckpts", "sky-t1-32b-short-cot-ckpts-v1"


@lru_cache(maxsize=None)
def aime_labels() -> pd.DataFrame:
    items = list(read_eval_samples(LOOP / "aime2024_problems.jsonl", benchmark="aime2024"))
    return label_items(items, kind="eval", record=passing_record("eval"))


def test_parse_ks():
    assert parse_ks("128, 1,8,8") == (1, 8, 128)
    for bad in ("0", "a", "1,,2", "-3", ""):
        with pytest.raises(ConfigError, match="--k"):
            parse_ks(bad)


def test_slice_pass_at_k_with_intervals_and_short_items():
    res = load_results([SKY])
    assert set(res["n_samples"]) == {11}
    table, meta = slice_stats(aime_labels(), res, ks=(1, 8, 128))
    assert meta["ks"] == [1, 8] and "128" in meta["ks_skipped"] and "most: 11" in meta["ks_skipped"]["128"]
    assert meta["items_short"] == {LONG: {"1": 0, "8": 0}, SHORT: {"1": 0, "8": 0}}
    row = table[(table["run"] == LONG) & (table["slice_id"] == table["slice_id"].iloc[0])].iloc[0]
    ids = aime_labels()["id"]
    # the mean of the per-item unbiased estimator, by hand, for the whole benchmark
    long = res[(res["run"] == LONG) & res["sample_id"].isin(ids)]
    by_hand = np.mean([pass_at_k(11, c, 8) for c in long["n_correct"]])
    whole = table[(table["run"] == LONG) & (table["key"] == "marginal")]
    per_axis = whole.groupby(whole["slice_id"].str.split("=").str[0]).apply(
        lambda g: float((g["pass_at_8"] * g["n"]).sum() / g["n"].sum()))
    assert np.allclose(per_axis.to_numpy(), by_hand)
    assert row["pass_at_8_ci_low"] <= row["pass_at_8"] <= row["pass_at_8_ci_high"]
    assert row["pass_at_1"] <= row["pass_at_8"]


def test_items_with_fewer_generations_are_said_and_left_out(tmp_path):
    rows = [json.loads(x) for x in SKY.read_text().splitlines()]
    rows[0]["n_samples"], rows[0]["n_correct"] = 4, min(rows[0]["n_correct"], 4)
    path = tmp_path / "short.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = load_results([path])
    _, meta = slice_stats(aime_labels(), res, ks=(1, 8))
    assert meta["items_short"][rows[0]["run"]]["8"] == 1
    cmp = compare(aime_labels(), res, LONG, SHORT, ks=(8,))
    assert cmp.pass_at_k["by_k"]["8"]["overall"]["n_short"] == 1
    assert cmp.pass_at_k["by_k"]["8"]["overall"]["n_items"] == 29


def test_paired_pass_at_k_comparison_between_two_runs():
    res = load_results([SKY])
    cmp = compare(aime_labels(), res, LONG, SHORT, ks=(1, 8, 128))
    pk = cmp.pass_at_k
    assert pk["ks"] == [1, 8] and "128" in pk["ks_skipped"]
    o = pk["by_k"]["8"]["overall"]
    base = res[res["run"] == LONG].set_index("sample_id").sort_index()
    cand = res[res["run"] == SHORT].set_index("sample_id").sort_index()
    diff = (item_pass_at_k(cand, 8) - item_pass_at_k(base, 8)).to_numpy()
    assert o["n_items"] == 30 and o["delta"] == pytest.approx(diff.mean())
    assert o["p_value"] == pytest.approx(wilcoxon(diff, zero_method="pratt").pvalue)
    assert o["delta_ci_low"] <= o["delta"] <= o["delta_ci_high"]
    assert o["baseline"] == pytest.approx(np.mean([pass_at_k(11, c, 8) for c in base["n_correct"]]))
    for s in pk["by_k"]["8"]["slices"]:
        assert s["n_items"] + s["n_short"] >= 1 and (s["q_value"] is None) == (not s["tested"])
    json.dumps(cmp.to_dict(), allow_nan=False)
    # the verdict's overall test is the paired pass@k test when asked for
    cmp.meta["metric"], cmp.meta["metric_k"] = "pass@k", 8
    d = diagnose(cmp)
    assert d["explanation"]["overall"]["metric"] == "pass@8"
    assert d["explanation"]["overall"]["p_value"] == pytest.approx(o["p_value"])


def test_paired_test_and_interval_edge_cases():
    assert wilcoxon_paired(np.zeros(5)) == 1.0 and wilcoxon_paired(np.array([])) == 1.0
    assert mean_interval(np.array([0.5, 0.5])) == (0.5, 0.5) and mean_interval(np.array([])) == (None, None)
    lo, hi = mean_interval(np.array([0.0, 1.0] * 20))
    assert lo < 0.5 < hi


def test_cli_pass_at_k_in_every_report(tmp_path):
    labels = tmp_path / "aime.parquet"
    aime_labels().to_parquet(labels)
    r = run_cli("slices", str(labels), "-o", str(tmp_path / "s.json"), "--results", str(SKY), "--k", "1,8,128",
                "--report-dir", str(tmp_path / "rep"), timeout_s=120)
    assert r.returncode == 0, r.stderr
    assert "pass@128 not reported" in r.stdout + r.stderr
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["ks"] == [1, 8] and "pass_at_8_ci_low" in s["slices"][0]
    assert "pass@8 [95% CI]" in (tmp_path / "rep" / "slices.md").read_text()
    assert "pass@8 [95% CI]" in (tmp_path / "rep" / "slices.html").read_text()
    r = run_cli("diagnose", "--labels", str(labels), "--results", str(SKY), "--baseline", LONG, "--candidate", SHORT,
                "--metric", "pass@k", "--k", "1,8", "-o", str(tmp_path / "d.json"), timeout_s=120)
    assert r.returncode == 0, r.stderr
    assert "pass@8:" in r.stdout and "Wilcoxon" in r.stdout
    d = json.loads((tmp_path / "d.json").read_text())
    assert d["pass_at_k"]["ks"] == [1, 8] and d["explanation"]["overall"]["metric"] == "pass@8"
    for suffix in ("md", "html"):
        text = (tmp_path / f"d.{suffix}").read_text()
        assert "pass@8, paired per problem" in text and "Wilcoxon signed-rank" in text
    r = run_cli("compare", "--labels", str(labels), "--results", str(SKY), "--baseline", LONG, "--candidate", SHORT,
                "--metric", "pass@k", "--k", "128", timeout_s=120)
    assert r.returncode == 2 and "no problem has that many generations" in r.stderr
