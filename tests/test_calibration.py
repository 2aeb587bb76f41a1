"""Gold sets, the exemplar split, per-axis evaluation, the gate, and gated slice aggregation."""

from __future__ import annotations

import json
import pytest
import yaml

from slicelab.calibration.evaluate import evaluate, modal
from slicelab.calibration.gate import load_gate, verdict
from slicelab.calibration.gold import BUNDLED, GOLD, load_gold
from slicelab.service.errors import RecordError
from slicelab.service.exemplars import ExemplarIndex
from slicelab.service.output import read_table
from slicelab.service.taxonomy import load_taxonomy
from tests.conftest import make_samples, run_cli


@pytest.fixture(scope="module")
def eval_gold():
    return load_gold(BUNDLED["eval"])


def test_bundled_gold_sets_load_with_two_annotators_and_gold():
    ev, doc = load_gold(BUNDLED["eval"]), load_gold(BUNDLED["document"])
    assert (ev.kind, len(ev.items), ev.annotators) == ("eval", 100, ["annotator_a", "annotator_b"])
    assert (doc.kind, len(doc.items)) == ("document", 111)
    assert all(len(ev.labels[a]) == 100 for a in ("annotator_a", "annotator_b", GOLD))


def test_gold_row_with_unknown_label_names_line_and_field(tmp_path):
    lines = BUNDLED["eval"].read_text().splitlines()[:3]
    bad = json.loads(lines[1]) | {"task_type": "essay"}
    path = tmp_path / "g.jsonl"
    path.write_text("\n".join([lines[0], json.dumps(bad), lines[2]]) + "\n")
    with pytest.raises(RecordError) as e:
        load_gold(path)
    assert e.value.line == 2 and e.value.field == "task_type" and "multiple_choice" in str(e.value)


def test_split_is_seeded_stratified_and_disjoint(eval_gold):
    pool, held = eval_gold.split(seed=0)
    assert eval_gold.split(seed=0) == (pool, held)
    assert eval_gold.split(seed=1) != (pool, held)
    assert not set(pool) & set(held) and len(pool) + len(held) == 100 and len(held) >= 30
    for source in set(eval_gold.sources.values()):
        n_pool = sum(eval_gold.sources[i] == source for i in pool)
        n_held = sum(eval_gold.sources[i] == source for i in held)
        assert abs(n_pool - n_held) <= 1, source


def test_an_item_is_never_its_own_exemplar(eval_gold):
    ids = sorted(eval_gold.items)
    index = ExemplarIndex([eval_gold.items[i] for i in ids], eval_gold.labels[GOLD])
    for i in ids[:20]:
        got = index.nearest(eval_gold.items[i], 3)
        assert len(got) == 3 and i not in [e.id for e in got]
        assert got[0].similarity >= got[1].similarity >= got[2].similarity


def test_modal_label_and_confidence():
    assert modal(["a", "b", "a"]) == ("a", 2 / 3)
    assert modal([None, None]) == (None, 0.0)
    assert modal([["x", "y"], ["x", "y"], None]) == (["x", "y"], 2 / 3)


def test_perfect_judge_passes_and_constant_judge_fails_honestly(eval_gold):
    tax, gate = load_taxonomy(), load_gate()
    pool, held = eval_gold.split()
    perfect = {i: [eval_gold.labels[GOLD][i]] for i in held}
    res = evaluate(eval_gold, pool, held, perfect, tax, gate, n_boot=200)
    for axis in ("background_condition", "task_type", "output_constraint"):
        assert res[axis]["judge"]["cohen_kappa"] == 1.0 and res[axis]["verdict"]["verdict"] == "pass"
    assert res["solving_operations"]["judge"]["mean_jaccard"] == 1.0
    # failure_mode exists only for outputs scored wrong: fewer than the gate's minimum n
    assert res["failure_mode"]["n"] < 30 and res["failure_mode"]["verdict"]["verdict"] == "fail"
    assert "too few" in res["failure_mode"]["verdict"]["reason"]
    # baselines and the annotator ceiling sit beside the judge
    assert res["task_type"]["annotators"]["cohen_kappa"] > 0.9
    assert 0 < res["task_type"]["baselines"]["majority"]["accuracy"] < 1
    assert res["task_type"]["baselines"]["majority"]["cohen_kappa"] == 0.0
    assert res["task_type"]["baselines"]["nearest_exemplar"]["cohen_kappa"] > 0.5
    const = {i: [{"task_type": "multiple_choice", "background_condition": "pure_math",
                  "solving_operations": ["arithmetic"], "output_constraint": "option_label"}] for i in held}
    bad = evaluate(eval_gold, pool, held, const, tax, gate, n_boot=200)
    assert bad["task_type"]["judge"]["cohen_kappa"] == 0.0 and bad["task_type"]["verdict"]["verdict"] == "fail"
    # judge failures are counted as invalid, never dropped
    failed = {i: [None] for i in held}
    res = evaluate(eval_gold, pool, held, failed, tax, gate, n_boot=200)
    assert res["task_type"]["judge"]["n"] == len(held) and res["task_type"]["judge"]["n_invalid"] == len(held)
    json.dumps(res, allow_nan=False)


