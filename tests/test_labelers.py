"""Labelers beside the LLM judge: k-NN, student, cascade, per-axis selection."""

from __future__ import annotations

import json
import pytest

from slicelab.calibration.evaluate import select_labeler
from slicelab.calibration.gold import BUNDLED, GOLD, load_gold
from slicelab.service.judge import judge_spec
from slicelab.service.judge.base import Attempt, Judge
from slicelab.service.labeler_factory import make_judge, per_axis_spec
from slicelab.service.labelers import (KNN_KS, CascadeLabeler, KNNLabeler, Labeler, PerAxisLabeler, SelfConsistentJudge,
                              StudentLabeler)
from slicelab.service.output import labeled_row
from slicelab.service.samples import Document
from slicelab.service.output import read_table
from slicelab.service.samples import Status
from slicelab.service.taxonomy import load_taxonomy
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
    # the self-consistent judge is the dearest: it wins only when strictly better
    assert select_labeler({"judge_sc": m(0.6), "judge": m(0.6)}, "single") == "judge"
    assert select_labeler({"judge_sc": m(0.7), "judge": m(0.6), "knn": m(0.65)}, "single") == "judge_sc"



def test_calibration_selects_per_axis_and_labeling_runs_use_and_record_it(tmp_path, redis_url, judge_server):
    env = {"SLICELAB_HOME": str(tmp_path / "home"), "REDIS_URL": redis_url}
    judge = ["--judge-url", judge_server.base_url, "--judge-model", "test-judge"]
    table = tmp_path / "table.json"
    cal = run_cli("calibrate", "--gold", str(BUNDLED["eval"]), *judge, "--json", str(table), env=env)
    assert cal.returncode == 0, cal.stderr
    got = json.loads(table.read_text())["axes"]
    assert set(got["task_type"]["labelers"]) == {"judge", "knn", "student", "cascade", "shape"}
    assert "cues" in got["solving_operations"]["labelers"] and "cues" not in got["task_type"]["labelers"]
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
    assert "a labeler is used only where it passed the gate" in lab.stdout
    used = 0
    for axis in ("background_condition", "task_type", "solving_operations", "output_constraint"):
        if record["verdicts"][axis] != "pass":  # a labeler that failed the gate never labels: the judge does
            assert set(df[f"labeler_{axis}"]) == {"judge"}
            assert set(df[f"gate_{axis}"]) == {record["judge_verdicts"][axis]} == {"fail"}
            continue
        used += 1
        expected = record["selection"][axis]
        if expected == "cascade":
            assert set(df[f"labeler_{axis}"]) <= {"knn", "judge"}
        else:
            assert set(df[f"labeler_{axis}"]) == {expected}
        assert set(df[f"gate_{axis}"]) == {"pass"}
    assert used >= 1  # the student passes task_type on the bundled pool
    # told otherwise: the judge on every axis, gated by the judge's own verdicts
    out2 = tmp_path / "judge.parquet"
    lab = run_cli("label-benchmark", str(inp), "-o", str(out2), *judge, "--labeler", "judge", env=env)
    assert lab.returncode == 0, lab.stderr
    df2 = read_table(out2)
    assert set(df2["labeler_task_type"]) == {"judge"} and set(df2["gate_task_type"]) == {"fail"}


def test_after_a_toy_calibration_that_fails_every_axis_the_judge_labels_every_axis(tmp_path, redis_url,
                                                                                  judge_server):
    env = {"SLICELAB_HOME": str(tmp_path / "home"), "REDIS_URL": redis_url}
    judge = ["--judge-url", judge_server.base_url, "--judge-model", "test-judge"]
    cal = run_cli("calibrate", "--gold", str(BUNDLED["eval"]), *judge, "--limit", "12", env=env)
    assert cal.returncode == 0, cal.stderr
    record = json.loads(next((tmp_path / "home" / "calibrations").glob("cal-*/record.json")).read_text())
    assert set(record["verdicts"].values()) == {"fail"}  # 12 held-out items < min_n 30
    assert all(v != "judge" for v in record["selection"].values())  # cheap labelers had the best kappa
    inp = tmp_path / "bench.jsonl"
    inp.write_text("".join(json.dumps({"id": s.id, "question": s.question, "answer": s.reference_answer}) + "\n"
                           for s in make_samples(4)))
    out = tmp_path / "labels.parquet"
    n_requests = len(judge_server.requests)
    lab = run_cli("label-benchmark", str(inp), "-o", str(out), *judge, env=env)
    assert lab.returncode == 0, lab.stderr
    df = read_table(out)
    for axis in ("background_condition", "task_type", "solving_operations", "output_constraint"):
        assert set(df[f"labeler_{axis}"]) == {"judge"}
        assert set(df[f"gate_{axis}"]) == {"fail"}
        assert record["selection"][axis] + " failed" in lab.stdout  # the table names the labeler not used
    assert len(judge_server.requests) > n_requests  # the judge labeled the items


