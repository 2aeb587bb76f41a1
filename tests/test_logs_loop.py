"""The loop from evaluation logs: ingest, and diagnose/compare with --baseline-logs/--candidate-logs."""

from __future__ import annotations

import json

import pandas as pd

from slicelab.service.pool_labels import label_items
from slicelab.service.readers import read_eval_samples
from slicelab.service.results import load_results
from slicelab.service.samples import Rejected
from slicelab.service.slice_stats import slice_stats
from tests.conftest import run_cli
from tests.harness_fixtures import (INSPECT_JSON, LM_EVAL_RUNS, copy_run, gsm8k_gold, write_eval_zip,
                                    write_repeats_run)

VERDICTS = {"data_intervention", "non_data", "broad_regression", "unexplained_regression", "insufficient_evidence",
            "no_regression"}


def _two_runs(tmp_path, same_name: bool = False):
    """Baseline: the bundled gsm8k + math logs with every sample scored correct; candidate: the same
    questions with the first two of each task still correct and the rest wrong (outputs changed)."""
    a, b = tmp_path / "ckpt-1000", tmp_path / "ckpt-2000"
    for src in LM_EVAL_RUNS:
        copy_run(src, a, model_name="org/model" if same_name else "ckpt-1000", flip=99)
        copy_run(src, b, model_name="org/model" if same_name else "ckpt-2000", flip=2, output_suffix="\nI give up")
    return a, b


def test_diagnose_from_two_lm_eval_output_folders_needs_no_other_input(tmp_path):
    a, b = _two_runs(tmp_path)
    out = tmp_path / "d.json"
    r = run_cli("diagnose", "--baseline-logs", str(a), "--candidate-logs", str(b), "-o", str(out), timeout_s=600)
    assert r.returncode == 0, r.stderr + r.stdout
    first = r.stdout.splitlines()[0]
    assert first.startswith("read baseline ckpt-1000: 2 log files (lm-evaluation-harness samples JSONL 2), 13 "
                            "samples; candidate ckpt-2000: 2 log files"), first
    assert "labeling 13 distinct samples in-process" in first
    d = json.loads(out.read_text())
    assert d["verdict"] in VERDICTS and (d["baseline"], d["candidate"]) == ("ckpt-1000", "ckpt-2000")
    assert d["overall"]["n10"] == 13 - 4 and d["overall"]["n01"] == 0
    assert d["meta"]["labels_file"].startswith("labeled in-process: 13 samples, per axis")
    assert "verdict:" in r.stdout and "labels: labeled in-process" in r.stdout


