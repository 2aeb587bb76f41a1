"""Labelers beside the LLM judge: k-NN, student, cascade, per-axis selection."""

from __future__ import annotations

import json
import pytest

from calibration.evaluate import select_labeler
from calibration.gold import BUNDLED, GOLD, load_gold
from service.labelers import KNN_KS, CascadeLabeler, KNNLabeler, Labeler, PerAxisLabeler, StudentLabeler
from service.output import read_table
from service.samples import Status
from service.taxonomy import load_taxonomy
from tests.conftest import make_samples, run_cli


@pytest.fixture(scope="module")
def gold():
    return load_gold(BUNDLED["eval"])


@pytest.fixture(scope="module")
def pool(gold):
    ids, _ = gold.split()
    return [gold.items[i] for i in ids], {i: gold.labels[GOLD][i] for i in ids}


def _valid(labels, kind="eval"):
    tax = load_taxonomy()
    for name, value in labels.items():
        axis = tax.axis(kind, name)
        values = value if axis.kind == "operations" else [value]
        assert all(v in axis.ids for v in values), (name, value)
        assert len(values) <= axis.max_items


def test_knn_chooses_k_by_leave_one_out_and_never_votes_for_itself(gold, pool):
    items, labels = pool
    knn = KNNLabeler(items, labels)
    assert set(knn.choice) == {a.name for a in load_taxonomy().axes("eval")}
    assert all(k in KNN_KS and w in ("uniform", "similarity") for k, w in knn.choice.values())
    # an item whose gold label is unique in the pool cannot get that label from itself
    odd = items[0].model_copy(update={"id": "odd/1"})
    pool_labels = dict(labels) | {"odd/1": labels[items[0].id] | {"task_type": "proof_derivation"}}
    knn2 = KNNLabeler([*items, odd], pool_labels)
    got, conf = knn2.predict(odd)
    assert got["task_type"] != "proof_derivation" and 0 < conf["task_type"] <= 1
    _valid(got)


def test_student_gives_taxonomy_labels_with_confidence(gold, pool):
    items, labels = pool
    student = StudentLabeler(items, labels)
    _, held = gold.split()
    for i in held[:5]:
        got, conf = student.predict(gold.items[i])
        _valid(got)
        assert "failure_mode" in got if gold.items[i].scored_wrong else "failure_mode" not in got
        assert all(0 <= c <= 1 for c in conf.values())
    result = student.label(gold.items[held[0]])
    assert result.status == Status.labeled and result.backend == "student"
    assert set(result.extra["labeler_by_axis"].values()) == {"student"}


class Fixed(Labeler):
    """A labeler with fixed labels and confidences, counting its calls."""

    def __init__(self, name, labels, conf):
        super().__init__()
        self.backend, self.model, self.labels, self.conf, self.calls = name, name, labels, conf, 0

    def predict(self, item):
        self.calls += 1
        return dict(self.labels), dict(self.conf)

    def config(self):
        return {"backend": self.backend}


CHEAP = {"background_condition": "pure_math", "task_type": "numeric_answer",
         "solving_operations": ["arithmetic"], "output_constraint": "integer"}
JUDGE = {"background_condition": "everyday_world", "task_type": "multiple_choice",
         "solving_operations": ["logical_deduction"], "output_constraint": "option_label"}


@pytest.mark.parametrize("threshold,from_cheap,judge_calls", [
    (0.0, {"background_condition", "task_type", "solving_operations", "output_constraint"}, 0),
    (0.8, {"background_condition", "solving_operations"}, 1),
    (0.95, set(), 1),
])
def test_cascade_threshold_routes_each_axis(threshold, from_cheap, judge_calls):
    conf = {"background_condition": 0.9, "task_type": 0.5, "solving_operations": 0.85, "output_constraint": 0.7}
    cheap, judge = Fixed("knn", CHEAP, conf), Fixed("judge", JUDGE, {})
    r = CascadeLabeler(cheap, judge, threshold).label(make_samples(1)[0])
    assert r.status == Status.labeled and judge.calls == judge_calls
    for axis in CHEAP:
        expected = CHEAP[axis] if axis in from_cheap else JUDGE[axis]
        assert r.labels[axis] == expected
        assert r.extra["labeler_by_axis"][axis] == ("knn" if axis in from_cheap else "judge")


def test_per_axis_labeler_merges_and_records_sources():
    sel = {"background_condition": "knn", "task_type": "judge", "solving_operations": "student",
           "output_constraint": "judge", "failure_mode": "judge"}
    labs = {"knn": Fixed("knn", CHEAP, {a: 1.0 for a in CHEAP}), "judge": Fixed("judge", JUDGE, {}),
            "student": Fixed("student", CHEAP, {a: 0.7 for a in CHEAP})}
    r = PerAxisLabeler(labs, sel).label(make_samples(1)[0])
    assert r.labels == {"background_condition": "pure_math", "task_type": "multiple_choice",
                        "solving_operations": ["arithmetic"], "output_constraint": "option_label"}
    assert r.extra["labeler_by_axis"] == {k: v for k, v in sel.items() if k != "failure_mode"}
    with pytest.raises(ValueError, match="available"):
        PerAxisLabeler(labs, {"task_type": "oracle"})