def test_gate_thresholds_are_data(tmp_path):
    gate = load_gate()
    assert (gate.default.metric, gate.default.bound, gate.default.min_n) == ("cohen_kappa_ci_low", 0.6, 30)
    m = {"n": 40, "cohen_kappa": 0.7, "cohen_kappa_ci": [0.55, 0.8], "undefined": {}}
    assert verdict(m, gate.default)["verdict"] == "fail"
    custom = tmp_path / "gate.yaml"
    custom.write_text(yaml.safe_dump({"version": 1, "default": {"metric": "cohen_kappa", "bound": 0.6, "min_n": 30}}))
    assert verdict(m, load_gate(custom).default)["verdict"] == "pass"
    assert verdict(m | {"n": 10}, load_gate(custom).default)["verdict"] == "fail"
    custom.write_text("version: 1\ndefault: {metric: kappa_max, bound: 1, min_n: 1}\n")
    with pytest.raises(Exception, match="gate.yaml"):
        load_gate(custom)



def test_failing_calibration_gates_later_labels_out_of_slices(tmp_path, redis_url, judge_server):
    env = {"SLICELAB_HOME": str(tmp_path / "home"), "REDIS_URL": redis_url}
    judge = ["--judge-url", judge_server.base_url, "--judge-model", "test-judge"]
    # a bar no labeler clears on this data (the answer-shape rules reach kappa 1.00 on two axes, so the
    # bar asks for more held-out items than the set has): every axis fails
    strict = tmp_path / "gate.yaml"
    strict.write_text("version: 1\ndefault: {metric: cohen_kappa_ci_low, bound: 0.99, min_n: 1000}\n")
    cal = run_cli("calibrate", "--gold", str(BUNDLED["eval"]), "--limit", "40", "--gate-file", str(strict), *judge, env=env)
    assert cal.returncode == 0, cal.stderr
    assert "gate: 5 of 5 axes fail" in " ".join(cal.stdout.split())
    records = list((tmp_path / "home" / "calibrations").glob("cal-*/record.json"))
    assert len(records) == 1
    record = json.loads(records[0].read_text())
    assert record["split"]["n_heldout"] == 40 and record["status_counts"] == {"labeled": 40}
    held = {it["id"] for it in record["items"]}
    # labeling with the same judge configuration picks up the record: every axis fails
    inp = tmp_path / "bench.jsonl"
    inp.write_text("".join(json.dumps({"id": s.id, "question": s.question, "reference_answer": s.reference_answer,
                                       "correct": i % 2 == 0, "task": "t"}) + "\n"
                           for i, s in enumerate(make_samples(12))))
    out = tmp_path / "labels.parquet"
    lab = run_cli("label-benchmark", str(inp), "-o", str(out), *judge, env=env)
    assert lab.returncode == 0, lab.stderr
    df = read_table(out)
    assert (df["calibration_id"] == record["id"]).all()
    assert set(df["gate_task_type"]) == {"fail"} and set(df["gate_solving_operations"]) == {"fail"}
    # default: failing axes are excluded from slices
    s1 = run_cli("slices", str(out), "-o", str(tmp_path / "s1.json"), env=env)
    got = json.loads((tmp_path / "s1.json").read_text())
    assert s1.returncode == 0 and got["allow_ungated"] is False and got["axes_used"] == [] and got["slices"] == []
    assert set(got["axes_excluded"].values()) == {"fail"}
    # --allow-ungated: included, and the flag is recorded
    run_cli("slices", str(out), "-o", str(tmp_path / "s2.json"), "--allow-ungated", env=env)
    got = json.loads((tmp_path / "s2.json").read_text())
    assert got["allow_ungated"] is True and got["ungated_axes_used"] == got["axes_used"] != []
    assert sum(s["n"] for s in got["slices"]) == 12 and got["calibration_id"] == record["id"]
    assert not held & set(df["id"])