def test_with_exemplars_file_every_item_is_evaluated_and_never_its_own_exemplar(tmp_path, redis_url,
                                                                                judge_server, monkeypatch):
    from slicelab.calibration.run import run_calibration
    from slicelab.service.judge import judge_spec

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


class Scripted(Judge):
    """A judge whose replies are given in order (dicts become JSON), recording each request's seed."""

    backend, model, takes_seed = "scripted", "scripted", True

    def __init__(self, replies, max_attempts=1):
        super().__init__(max_attempts=max_attempts, temperature=0.7)
        self.replies, self.seeds = list(replies), []

    def _send(self, messages, model_cls, seed=None):
        self.seeds.append(seed)
        reply = self.replies[len(self.seeds) - 1]
        return Attempt(text=json.dumps(reply) if isinstance(reply, dict) else reply, finish_reason="stop",
                       prompt_tokens=100, completion_tokens=20)


def _sc(replies, k=None, **kwargs):
    judge = Scripted(replies, **kwargs)
    return SelfConsistentJudge(judge, k or len(replies)), judge


def test_self_consistency_majority_vote_with_vote_share_as_confidence():
    replies = [CHEAP, CHEAP | {"task_type": "multiple_choice"}, CHEAP | {"output_constraint": "option_label"},
               JUDGE, CHEAP | {"task_type": "multiple_choice"}]
    sc, judge = _sc(replies)
    item = make_samples(1)[0]
    r = sc.label(item)
    assert r.status == Status.labeled and r.error is None
    assert r.labels == CHEAP | {"task_type": "multiple_choice"}
    conf = r.extra["confidence_by_axis"]
    assert conf == {"background_condition": 0.8, "task_type": 0.6, "solving_operations": 0.8,
                    "output_constraint": 0.6}
    assert r.extra["labeler_by_axis"] == {a: "judge_sc" for a in CHEAP}
    assert (r.attempts, r.prompt_tokens, r.completion_tokens, len(r.raw_texts)) == (5, 500, 100, 5)
    # distinct seeds per sample, the same on a rerun
    assert len(set(judge.seeds)) == 5 and judge.seeds == r.extra["self_consistency"]["seeds"]
    assert _sc(replies)[0].label(item).extra["self_consistency"]["seeds"] == judge.seeds
    row = labeled_row(item, r, load_taxonomy(), {})
    assert row["confidence_task_type"] == 0.6 and row["labeler_task_type"] == "judge_sc"


def test_self_consistency_votes_operations_per_operation():
    ops = lambda *o: CHEAP | {"solving_operations": list(o)}  # noqa: E731
    sc, _ = _sc([ops("arithmetic", "algebraic_manipulation"), ops("arithmetic", "logical_deduction",
                                                                 "algebraic_manipulation"),
                 ops("logical_deduction"), ops("counting_combinatorics")])
    r = sc.label(make_samples(1)[0])
    # primary by majority (2 of 4); others listed by more than half of the replies, commonest first
    assert r.labels["solving_operations"] == ["arithmetic"]
    assert r.extra["confidence_by_axis"]["solving_operations"] == 0.5
    sc, _ = _sc([ops("arithmetic", "algebraic_manipulation"), ops("arithmetic", "logical_deduction",
                                                                 "algebraic_manipulation"),
                 ops("logical_deduction", "algebraic_manipulation")])
    assert sc.label(make_samples(1)[0]).labels["solving_operations"] == [
        "arithmetic", "algebraic_manipulation", "logical_deduction"]
    # a document axis that allows no operation: empty lists vote for "none"
    doc_labels = {"domain": "mathematics", "document_format": "textbook_lecture", "reasoning_depth": "multi_step",
                  "education_level": "undergraduate"}
    doc = Document(id="d/1", text="A short note on groups.")
    sc, _ = _sc([doc_labels | {"demonstrated_operations": []}, doc_labels | {"demonstrated_operations": ["arithmetic"]},
                 doc_labels | {"demonstrated_operations": []}])
    r = sc.label(doc)
    assert r.labels["demonstrated_operations"] == [] and r.extra["confidence_by_axis"]["demonstrated_operations"] \
        == round(2 / 3, 4)