def test_compare_from_logs_tells_one_model_name_apart_by_folder_and_given_labels_win(tmp_path):
    a, b = _two_runs(tmp_path, same_name=True)
    items = [s for s in read_eval_samples(a) if not isinstance(s, Rejected)]
    lab = label_items(items, kind="eval", labeler="knn")
    lab.to_parquet(tmp_path / "labels.parquet")
    out = tmp_path / "c.json"
    r = run_cli("compare", "--baseline-logs", str(a), "--candidate-logs", str(b), "--labels",
                str(tmp_path / "labels.parquet"), "--allow-ungated", "-o", str(out), timeout_s=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert f"labels from {tmp_path / 'labels.parquet'} (not relabeled)" in r.stdout.splitlines()[0]
    c = json.loads(out.read_text())
    assert (c["baseline"], c["candidate"]) == ("org/model@ckpt-1000", "org/model@ckpt-2000")
    assert c["meta"]["labels_file"] == str(tmp_path / "labels.parquet")


def test_logs_options_refuse_half_or_mixed_inputs(tmp_path):
    a, b = _two_runs(tmp_path)
    r = run_cli("compare", "--baseline-logs", str(a), "-o", str(tmp_path / "c.json"))
    assert r.returncode != 0 and "--baseline-logs and --candidate-logs go together" in r.stderr + r.stdout
    r = run_cli("compare", "--baseline-logs", str(a), "--candidate-logs", str(b), "--results", str(a))
    assert r.returncode != 0 and "--results cannot be combined" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_repeats_give_pass_at_k_per_slice(tmp_path):
    gold = gsm8k_gold()
    base = write_repeats_run(tmp_path, "ckpt-1000", {d: [g, g, "0", g] for d, g in gold.items()})
    cand = write_repeats_run(tmp_path, "ckpt-2000", {d: ["0", "0", "0", g] for d, g in gold.items()})
    res = load_results([base, cand])
    items = [s for s in read_eval_samples(base) if not isinstance(s, Rejected)]
    lab = label_items(items, kind="eval", labeler="selected")
    table, meta = slice_stats(lab, res, allow_ungated=True, min_support=1, ks=(1, 2, 4))
    assert meta["ks"] == [1, 2, 4] or list(meta["ks"]) == [1, 2, 4]
    per_run = table.groupby("run")[["pass_at_1", "pass_at_2", "pass_at_4"]].first()
    # 3 of 4 correct: pass@1 = 0.75, pass@2 = 1 - C(1,2)/C(4,2) = 1, pass@4 = 1; 1 of 4: 0.25, 0.5, 1
    assert per_run.loc["ckpt-1000"].tolist() == [0.75, 1.0, 1.0]
    assert per_run.loc["ckpt-2000"].tolist() == [0.25, 0.5, 1.0]
    assert table["slice_id"].nunique() >= 1 and table["pass_at_2"].notna().all()


def test_ingest_writes_the_joined_table(tmp_path):
    ev = write_eval_zip(INSPECT_JSON, tmp_path / "arc.eval")
    out = tmp_path / "results.parquet"
    r = run_cli("ingest", str(LM_EVAL_RUNS[0].parent), str(ev), "-o", str(out), timeout_s=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] == ("reading 3 log files (lm-evaluation-harness samples JSONL 2, "
                                        "Inspect AI .eval log (zip) 1) from 2 path(s)")
    df = pd.read_parquet(out)
    assert len(df) == 18 and df["sample_id"].is_unique
    for col in ("sample_id", "run", "task", "correct", "score_exact_match", "score_choice", "output",
                "finish_reason", "num_fewshot", "reader"):
        assert col in df.columns, col
    arc = df[df["reader"] == "inspect_eval"]
    assert len(arc) == 5 and (arc["score_choice"] == arc["correct"].astype(float)).all()
    gsm = df[df["task"] == "gsm8k"]
    assert (gsm["score_exact_match"] == 0.0).all() and set(gsm["filter"]) == {"strict-match"}


def test_label_benchmark_reads_an_output_folder(tmp_path, redis_url, judge_server):
    run = copy_run(LM_EVAL_RUNS[0], tmp_path / "out")
    out = tmp_path / "labels.parquet"
    r = run_cli("label-benchmark", str(run.parent), "-o", str(out), "--judge-url", judge_server.base_url,
                "--judge-model", "m", timeout_s=300)
    assert r.returncode == 0, r.stderr
    df = pd.read_parquet(out)
    assert sorted(df["id"]) == ["gsm8k/0/strict-match", "gsm8k/1/strict-match", "gsm8k/2/strict-match"]
    assert set(df["status"]) == {"labeled"}


def test_compare_inspect_json_against_its_eval_twin_and_several_runs_need_a_name(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ev = write_eval_zip(INSPECT_JSON, tmp_path / "b" / "arc_easy.eval")
    out = tmp_path / "c.json"
    r = run_cli("compare", "--baseline-logs", str(INSPECT_JSON), "--candidate-logs", str(ev), "--allow-ungated",
                "--min-support", "1", "-o", str(out), timeout_s=300)
    assert r.returncode == 0, r.stderr + r.stdout
    assert "candidate claude-sonnet-4-20250514@arc_easy.eval: 1 log files (Inspect AI .eval log (zip) 1), 5 samples" \
        in r.stdout.splitlines()[0]
    c = json.loads(out.read_text())
    assert c["overall"]["n"] == 5 and c["overall"]["n10"] == c["overall"]["n01"] == 0
    r = run_cli("compare", "--baseline-logs", str(LM_EVAL_RUNS[0].parent), "--candidate-logs", str(ev))
    assert r.returncode != 0 and "--baseline-logs holds 2 runs" in r.stderr + r.stdout
    assert "name one with --baseline" in r.stderr + r.stdout and "Traceback" not in r.stderr


def test_ingest_takes_a_plain_results_file_too(tmp_path):
    out = tmp_path / "r.jsonl"
    r = run_cli("ingest", "tests/data/loop/aime2024_sky_t1_checkpoints.jsonl", "-o", str(out), timeout_s=120)
    assert r.returncode == 0, r.stderr
    df = pd.read_json(out, lines=True)
    assert len(df) == 60 and set(df["reader"]) == {"other"} and (df["n_samples"] == 11).all()