def test_selection_takes_best_lower_kappa_bound_and_ties_go_to_the_cheaper():
    m = lambda lo: {"cohen_kappa_ci": [lo, 1.0]}  # noqa: E731
    assert select_labeler({"judge": m(0.7), "knn": m(0.5), "student": m(0.6)}, "single") == "judge"
    assert select_labeler({"judge": m(0.6), "knn": m(0.6), "student": m(0.6)}, "single") == "knn"
    assert select_labeler({"judge": m(0.6), "cascade": m(0.6)}, "single") == "cascade"
    ops = {"judge": {"primary": m(0.1)}, "student": {"primary": m(0.3)}}
    assert select_labeler(ops, "operations") == "student"



def test_calibration_selects_per_axis_and_labeling_runs_use_and_record_it(tmp_path, redis_url, judge_server):
    env = {"SLICELAB_HOME": str(tmp_path / "home"), "REDIS_URL": redis_url}
    judge = ["--judge-url", judge_server.base_url, "--judge-model", "test-judge"]
    table = tmp_path / "table.json"
    cal = run_cli("calibrate", "--gold", str(BUNDLED["eval"]), *judge, "--json", str(table), env=env)
    assert cal.returncode == 0, cal.stderr
    got = json.loads(table.read_text())["axes"]
    assert set(got["task_type"]["labelers"]) == {"judge", "knn", "student", "cascade"}
    row = got["task_type"]["labelers"]["student"]
    assert set(row) == {"n", "accuracy", "kappa", "kappa_ci_low", "kappa_ci_high", "macro_f1", "seconds_per_label"}
    # the constant test judge is at chance: every axis selects a cheaper labeler
    assert all(a["selected"] != "judge" for a in got.values())
    record = json.loads(next((tmp_path / "home" / "calibrations").glob("cal-*/record.json")).read_text())
    assert record["selection"] == {a: v["selected"] for a, v in got.items()}
    lobo = record["leave_one_benchmark_out"]
    assert lobo["sources"] == ["aime", "bbh", "gsm8k", "math500"] and lobo["knn"]["task_type"]["n"] == 100

    inp = tmp_path / "bench.jsonl"
    inp.write_text("".join(json.dumps({"id": s.id, "question": s.question, "answer": s.reference_answer,
                                       "task": "t"}) + "\n" for s in make_samples(6)))
    out = tmp_path / "labels.parquet"
    lab = run_cli("label-benchmark", str(inp), "-o", str(out), *judge, env=env)
    assert lab.returncode == 0, lab.stderr
    df = read_table(out)
    assert set(df["status"]) == {"labeled"}
    for axis in ("background_condition", "task_type", "solving_operations", "output_constraint"):
        expected = "knn" if record["selection"][axis] == "knn" else record["selection"][axis]
        if expected == "cascade":
            assert set(df[f"labeler_{axis}"]) <= {"knn", "judge"}
        else:
            assert set(df[f"labeler_{axis}"]) == {expected}
        assert set(df[f"gate_{axis}"]) == {record["verdicts"][axis]}
    # told otherwise: the judge on every axis, gated by the judge's own verdicts
    out2 = tmp_path / "judge.parquet"
    lab = run_cli("label-benchmark", str(inp), "-o", str(out2), *judge, "--labeler", "judge", env=env)
    assert lab.returncode == 0, lab.stderr
    df2 = read_table(out2)
    assert set(df2["labeler_task_type"]) == {"judge"} and set(df2["gate_task_type"]) == {"fail"}


def test_with_exemplars_file_every_item_is_evaluated_and_never_its_own_exemplar(tmp_path, redis_url,
                                                                                judge_server, monkeypatch):
    from calibration.run import run_calibration
    from service.judge import judge_spec

    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path))
    spec = judge_spec(judge_url=judge_server.base_url, judge_model="test-judge", exemplars_k=3,
                      exemplars_gold=str(BUNDLED["eval"]), holdout_frac=0.0)
    record = run_calibration(BUNDLED["eval"], spec, redis_url, exemplars_path=BUNDLED["eval"], limit=6,
                             workers=1, n_boot=50)
    assert record["split"]["n_pool"] == 100 and record["split"]["n_heldout"] == 6
    parts = list((tmp_path / "calibrations" / "runs").rglob("chunk-*.parquet"))
    rows = __import__("pandas").concat([read_table(p) for p in parts])
    assert len(rows) == 6
    for _, row in rows.iterrows():
        item = row["id"].rsplit("#s", 1)[0]
        assert len(row["exemplar_ids"]) == 3 and item not in list(row["exemplar_ids"])