def test_calibration_exemplars_come_from_the_pool_only(tmp_path, redis_url, judge_server, monkeypatch, eval_gold):
    from slicelab.calibration.run import run_calibration
    from slicelab.service.judge import judge_spec

    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path))
    spec = judge_spec(judge_url=judge_server.base_url, judge_model="test-judge", exemplars_k=3,
                      exemplars_gold=str(BUNDLED["eval"]))
    record = run_calibration(BUNDLED["eval"], spec, redis_url, limit=8, workers=1, n_boot=100)
    pool, held = eval_gold.split()
    assert record["judge"]["exemplars"]["k"] == 3 and record["judge"]["exemplars"]["pool_size"] == len(pool)
    parts = list((tmp_path / "calibrations" / "runs").rglob("chunk-*.parquet"))
    rows = __import__("pandas").concat([read_table(p) for p in parts])
    assert len(rows) == 8 and (rows["exemplar_k"] == 3).all()
    for _, row in rows.iterrows():
        ids = list(row["exemplar_ids"])
        assert len(ids) == 3 and set(ids) <= set(pool) and not set(ids) & set(held)
    # exemplars are shown in the prompt, before the item
    prompt = judge_server.requests[0]["messages"][1]["content"]
    assert prompt.count("Example labels:") == 3 and prompt.index("Example labels:") < prompt.index("Question:")


def test_bundled_record_is_built_once_and_a_run_uses_only_labelers_that_passed(tmp_path, monkeypatch):
    from slicelab.calibration.offline import bundled_record
    from slicelab.calibration.selection import gated_selection, used_selection

    monkeypatch.setenv("SLICELAB_HOME", str(tmp_path))
    record = bundled_record("eval", n_boot=100)
    assert record["judge"] is None and record["split"]["n_heldout"] + record["split"]["n_pool"] == 170
    assert (tmp_path / "calibrations" / record["id"] / "record.json").is_file()
    assert bundled_record("eval", n_boot=100)["created_at"] == record["created_at"]  # read back, not rebuilt
    rows = gated_selection(record)
    for axis, row in rows.items():
        if record["verdicts"][axis] == "pass":
            assert row["labeler"] == record["selection"][axis] != "judge" and row["gate"] == "pass"
            assert row["kappa_ci_low"] >= 0.60
        else:  # the embedded judge labels it, and the judge was never measured here
            assert (row["labeler"], row["gate"]) == ("judge", "ungated")
    assert used_selection(record)["task_type"] == "shape"
    assert used_selection(record)["failure_mode"] == "judge"  # 40 held-out items, no labeler passes
    for axis, m in record["axes"].items():
        assert set(m["alt_test"]) == set(m["labelers"])
        assert all(a is None or 0 <= a["advantage_probability"] <= 1 for a in m["alt_test"].values())


def test_gate_can_require_the_alt_test(tmp_path, eval_gold):
    from slicelab.calibration.gate import combine

    k_pass = {"verdict": "pass", "reason": "cohen_kappa_ci_low 0.700 >= 0.60"}
    alt_fail = {"passed": False, "reason": "winning rate 0.00 < 0.5"}
    assert combine(k_pass, alt_fail, "kappa")["verdict"] == "pass"
    assert combine(k_pass, alt_fail, "either")["verdict"] == "pass"
    both = combine(k_pass, alt_fail, "both")
    assert both["verdict"] == "fail" and "winning rate 0.00" in both["reason"] and both["alt_test"] == "fail"
    assert combine(k_pass | {"verdict": "fail"}, {"passed": True, "reason": "ω 1"}, "alt_test")["verdict"] == "pass"
    gate = yaml.safe_load((__import__("slicelab.calibration.gate", fromlist=["GATE_FILE"]).GATE_FILE).read_text())
    path = tmp_path / "gate.yaml"
    path.write_text(yaml.safe_dump(gate | {"require": "both", "alt_test": {"epsilon": 0.1, "q": 0.05, "min_items": 30}}))
    loaded = load_gate(path)
    assert loaded.require == "both" and loaded.alt_test.epsilon == 0.1
    path.write_text(yaml.safe_dump(gate | {"require": "sometimes"}))
    with pytest.raises(Exception, match="require"):
        load_gate(path)


def test_annotator_pair_is_the_two_who_rated_most_items_not_a_partial_reviewer(tmp_path):
    """An exported gold set holds a reviewer's rows for some items only; the annotator agreement stays
    that of the two annotators who labeled every item, whatever the reviewer's name sorts as."""
    from slicelab.calibration.evaluate import _annotator_agreement

    rows = [json.loads(line) for line in BUNDLED["eval"].read_text().splitlines() if line.strip()]
    extra = [dict(r, annotator="aa-reviewer") for r in rows if r["annotator"] == "annotator_a"][:3]
    path = tmp_path / "gold.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows + extra))
    gold = load_gold(path)
    assert gold.annotators[0] == "aa-reviewer"  # sorts first
    axis = next(a for a in load_taxonomy().axes("eval") if a.name == "task_type")
    got = _annotator_agreement(gold, axis, sorted(gold.items), lambda a, b: {"n": len(a)})
    assert got["pair"] == ["annotator_a", "annotator_b"] and got["n"] == len(gold.items)
