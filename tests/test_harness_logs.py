"""Harness outputs read as written: lm-eval output folders, Inspect .json and .eval logs."""

from __future__ import annotations

import json

import pytest

from slicelab.service.errors import InputFormatError
from slicelab.service.harness_logs import expand_logs, load_inspect_log
from slicelab.service.readers import read_eval_samples
from slicelab.service.results import load_results
from slicelab.service.samples import Rejected
from tests.test_lm_eval_quirks import mc_record
from tests.harness_fixtures import (INSPECT_JSON, LM_EVAL_RUNS, add_filter, copy_run, gsm8k_gold,
                                    write_eval_zip, write_repeats_run)


def _lines(path):
    return sum(1 for p in path.glob("samples_*.jsonl") for _ in p.open())


def test_eval_zip_and_json_twin_give_the_same_samples_and_results(tmp_path):
    ev = write_eval_zip(INSPECT_JSON, tmp_path / "arc_easy.eval")
    assert load_inspect_log(ev)["eval"] == json.loads(INSPECT_JSON.read_text())["eval"]
    a, b = list(read_eval_samples(INSPECT_JSON)), list(read_eval_samples(ev))
    assert len(a) == 5 and not any(isinstance(x, Rejected) for x in a + b)
    strip = lambda s: {k: v for k, v in vars(s).items() if k != "source_file"}  # noqa: E731
    assert [strip(x) for x in a] == [strip(x) for x in b]
    ra, rb = load_results(INSPECT_JSON), load_results(ev)
    cols = ["sample_id", "run", "correct", "output", "extracted_answer", "finish_reason", "n_samples", "n_correct"]
    assert ra[cols].equals(rb[cols])
    assert ra.attrs["setup"] == rb.attrs["setup"]
    assert expand_logs(tmp_path).readers == {ev: "inspect_eval"}


def test_eval_zip_without_header_is_a_clear_error(tmp_path):
    import zipfile

    bad = tmp_path / "x.eval"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("samples/1_epoch_1.json", "{}")
    with pytest.raises(InputFormatError, match="header.json"):
        list(read_eval_samples(bad))


def test_lm_eval_output_folder_is_read_whole(tmp_path):
    """The real bundled runs as --output_path lays them out: one folder, one sub-folder per model."""
    for src in LM_EVAL_RUNS:
        copy_run(src, tmp_path / "out")
    res = load_results(tmp_path / "out")
    assert len(res) == sum(_lines(s) for s in LM_EVAL_RUNS)
    assert set(res["run"]) == {"tinyllama", "RylanSchaeffer/mem_Qwen3-93M_minerva_math_rep_0_sbst_1.0000_epch_1_ot_1"}
    assert res.attrs["setup"]["tinyllama"]["num_fewshot"] == 5
    # the results_<ts>.json names its samples files; label-benchmark's reader takes the folder too
    one = next((tmp_path / "out" / "tinyllama").glob("results_*.json"))
    assert list(load_results(one)["sample_id"]) == ["gsm8k/0/strict-match", "gsm8k/1/strict-match",
                                                   "gsm8k/2/strict-match"]
    assert len([s for s in read_eval_samples(tmp_path / "out") if not isinstance(s, Rejected)]) == len(res)


def test_several_benchmarks_and_filters_keep_every_task_doc_filter(tmp_path):
    run = tmp_path / "run"
    for src in LM_EVAL_RUNS:  # two benchmarks in one run folder
        copy_run(src, tmp_path / "tmp")
    for d in (tmp_path / "tmp").iterdir():
        for f in d.iterdir():
            run.mkdir(exist_ok=True)
            f.rename(run / f.name)
    add_filter(run, "flexible-extract")
    mc = [mc_record(0, [-1.25, -0.5, -3.0, -2.0], 1, 1.0), mc_record(1, [-0.25, -4.0, -3.5, -2.0], 2, 0.0)]
    ts = next(run.glob("results_2025*.json")).name[len("results_"):-len(".json")]
    (run / f"samples_arc_easy_{ts}.jsonl").write_text("\n".join(json.dumps(r) for r in mc) + "\n")
    res = load_results(run)
    keys = {tuple(s.split("/")) for s in res["sample_id"]}
    assert len(res) == len(keys) == 2 * 13 + 2
    assert {(t, f) for t, _, f in keys} == {("gsm8k", "strict-match"), ("gsm8k", "flexible-extract"),
                                            ("math_perturbed_full", "none"), ("math_perturbed_full", "flexible-extract"),
                                            ("arc_easy", "none")}
    arc = res[res["sample_id"].str.startswith("arc_easy/")].set_index("sample_id")
    # multiple choice: the chosen option and its correctness, no free-text output to judge
    assert arc.loc["arc_easy/0/none", "extracted_answer"] == "1" and bool(arc.loc["arc_easy/0/none", "correct"])
    assert arc["output"].isna().all() and not arc.loc["arc_easy/1/none", "correct"]
    samples = [s for s in read_eval_samples(run) if not isinstance(s, Rejected)]
    assert {s.id for s in samples} == set(res["sample_id"])


def test_repeats_become_n_samples_for_pass_at_k(tmp_path):
    gold = gsm8k_gold()
    answers = {d: [g, "0", g, "1"] if d == 0 else ["0", "0", "0", g] if d == 1 else ["0"] * 4
               for d, g in gold.items()}
    res = load_results(write_repeats_run(tmp_path, "ckpt-1000", answers))
    got = dict(zip(res["sample_id"], zip(res["n_samples"], res["n_correct"])))
    assert got == {"gsm8k/0/strict-match-all": (4, 2), "gsm8k/1/strict-match-all": (4, 1),
                   "gsm8k/2/strict-match-all": (4, 0)}


def test_folder_without_logs_names_what_was_looked_for(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InputFormatError, match="samples_<task>_<timestamp>.jsonl"):
        load_results(tmp_path)


def test_older_invocation_of_a_task_is_left_out_and_reported(tmp_path):
    d = copy_run(LM_EVAL_RUNS[0], tmp_path)
    old = next(d.glob("samples_*.jsonl"))
    (d / old.name.replace("2025-04-30", "2024-01-01")).write_text(old.read_text())
    found = expand_logs(tmp_path)
    assert found.files == [old] and list(found.skipped.values())[0].startswith("older invocation of task gsm8k")