def test_self_consistency_tie_goes_to_the_earliest_sample():
    sc, _ = _sc([CHEAP, JUDGE])
    r = sc.label(make_samples(1)[0])
    assert r.labels == CHEAP and set(r.extra["confidence_by_axis"].values()) == {0.5}
    sc, _ = _sc([JUDGE, CHEAP, CHEAP, JUDGE])
    assert sc.label(make_samples(1)[0]).labels == JUDGE


def test_self_consistency_invalid_samples_count_against_confidence_and_all_invalid_keeps_raw_texts():
    sc, _ = _sc([CHEAP, "not json", CHEAP])
    r = sc.label(make_samples(1)[0])
    assert r.status == Status.labeled and r.labels == CHEAP
    assert r.extra["confidence_by_axis"]["task_type"] == round(2 / 3, 4)
    assert r.extra["self_consistency"]["valid"] == 2
    # no sample validates (2 attempts each): the commonest failure status, no labels, every raw text kept
    bad = ["not json", CHEAP | {"task_type": "essay"}, "still not json", "nope", "", "x"]
    sc, _ = _sc(bad, k=3, max_attempts=2)
    r = sc.label(make_samples(1)[0])
    assert r.status == Status.format_error and r.labels is None and r.error
    assert r.raw_texts == [json.dumps(b) if isinstance(b, dict) else b for b in bad] and r.attempts == 6
    assert r.extra["confidence_by_axis"] == {} and r.extra["labeler_by_axis"] == {}


def test_self_consistency_config_hash_differs_by_k_and_from_the_judge():
    judge = Scripted([])
    hashes = {judge.config_hash(), SelfConsistentJudge(judge, 3).config_hash(),
              SelfConsistentJudge(judge, 5).config_hash(), SelfConsistentJudge(judge, 5, seed=1).config_hash()}
    assert len(hashes) == 4
    assert SelfConsistentJudge(judge, 3).config()["self_consistency"] == {"k": 3, "seed": 0}
    with pytest.raises(ValueError):
        SelfConsistentJudge(judge, 0)


def test_self_consistency_through_the_openai_backend_sends_k_requests_per_item(judge_server):
    spec = judge_spec(judge_url=judge_server.base_url, judge_model="test-judge", self_consistency=3,
                      sc_temperature=0.9)
    sc = make_judge(spec)
    assert isinstance(sc, SelfConsistentJudge) and sc.judge.temperature == 0.9
    assert sc.config_hash() != make_judge(judge_spec(judge_url=judge_server.base_url,
                                                     judge_model="test-judge")).config_hash()
    results = sc.label_many(make_samples(2))
    assert len(judge_server.requests) == 6
    assert {req["temperature"] for req in judge_server.requests} == {0.9}
    # each sample carries its own seed, the same on a rerun (reproducible sampling)
    seeds = [req["seed"] for req in judge_server.requests]
    assert len(set(seeds)) == 6
    sc.label_many(make_samples(2))
    assert [req["seed"] for req in judge_server.requests[6:]] == seeds
    for r in results:
        assert r.status == Status.labeled and r.backend == "openai" and len(r.raw_texts) == 3
        assert set(r.extra["confidence_by_axis"].values()) == {1.0}


def test_calibration_measures_the_self_consistent_judge_and_labeling_can_use_it(tmp_path, redis_url, judge_server,
                                                                               monkeypatch):
    from slicelab.calibration.run import run_calibration

    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path))
    spec = judge_spec(judge_url=judge_server.base_url, judge_model="test-judge")
    record = run_calibration(BUNDLED["eval"], spec, redis_url, limit=4, workers=1, n_boot=50, lobo=False,
                             self_consistency=2)
    n = record["split"]["n_heldout"]
    assert len(judge_server.requests) == n + 2 * n
    assert all("judge_sc" in a["labelers"] for a in record["axes"].values())
    sc = record["labelers"]["judge_sc"]
    assert (sc["k"], sc["temperature"], sc["status_counts"]) == (2, 0.7, {"labeled": n})
    assert set(record["judge_sc_verdicts"]) == set(record["axes"])
    assert "judge_sc" in record["labelers"]["seconds_per_label"]
    # a selection naming judge_sc rebuilds it with the measured settings
    chosen = record | {"selection": {a: "judge_sc" for a in record["selection"]}}
    labeler = make_judge(per_axis_spec(spec, chosen))
    assert labeler.labelers["judge_sc"].config_hash() == sc["config_hash"]
    r = labeler.label(make_samples(1)[0])
    assert r.status == Status.labeled and set(r.extra["labeler_by_axis"].values()) == {"judge_sc"}
