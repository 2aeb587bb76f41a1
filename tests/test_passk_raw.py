"""pass@k from raw rows: one row per (problem, checkpoint), read as repeated generations of one model.

Real data: Sky-T1 32B long-CoT and short-CoT fine-tunes, each at 11 training checkpoints, on the 30
AIME 2024 problems (tests/data/sky_t1/). Each checkpoint's greedy output counts as one generation of
its series, so every problem has n = 11 generations per run.
"""

from __future__ import annotations

import json
from functools import lru_cache

import numpy as np
import pandas as pd

from slicelab.service.comparison import compare
from slicelab.service.pool_labels import label_items
from slicelab.service.readers import read_eval_samples
from slicelab.service.results import load_results
from slicelab.service.stats import pass_at_k
from tests.conftest import DATA, run_cli
from tests.loop_data import LOOP, passing_record

LONG_RAW = DATA / "sky_t1" / "aime2024_long_cot_checkpoints.jsonl"
SHORT_RAW = DATA / "sky_t1" / "aime2024_short_cot_checkpoints.jsonl"
LONG, SHORT = "long_cot_ckpts", "short_cot_ckpts_v1"


@lru_cache(maxsize=None)
def aime_labels() -> pd.DataFrame:
    items = list(read_eval_samples(LOOP / "aime2024_problems.jsonl", benchmark="aime2024"))
    return label_items(items, kind="eval", record=passing_record("eval"))


def _raw(path) -> pd.DataFrame:
    return pd.DataFrame([json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()])


def test_raw_checkpoint_rows_aggregate_to_n_and_c_per_problem():
    res = load_results([LONG_RAW, SHORT_RAW], run_field="series", generation_field="checkpoint")
    assert len(res) == 60 and set(res["run"]) == {LONG, SHORT} and set(res["n_samples"]) == {11}
    for path, run in ((LONG_RAW, LONG), (SHORT_RAW, SHORT)):
        raw = _raw(path)
        by_hand = raw.groupby("problem_id")["correct"].sum().astype(int)
        got = res[res["run"] == run].set_index("sample_id")["n_correct"]
        assert got.sort_index().to_dict() == by_hand.sort_index().to_dict()


def test_paired_pass_at_k_comparison_from_raw_rows():
    res = load_results([LONG_RAW, SHORT_RAW], run_field="series", generation_field="checkpoint")
    cmp = compare(aime_labels(), res, LONG, SHORT, allow_ungated=True, ks=(1, 8, 128))
    pk = cmp.pass_at_k
    assert pk["ks"] == [1, 8] and "128" in pk["ks_skipped"]
    overall = pk["by_k"]["8"]["overall"]  # keyed by k as text (JSON keys)
    c = {run: res[res["run"] == run].set_index("sample_id")["n_correct"] for run in (LONG, SHORT)}
    ids = sorted(set(c[LONG].index) & set(c[SHORT].index) & set(aime_labels()["id"]))
    by_hand = {run: float(np.mean([pass_at_k(11, int(c[run][i]), 8) for i in ids])) for run in (LONG, SHORT)}
    assert overall["n_items"] == len(ids) == 30
    assert np.isclose(overall["baseline"], by_hand[LONG]) and np.isclose(overall["candidate"], by_hand[SHORT])
    assert overall["candidate"] < overall["baseline"] and overall["p_value"] < 0.05


def test_cli_diagnose_on_pass_at_k_from_raw_rows(tmp_path):
    labels = tmp_path / "aime_labels.parquet"
    aime_labels().to_parquet(labels)
    out = tmp_path / "diagnosis.json"
    r = run_cli("diagnose", "--labels", str(labels), "--results", str(LONG_RAW), "--results", str(SHORT_RAW),
                "--run-field", "series", "--generation-field", "checkpoint", "--baseline", LONG,
                "--candidate", SHORT, "--metric", "pass@k", "--k", "1,8", "--allow-ungated", "-o", str(out),
                timeout_s=300)
    assert r.returncode == 0, r.stderr
    d = json.loads(out.read_text())
    assert d["meta"]["metric"] == "pass@k" and d["meta"]["metric_k"] == 8
    assert d["pass_at_k"]["ks"] == [1, 8]
    assert "pass@8" in r.stdout
    for page in (out.with_suffix(".html"), out.with_suffix(".md")):
        assert "pass@8" in page.read_text(encoding="utf-8")
