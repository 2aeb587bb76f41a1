"""Bad gold sets, diagnoses, result values and output paths are refused before any work, naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slicelab.calibration.gold import BUNDLED
from slicelab.service.results import load_results
from tests.conftest import make_samples, run_cli
from tests.loop_data import MATH_OUTPUTS, STRONG, WEAK, doc_labels, math_labels

GOLD_ROWS = [json.loads(line) for line in BUNDLED["eval"].read_text().splitlines() if line.strip()]


def one_line(text: str) -> str:
    return " ".join(text.split())


def gold_file(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _no_wrong_items(rows):
    return [r for r in rows if r.get("correct") is not False]


def _null_operations(rows):
    return [dict(r, solving_operations=None) if i == 4 else r for i, r in enumerate(rows)]


def _operations_as_text(rows):
    return [dict(r, solving_operations="arithmetic") if i == 4 else r for i, r in enumerate(rows)]


def _no_question(rows):
    return [{k: v for k, v in r.items() if k != "question"} if i == 4 else r for i, r in enumerate(rows)]


@pytest.mark.parametrize("edit,words", [
    (_no_wrong_items, "no wrong item (a row with correct: false and a model_output)"),
    (_null_operations, "line 5: field 'solving_operations': "),
    (_operations_as_text, "solving_operations is str 'arithmetic'; expected a list of label ids"),
    (_no_question, "line 5: field 'question': "),
])
def test_calibrate_refuses_a_bad_gold_file_before_any_judge_call(tmp_path, redis_url, judge_server, edit, words):
    gold = gold_file(tmp_path / "gold.jsonl", edit(GOLD_ROWS))
    r = run_cli("calibrate", "--gold", str(gold), "--judge-url", judge_server.base_url, "--judge-model", "m",
                "--limit", "4", env={"SLICELAB_HOME": str(tmp_path / "home")}, timeout_s=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    assert words in one_line(r.stdout + r.stderr)
    assert judge_server.requests == [] and judge_server.probes == []  # the judge never worked


def test_result_values_are_named_in_errors(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"sample_id": "a", "run": "m", "score": NaN}\n{"sample_id": "b", "run": "m", "correct": null}\n'
                    '{"sample_id": "c", "run": "m"}\n')
    rejects: list[dict] = []
    with pytest.raises(Exception):
        load_results([path], rejects=rejects)
    reasons = [r["reason"].removeprefix(f"{path}: ") for r in rejects]
    assert reasons[0] == "score is NaN; expected correct true/false (or 1/0) or a score in [0, 1]"
    assert reasons[1] == "correct is null; expected correct true/false (or 1/0) or a score in [0, 1]"
    assert reasons[2] == "no 'correct' or 'score' field"
    assert [r["field"] for r in rejects] == ["score", "correct", "correct"]


@pytest.fixture(scope="module")
def docs(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("docs") / "docs.parquet"
    doc_labels().to_parquet(path)
    return path


INTERVENTION = {"rule_id": "r1", "filter": {"domain": ["mathematics"]}, "action": {"type": "upsample", "weight": 2.0},
                "operations": ["arithmetic"], "weak_slices": ["pure_math/numeric_answer"], "n_weak_slices": 1}


@pytest.mark.parametrize("diagnosis,words", [
    ({"verdict": "data_intervention", "interventions": "upsample math"}, "interventions: Input should be a valid list (got str"),
    ({"verdict": "data_intervention"}, "verdict 'data_intervention' needs 'interventions'"),
    ({"verdict": "data_intervention", "interventions": [{"rule_id": "r1", "operations": []}]},
     "interventions.0.filter: Field required; interventions.0.action: Field required"),
    ({"verdict": "data_intervention", "interventions": [dict(INTERVENTION, action={"type": "upsample"})]},
     "interventions.0.action.upsample.weight: Field required"),
    ({"verdict": "maybe"}, "verdict: Input should be 'data_intervention', 'non_data', 'insufficient_evidence', "
                           "'broad_regression' or 'unexplained_regression'"),
    ({"verdict": "broad_regression", "summary": "everything dropped", "spread": {"share": 0.9}},
     "verdict is 'broad_regression', not 'data_intervention'"),
])
def test_sample_says_what_is_wrong_with_a_diagnosis(tmp_path, docs, diagnosis, words):
    diag = tmp_path / "diagnosis.json"
    diag.write_text(json.dumps(diagnosis))
    r = run_cli("sample", "--docs", str(docs), "--diagnosis", str(diag), "--budget-tokens", "1000",
                "-o", str(tmp_path / "m.jsonl"), "--allow-ungated", timeout_s=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr + r.stdout
    assert words in one_line(r.stdout + r.stderr)


def test_sample_keeps_unknown_keys_of_a_well_formed_diagnosis(tmp_path, docs):
    diag = tmp_path / "diagnosis.json"
    diag.write_text(json.dumps({"verdict": "data_intervention", "interventions": [INTERVENTION],
                                "evidence_version": 3, "new_section": {"x": [1, 2]}}))
    r = run_cli("sample", "--docs", str(docs), "--diagnosis", str(diag), "--budget-tokens", "1000",
                "-o", str(tmp_path / "m.jsonl"), "--allow-ungated", timeout_s=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "m.jsonl").is_file()


UNWRITABLE = "/proc/slicelab-out.json"  # /proc takes no new files, not even from root


def test_label_benchmark_refuses_an_unwritable_output_before_labeling(tmp_path, redis_url, judge_server):
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"id": s.id, "question": s.question}) + "\n" for s in make_samples(3)))
    r = run_cli("label-benchmark", str(inp), "-o", "/proc/slicelab-labels.parquet", "--judge-url",
                judge_server.base_url, "--judge-model", "m", timeout_s=120)
    assert r.returncode == 2 and "cannot be written" in one_line(r.stdout + r.stderr)
    assert judge_server.requests == []


def test_calibrate_and_label_shard_refuse_unwritable_outputs(tmp_path, redis_url, judge_server):
    r = run_cli("calibrate", "--gold", str(BUNDLED["eval"]), "--judge-url", judge_server.base_url,
                "--judge-model", "m", "--json", UNWRITABLE, env={"SLICELAB_HOME": str(tmp_path / "home")},
                timeout_s=120)
    assert r.returncode == 2 and "--json /proc/slicelab-out.json: cannot be written" in one_line(r.stdout + r.stderr)
    assert judge_server.requests == []
    shard = tmp_path / "s.jsonl"
    shard.write_text(json.dumps({"id": "d", "text": "A document."}) + "\n")
    r = run_cli("label-shard", str(shard), "-o", "/proc/slicelab-shard-run", "--judge-sample", "0",
                env={"SLICELAB_HOME": str(tmp_path / "home")}, timeout_s=120)
    assert r.returncode == 2 and "cannot be written" in one_line(r.stdout + r.stderr)


def test_compare_diagnose_sample_refuse_unwritable_outputs_before_the_work(tmp_path, docs):
    labels = tmp_path / "labels.parquet"
    math_labels().to_parquet(labels)
    base = ("--labels", str(labels), "--results", str(MATH_OUTPUTS), "--baseline", STRONG, "--candidate", WEAK)
    for cmd in (("compare", *base, "-o", UNWRITABLE), ("diagnose", *base, "-o", UNWRITABLE),
                ("compare", *base, "--report-dir", "/proc/slicelab-reports")):
        r = run_cli(*cmd, timeout_s=120)
        assert r.returncode == 2 and "cannot be written" in one_line(r.stdout + r.stderr), cmd
        assert "shared samples" not in r.stdout  # refused before comparing
    diag = tmp_path / "diagnosis.json"
    diag.write_text(json.dumps({"verdict": "data_intervention", "interventions": [INTERVENTION]}))
    r = run_cli("sample", "--docs", str(docs), "--diagnosis", str(diag), "--budget-tokens", "1000",
                "-o", "/proc/slicelab-manifest.jsonl", "--allow-ungated", timeout_s=120)
    assert r.returncode == 2 and "cannot be written" in one_line(r.stdout + r.stderr)
